"""Running a notebook top to bottom in a fresh kernel, with one time limit for the whole run."""

from __future__ import annotations

import ast
import contextlib
import copy
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat


@dataclass
class RunResult:
    ok: bool
    seconds: float
    timed_out: bool = False
    failed_cell: int | None = None       # index among code cells, counted from 1: the one that raised or ran out
    error: str = ""                      # the exception's name and message, as the learner would see it
    notebook: nbformat.NotebookNode | None = None
    error_name: str = ""                 # e.g. "NotImplementedError"
    cell_source: str = ""                # the source of the cell that raised or was running when time ran out
    raised_in: str = ""                  # the function the error came out of ("" at a cell's top level), so a
                                         # stub reads "write build_sft_example", not "cell 5 raised"
    failed_line: int | None = None       # the line of the failing cell the error came from, counted from 1

    @property
    def line_text(self) -> str:
        """The failing cell's line the error came from ("" when unknown): of five asserts, the one that failed."""
        return source_line(self.cell_source, self.failed_line)

    @property
    def cell_head(self) -> str:
        """The failing cell's first line of code, to name it the way the learner sees it."""
        return first_code_line(self.cell_source)

    @property
    def section(self) -> str:
        """The section of the notebook the failing cell is in ("" when unknown)."""
        return section_of(self.notebook, self.failed_cell) if self.notebook and self.failed_cell else ""


def source_line(source: str, number: int | None) -> str:
    """Line `number` (counted from 1) of a cell's source, stripped; "" when there is no such line."""
    lines = source.splitlines()
    return lines[number - 1].strip() if number and 0 < number <= len(lines) else ""


def first_code_line(source: str) -> str:
    lines = [line.strip() for line in source.splitlines()]
    return next((line for line in lines if line and not line.startswith("#")), "")


def section_heading(markdown: str) -> str | None:
    """A markdown cell's last section heading ("## 3. Put an adapter on a model" -> "3. Put an adapter on a
    model"), or None when it has none; the notebook's title (a single #) is not a section."""
    headings = [line[3:].strip() for line in markdown.splitlines() if line.startswith("## ")]
    return headings[-1] if headings else None


def section_of(nb: nbformat.NotebookNode, code_cell: int) -> str:
    """The section heading above a code cell (counted from 1 among code cells): what a learner scrolls to."""
    section, number = "", 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            section = section_heading(cell.source) or section
        elif cell.cell_type == "code":
            number += 1
            if number == code_cell:
                return section
    return ""



def execute(nb: nbformat.NotebookNode, timeout: float, cwd: str | Path, env: dict | None = None,
            kernel_name: str = "python3") -> RunResult:
    """Run every cell in order; stop at the first error or when `timeout` seconds have passed in total."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = copy.deepcopy(nb)
    saved_env = dict(os.environ)
    os.environ.update(env or {})
    start = time.monotonic()
    current = {"number": None, "source": ""}  # the code cell being run: named in a timeout's message
    try:
        with kernel_manager(kernel_name) as km:
            client = NotebookClient(nb, km=km, timeout=max(1, int(timeout)), kernel_name=kernel_name,
                                    resources={"metadata": {"path": str(cwd)}}, allow_errors=False,
                                    shutdown_kernel="immediate")
            # cleanup_kc: nbclient stops only a kernel it made itself; ours would outlive the run, holding its
            # models in memory until this process exits (`make bench` and the suite run many notebooks in one).
            with client.setup_kernel(cleanup_kc=True):
                for index, cell in enumerate(nb.cells):
                    remaining = timeout - (time.monotonic() - start)
                    if remaining <= 0:
                        raise CellTimeoutError("notebook time limit")
                    if cell.cell_type == "code":
                        current = {"number": (current["number"] or 0) + 1, "source": cell.source}
                    client.timeout = max(1, int(remaining))
                    client.execute_cell(cell, index)
        return RunResult(True, time.monotonic() - start, notebook=nb)
    except CellTimeoutError:
        return RunResult(False, time.monotonic() - start, timed_out=True, notebook=nb,
                         failed_cell=current["number"], cell_source=current["source"],
                         error=f"the notebook did not finish within {timeout:.0f} s")
    except CellExecutionError as error:
        code_index = _code_cell_number(nb, error)
        return RunResult(False, time.monotonic() - start, failed_cell=code_index, notebook=nb,
                         error=f"{error.ename}: {error.evalue}", error_name=error.ename,
                         cell_source=current["source"], raised_in=_innermost_function(error.traceback),
                         failed_line=_cell_line(error.traceback))
    except DeadKernelError as error:
        return RunResult(False, time.monotonic() - start, notebook=nb, error=f"the kernel died: {error}")
    finally:
        os.environ.clear()
        os.environ.update(saved_env)


@contextlib.contextmanager
def kernel_manager(kernel_name: str):
    """A kernel manager whose kernel talks over Unix sockets in a folder of its own (None where there are none:
    nbclient's default, TCP). A TCP kernel's ports are found by binding free ones and letting them go; two checks
    starting kernels at the same moment (`make grade` runs two at a time) can be handed the same port, and the
    second kernel then fails to bind and never answers -- the check would wait out its time limit."""
    if os.name != "posix":
        yield None
        return
    from jupyter_client import AsyncKernelManager

    # A short path: a socket's path may not be longer than 107 bytes. The connection file (it holds the kernel's
    # key) goes in the same folder, so that it goes with it; left to itself it would be a new /tmp/tmp*.json.
    with tempfile.TemporaryDirectory(prefix="ft-kernel-") as folder:
        yield AsyncKernelManager(kernel_name=kernel_name, transport="ipc", ip=os.path.join(folder, "kernel"),
                                 connection_file=os.path.join(folder, "kernel.json"))


def _innermost_function(traceback_text: str) -> str:
    """The function named by the last frame of an IPython traceback (``Cell In[3], line 2, in double(x)``)."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", traceback_text or "")
    frames = re.findall(r"^Cell In\[\d+\], line \d+, in (\w+)\(", plain, flags=re.M)
    return frames[-1] if frames else ""


def _cell_line(traceback_text: str) -> int | None:
    """The line of the cell itself that raised: the first frame of an IPython traceback (``Cell In[3], line 5``)."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", traceback_text or "")
    found = re.search(r"^Cell In\[\d+\], line (\d+)", plain, flags=re.M)
    return int(found.group(1)) if found else None


def _code_cell_number(nb, error) -> int | None:
    """Which code cell (1-based) holds the error output."""
    number = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        number += 1
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return number
    return None


# -- a run that cannot reach the end ---------------------------------------------------------------------------
@dataclass
class Unwritten:
    """Where a run would stop on a stub left to write: the code cell (1-based) that uses it, its source, and
    the stub function's name ("" when the cell itself is the stub: answers or choices to fill in)."""
    cell: int
    cell_source: str
    function: str = ""
    section: str = ""    # the heading of the section it is in
    line: int = 0        # the cell's line, counted from 1, that first uses the stub (0: unknown)

    @property
    def cell_head(self) -> str:
        return first_code_line(self.cell_source)

    @property
    def line_text(self) -> str:
        """The line that uses the stub ("" when unknown): in a long cell, the call a learner looks for."""
        return source_line(self.cell_source, self.line)


def first_unwritten(nb: nbformat.NotebookNode, stub: str) -> Unwritten | None:
    """The first code cell that uses a function whose body is still `stub` (the exercise's
    ``raise NotImplementedError(...)`` line), or is that line itself -- read, not run. A run of the notebook
    would stop there, so a checker need not spend minutes of training to find out.

    Only what is certain counts: the stub must be a statement of the function's own body (not inside an ``if``)
    with no ``return`` before it, the name must still be the stub's when it is used (a cell that defines it
    again, written, takes it off the list), and the use must not be in a ``try`` block. None when nothing
    stands in the way, or when a cell before the first stub cannot be read as Python (the run then says what is
    wrong with it)."""
    stub_line = ast.dump(ast.parse(stub).body[0])
    stubs: dict[str, int] = {}   # function name -> the code cell that defines it as a stub
    number = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        number += 1
        try:
            tree = ast.parse(_as_python(cell.source))
        except SyntaxError:
            return None
        for statement in tree.body:
            if ast.dump(statement) == stub_line:
                return Unwritten(number, cell.source, section=section_of(nb, number))
            used = _names_used(statement)
            if used.keys() & stubs.keys():
                first = min(used.keys() & stubs.keys(), key=lambda name: stubs[name])   # the stub defined first
                return Unwritten(number, cell.source, first, section_of(nb, number), used[first])
            for name in _names_bound(statement):
                stubs.pop(name, None)
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_stub(statement, stub_line):
                stubs[statement.name] = number
    return None


def _as_python(source: str) -> str:
    """A cell's source as the kernel runs it: IPython's ``%magics`` and ``!commands`` turned into Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _is_stub(function, stub_line: str) -> bool:
    for statement in function.body:
        if ast.dump(statement) == stub_line:
            return True
        if any(isinstance(node, ast.Return) for node in ast.walk(statement)):
            return False
    return False


def _names_used(statement) -> dict[str, int]:
    """Every name the statement reads, with the first line that reads it, in its own code or in the bodies of
    the functions it defines -- but not inside a ``try`` block, whose handler may catch the stub's
    NotImplementedError."""
    tries = [node for node in ast.walk(statement) if isinstance(node, ast.Try) or type(node).__name__ == "TryStar"]
    guarded = {id(node) for attempt in tries for part in attempt.body for node in ast.walk(part)}
    first_line: dict[str, int] = {}
    for node in ast.walk(statement):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and id(node) not in guarded:
            first_line[node.id] = min(node.lineno, first_line.get(node.id, node.lineno))
    return first_line


def _names_bound(statement) -> set[str]:
    """The top-level names the statement (re)binds: a def, a class, an assignment, an import."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return {(alias.asname or alias.name).split(".")[0] for alias in statement.names}
    targets = []
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
        targets = [statement.target]
    return {node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)}
