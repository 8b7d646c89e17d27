"""The learner's graded functions, taken out of a notebook without running its heavy cells."""

from __future__ import annotations

import ast

import nbformat

from shared.notebooks.exercises import NotebookError


class MissingFunction(NotebookError):
    pass


# What the checker takes from a notebook's cells beside the graded functions, said to a learner whose function
# needs a name made some other way (`x = model.generate(...)` is left out: it could train or load a model).
KEPT = ("imports, def and class blocks, UPPER_CASE constants, names bound to literals and aliases "
        "(F = torch.nn.functional)")


def _code_without_magics(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def _is_literal(value: ast.expr) -> bool:
    """None, a number, a string, or a list, tuple, dict or set of them: safe to run, and what a function's
    module-level cache or table starts as."""
    try:
        ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _is_alias(value: ast.expr) -> bool:
    """A name or a dotted path from one, such as ``torch.nn.functional.logsigmoid``: another name for something
    imported, which looks nothing up but attributes."""
    while isinstance(value, ast.Attribute):
        value = value.value
    return isinstance(value, ast.Name)


def unparsable_cells(nb: nbformat.NotebookNode) -> str:
    """Why a function the notebook seems to define is missing: its cell does not parse, so none of it is taken.
    "" when every code cell parses; else e.g. "code cell 7 does not parse (line 4: unexpected indent)"."""
    broken = []
    for number, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
        try:
            ast.parse(_code_without_magics(cell.source))
        except SyntaxError as error:
            broken.append(f"code cell {number} does not parse (line {error.lineno}: {error.msg})")
    return "; ".join(broken)


def missing_message(nb: nbformat.NotebookNode, missing: list[str]) -> str:
    """What to tell a learner whose notebook lacks graded functions: their names, and a cell that does not parse."""
    broken = unparsable_cells(nb)
    return (f"the notebook does not define {', '.join(missing)} (keep the names and signatures the exercise "
            "gives)" + (f": {broken}" if broken else ""))


def extract_functions(nb: nbformat.NotebookNode, names: list[str], missing_ok: bool = False) -> dict:
    """The learner's definitions of `names`, executed apart from the rest of the notebook.

    Only ``import`` statements, module-level constants (UPPER_CASE, or any name bound to a literal such as a
    cache's ``_model = None``), aliases (``F = torch.nn.functional``) and ``def``/``class`` blocks are taken
    (`KEPT`), so nothing heavy (training, model loading) runs. A later definition replaces an earlier one, as it
    would in the notebook. The checker runs this in a process of its own (``shared.checking.sandbox``): it
    executes the learner's code. With `missing_ok`, the names not defined are left out instead of raising.
    """
    kept: list[ast.stmt] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_code_without_magics(cell.source))
        except SyntaxError:
            continue  # a broken cell elsewhere should not hide the functions that are fine
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
                kept.append(node)
            elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets) and (
                    all(t.id.isupper() for t in node.targets) or _is_literal(node.value)
                    or _is_alias(node.value)):
                kept.append(node)
    namespace: dict = {"__name__": "__graded__"}
    for node in kept:
        module = ast.Module(body=[node], type_ignores=[])
        try:
            exec(compile(module, "<notebook>", "exec"), namespace)
        except Exception:  # an import or constant that fails here must not stop the others
            continue
    missing = [name for name in names if not callable(namespace.get(name))]
    if missing_ok:
        return {name: namespace[name] for name in names if name not in missing}
    if missing:
        raise MissingFunction(missing_message(nb, missing))
    return {name: namespace[name] for name in names}
