"""Notebook tooling: exercises from solutions, reading, graded functions, running with a time limit."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from shared.notebooks import exercises, graded, running
from shared import course
from shared.notebooks.exercises import (ANSWER_PLACEHOLDER, BEGIN_ANSWER, BEGIN_SOLUTION, END_ANSWER, END_SOLUTION, NotebookError, STUB)
from shared.notebooks.graded import MissingFunction


def solution_notebook() -> nbformat.NotebookNode:
    code = new_code_cell(
        "import math\n"
        "\n"
        "def area(r):\n"
        '    """Area of a circle."""\n'
        f"    {BEGIN_SOLUTION}\n"
        "    squared = r * r\n"
        "    return math.pi * squared\n"
        f"    {END_SOLUTION}\n"
        "\n"
        "print(area(1))",
        execution_count=3,
        outputs=[new_output("stream", name="stdout", text="3.14\n")],
    )
    code.metadata["execution"] = {"iopub.status.busy": "2024-01-01"}
    top_level = new_code_cell(f"{BEGIN_SOLUTION}\nANSWER = 42\n{END_SOLUTION}")
    answer = new_markdown_cell(f"Why?\n\n{BEGIN_ANSWER}\nBecause the radius is squared.\n{END_ANSWER}\n\nThe end.")
    answer.metadata["tags"] = ["answer", "answer-why"]
    secret = new_code_cell("print('only in the solution')")
    secret.metadata["tags"] = ["solution-only"]
    nb = new_notebook(cells=[new_markdown_cell("# Title"), code, top_level, answer, secret])
    nb.metadata["widgets"] = {"state": {}}
    return nb


@pytest.fixture
def solution():
    return solution_notebook()


@pytest.fixture
def exercise(solution):
    return exercises.make_exercise(solution)


# -- exercises from solutions ----------------------------------------------------------------------------
def test_solution_block_becomes_an_indented_stub(exercise):
    source = exercise.cells[1].source
    assert source.splitlines() == [
        "import math",
        "",
        "def area(r):",
        '    """Area of a circle."""',
        f"    {STUB}",
        "",
        "print(area(1))",
    ]
    assert exercise.cells[2].source == STUB  # no indentation at top level


def test_marker_lines_and_solution_code_never_appear(exercise):
    text = exercises.dumps(exercise)
    for marker in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_ANSWER, END_ANSWER):
        assert marker not in text
    assert "squared" not in text
    assert "ANSWER = 42" not in text
    assert "Because the radius" not in text


def test_stubbed_code_still_compiles(exercise):
    for cell in exercise.cells:
        if cell.cell_type == "code":
            compile(cell.source, "<exercise>", "exec")


def test_answer_markers_become_the_placeholder(exercise):
    assert exercise.cells[3].source == f"Why?\n\n{ANSWER_PLACEHOLDER}\n\nThe end."
    assert exercise.cells[3].metadata["tags"] == ["answer", "answer-why"]  # tags kept for the checker


def test_solution_only_cells_are_dropped(solution, exercise):
    assert len(exercise.cells) == len(solution.cells) - 1
    assert "only in the solution" not in exercises.dumps(exercise)


def test_outputs_and_execution_counts_are_cleared(exercise):
    for cell in exercise.cells:
        if cell.cell_type == "code":
            assert cell.outputs == []
            assert cell.execution_count is None
        assert "execution" not in cell.metadata
    assert "widgets" not in exercise.metadata


def test_make_exercise_is_idempotent_and_pure(solution, exercise):
    before = copy.deepcopy(solution)
    again = exercises.make_exercise(solution)
    assert solution == before  # the input is not changed
    assert exercises.dumps(again) == exercises.dumps(exercise)  # deterministic
    assert exercises.dumps(exercises.make_exercise(exercise)) == exercises.dumps(exercise)  # idempotent


def test_clean_solution_keeps_the_solution(solution):
    clean = exercises.clean_solution(solution)
    assert BEGIN_SOLUTION in clean.cells[1].source
    assert clean.cells[1].outputs == [] and clean.cells[1].execution_count is None
    assert len(clean.cells) == len(solution.cells)
    assert solution.cells[1].outputs  # input untouched


@pytest.mark.parametrize("source, message", [
    (f"{BEGIN_SOLUTION}\nx = 1", "without"),
    (f"x = 1\n{END_SOLUTION}", "without"),
    (f"{BEGIN_SOLUTION}\n{BEGIN_SOLUTION}\nx = 1\n{END_SOLUTION}\n{END_SOLUTION}", "nested"),
    (f"{BEGIN_SOLUTION}\nx = 1\n{END_SOLUTION}\n{END_SOLUTION}", "without"),
])
def test_unbalanced_or_nested_markers_raise(source, message):
    nb = new_notebook(cells=[new_code_cell(source)])
    with pytest.raises(NotebookError, match=message):
        exercises.make_exercise(nb)


# -- Colab cells ----------------------------------------------------------------------------------------------
COLAB_RUNG = dataclasses.replace(course.rung("02"), colab=True)


def tags(nb) -> list[list[str]]:
    return [cell.metadata.get("tags", []) for cell in nb.cells]


def test_with_colab_puts_badge_and_set_up_cell_after_the_title(solution):
    with_cells = exercises.with_colab(solution, COLAB_RUNG)
    assert tags(with_cells)[:3] == [[], ["colab-badge"], ["colab-setup"]]
    assert with_cells.cells[0].source == "# Title"
    assert with_cells.cells[3:] == solution.cells[1:]
    assert COLAB_RUNG.colab_url in with_cells.cells[1].source
    assert len(solution.cells) == 5  # the input is not changed


def test_with_colab_replaces_stale_cells_and_is_idempotent(solution):
    once = exercises.with_colab(solution, COLAB_RUNG)
    stale = copy.deepcopy(once)
    stale.cells[2].source = "# an old set-up cell"
    stale.cells.append(copy.deepcopy(stale.cells[1]))  # a stray badge further down goes too
    assert exercises.dumps(exercises.with_colab(stale, COLAB_RUNG)) == exercises.dumps(once)
    assert exercises.dumps(exercises.with_colab(once, COLAB_RUNG)) == exercises.dumps(once)


def test_with_colab_removes_the_cells_when_a_rung_is_not_on_colab(solution):
    with_cells = exercises.with_colab(solution, COLAB_RUNG)
    without = exercises.with_colab(with_cells, dataclasses.replace(COLAB_RUNG, colab=False))
    assert exercises.dumps(without) == exercises.dumps(solution)


def test_colab_cells_reach_the_exercise_unchanged(solution):
    exercise = exercises.make_exercise(exercises.with_colab(solution, COLAB_RUNG))
    assert [c.source for c in exercise.cells[1:3]] == [c.source for c in exercises.colab_cells(COLAB_RUNG)]


@pytest.mark.parametrize("cells", [[new_code_cell("x = 1")], [new_markdown_cell("No title here")], []])
def test_with_colab_needs_a_title_first(cells):
    with pytest.raises(NotebookError, match="must start with its title"):
        exercises.with_colab(new_notebook(cells=cells), COLAB_RUNG)
    untitled = new_notebook(cells=cells)  # a rung not offered on Colab needs no title for it
    assert exercises.with_colab(untitled, dataclasses.replace(COLAB_RUNG, colab=False)) == untitled


# -- reading ------------------------------------------------------------------------------------------------
def test_read_write_round_trip(tmp_path, solution):
    path = tmp_path / "nb.ipynb"
    exercises.write(solution, path)
    assert exercises.read(path).cells[1].source == solution.cells[1].source


def test_read_missing_file(tmp_path):
    with pytest.raises(NotebookError, match="does not exist"):
        exercises.read(tmp_path / "nowhere.ipynb")


@pytest.mark.parametrize("content", ["this is not json", '{"cells": [', ""])
def test_read_non_json_file(tmp_path, content):
    path = tmp_path / "broken.ipynb"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(NotebookError, match="not a readable notebook"):
        exercises.read(path)


def test_read_json_that_is_not_a_notebook(tmp_path):
    path = tmp_path / "list.ipynb"
    path.write_text("[1, 2, 3]", encoding="utf-8")
    with pytest.raises(NotebookError, match="not a (readable|valid) notebook"):
        exercises.read(path)


# -- graded functions --------------------------------------------------------------------------------------
def graded_notebook(*sources: str) -> nbformat.NotebookNode:
    return new_notebook(cells=[new_markdown_cell("# graded")] + [new_code_cell(s) for s in sources])


def test_extract_functions_takes_functions_imports_and_constants():
    nb = graded_notebook(
        "import math\nfrom collections import Counter\nSCALE = 10\nlower = len('abcde')\n_model = None",
        "def scaled(x):\n    return SCALE * math.floor(x)\n\nclass Box:\n    size = 3",
        "def counts(text):\n    return Counter(text)",
        "def uses_lower():\n    return lower",
        "def cached():\n    global _model\n    _model = _model or 'loaded once'\n    return _model",
    )
    fns = graded.extract_functions(nb, ["scaled", "counts", "Box", "uses_lower", "cached"])
    assert fns["scaled"](2.7) == 20
    assert fns["counts"]("aab")["a"] == 2
    assert fns["Box"].size == 3
    assert fns["cached"]() == "loaded once"   # a cache that starts as a literal (None) is taken: it runs nothing
    with pytest.raises(NameError):  # a lower-case name bound to anything computed is not
        fns["uses_lower"]()


def test_extract_functions_takes_aliases_of_what_is_imported():
    nb = graded_notebook(
        "import math\nfloor = math.floor\nm = math\nstarted = math.floor(2.5) + undefined_name",
        "def f(x):\n    return floor(x) + m.ceil(x)",
        "def g():\n    return started",
    )
    fns = graded.extract_functions(nb, ["f", "g"])
    assert fns["f"](2.5) == 5
    with pytest.raises(NameError):   # a call is not an alias: it may train or load a model
        fns["g"]()


def test_extract_functions_does_not_run_top_level_statements(tmp_path):
    marker = tmp_path / "ran.txt"
    nb = graded_notebook(
        f"open({str(marker)!r}, 'w').write('ran')\nraise RuntimeError('training would start here')",
        "def f():\n    return 1",
        "f()\nfor i in range(10**9):\n    pass",
    )
    assert graded.extract_functions(nb, ["f"])["f"]() == 1
    assert not marker.exists()


def test_extract_functions_tolerates_a_broken_cell_and_magics():
    nb = graded_notebook("def broken(:\n    pass", "%matplotlib inline\n!pip list\ndef ok():\n    return 'ok'")
    assert graded.extract_functions(nb, ["ok"])["ok"]() == "ok"


def test_extract_functions_tolerates_a_failing_import():
    nb = graded_notebook("import a_module_that_does_not_exist", "def ok():\n    return 2")
    assert graded.extract_functions(nb, ["ok"])["ok"]() == 2


def test_later_definitions_win():
    nb = graded_notebook("def f():\n    return 'first'", "def f():\n    return 'second'")
    assert graded.extract_functions(nb, ["f"])["f"]() == "second"


def test_missing_function_names_what_is_missing():
    nb = graded_notebook("def present():\n    return 1", "absent_too = 3")
    with pytest.raises(MissingFunction) as info:
        graded.extract_functions(nb, ["present", "absent", "absent_too"])
    assert "does not define absent, absent_too (" in str(info.value)  # the missing ones, and only those
    assert isinstance(info.value, NotebookError)


def test_a_function_in_a_cell_that_does_not_parse_is_missing_and_the_cell_is_named():
    nb = graded_notebook("def fine():\n    return 1", "def config(profile):\n    x = 1\n      return x")
    with pytest.raises(MissingFunction, match=r"does not define config \(.*\): code cell 2 does not parse "
                                              r"\(line 3: unexpected indent\)"):
        graded.extract_functions(nb, ["fine", "config"])
    assert graded.unparsable_cells(graded_notebook("def fine():\n    return 1")) == ""


def test_extract_functions_from_a_stubbed_exercise(exercise):
    area = graded.extract_functions(exercise, ["area"])["area"]
    with pytest.raises(NotImplementedError):
        area(1)


def test_answer_cells():
    first = new_markdown_cell("My first answer.")
    first.metadata["tags"] = ["answer", "answer-why-lora"]
    second = new_markdown_cell("Unnamed answer.")
    second.metadata["tags"] = ["answer"]
    code = new_code_cell("x = 1")
    code.metadata["tags"] = ["answer"]  # only markdown cells are answers
    untagged = new_markdown_cell("Not an answer.")
    nb = new_notebook(cells=[first, untagged, code, second])
    assert exercises.answer_cells(nb) == {"why-lora": "My first answer.", "answer2": "Unnamed answer."}


def test_answer_cells_none():
    assert exercises.answer_cells(graded_notebook("x = 1")) == {}


# -- running -------------------------------------------------------------------------------------------------
def test_execute_runs_a_notebook(tmp_path):
    nb = new_notebook(cells=[
        new_markdown_cell("# hi"),
        new_code_cell("import os\nx = 6 * 7"),
        new_code_cell("open('made.txt', 'w').write(os.environ['FT_TEST_VALUE'])\nprint(x)"),
    ])
    result = running.execute(nb, timeout=60, cwd=tmp_path, env={"FT_TEST_VALUE": "hello"})
    assert result.ok, result.error
    assert not result.timed_out and result.failed_cell is None
    assert (tmp_path / "made.txt").read_text() == "hello"  # ran in cwd, with env
    assert result.notebook.cells[2].outputs[0]["text"] == "42\n"
    assert nb.cells[2].outputs == []  # the input notebook is not changed
    import os
    assert "FT_TEST_VALUE" not in os.environ  # the environment is restored


def test_execute_reports_the_failing_code_cell(tmp_path):
    nb = new_notebook(cells=[
        new_code_cell("x = 1"),
        new_markdown_cell("markdown is not counted"),
        new_code_cell("y = 2"),
        new_code_cell("raise ValueError('bad value')"),
        new_code_cell("z = 3"),
    ])
    result = running.execute(nb, timeout=60, cwd=tmp_path)
    assert not result.ok and not result.timed_out
    assert result.failed_cell == 3
    assert result.error == "ValueError: bad value"


def test_execute_reports_the_line_of_the_cell_that_raised(tmp_path):
    """The cell's own line, even when the error comes out of a function defined in another cell."""
    nb = new_notebook(cells=[
        new_code_cell("def check(x):\n    assert x > 0, f'{x} is not positive'"),
        new_code_cell("# three checks\ncheck(1)\ncheck(-2)\ncheck(3)"),
    ])
    result = running.execute(nb, timeout=60, cwd=tmp_path)
    assert (result.failed_cell, result.failed_line, result.line_text) == (2, 3, "check(-2)")


def test_execute_talks_to_its_kernel_over_sockets_of_its_own(tmp_path):
    """No TCP ports: two checks starting kernels at once (`make grade` runs two) could be handed the same free
    port, and one kernel would never start. Its socket folder, and the connection file (the kernel's key) in it,
    are gone after the run."""
    nb = new_notebook(cells=[new_code_cell("from ipykernel import get_connection_info, get_connection_file\n"
                                           "info = get_connection_info(unpack=True)\n"
                                           "print(info['transport'], info['ip'], get_connection_file())")])
    result = running.execute(nb, timeout=60, cwd=tmp_path)
    assert result.ok, result.error
    transport, ip, connection_file = result.notebook.cells[0].outputs[0]["text"].split()
    assert transport == "ipc" and len(ip) < 100
    assert Path(connection_file).parent == Path(ip).parent
    assert not Path(ip).parent.exists()


@pytest.mark.parametrize("last_cell, timeout", [("x = 1", 60), ("raise ValueError('bad value')", 60),
                                                ("import time\ntime.sleep(60)", 12)],
                         ids=["finished", "raised", "timed out"])
def test_execute_stops_its_kernel(tmp_path, last_cell, timeout):
    """However the run ends, its kernel (and whatever the notebook loaded into it) is gone when execute returns."""
    nb = new_notebook(cells=[new_code_cell("import os\nprint(os.getpid())"), new_code_cell(last_cell)])
    result = running.execute(nb, timeout=timeout, cwd=tmp_path)
    assert result.ok == (last_cell == "x = 1") and result.timed_out == ("sleep" in last_cell), result.error
    kernel_pid = int(result.notebook.cells[0].outputs[0]["text"])
    assert not _running(kernel_pid), f"the kernel (pid {kernel_pid}) outlived the run"


def _running(pid: int) -> bool:
    import psutil  # ipykernel's own dependency

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_execute_times_out(tmp_path):
    nb = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("import time\ntime.sleep(30)")])
    result = running.execute(nb, timeout=3, cwd=tmp_path)
    assert not result.ok
    assert result.timed_out
    assert "3 s" in result.error
    assert result.seconds < 25
