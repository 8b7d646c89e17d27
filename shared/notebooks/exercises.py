"""Exercises from solutions: the solution markers, the Colab cells, written-answer cells, reading and writing.

Solution markers (in ``solutions/NN-slug.ipynb``):

* in a code cell, the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` become, in the exercise,
  ``raise NotImplementedError(...)`` at the same indentation (the marker lines themselves never appear);
* in a markdown cell, the text between ``<!-- BEGIN ANSWER -->`` and ``<!-- END ANSWER -->`` becomes a
  placeholder the learner replaces with their own words;
* a cell tagged ``solution-only`` is left out of the exercise.

A rung offered on Colab (``colab=True`` in ``shared/course.py``) gets two generated cells right after the title:
the Open-in-Colab badge (tagged ``colab-badge``) and the set-up cell from ``shared/notebooks/colab.py`` (tagged
``colab-setup``). ``with_colab`` rewrites them from the manifest every time, so they follow the repository slug.

The exercise also loses all outputs, so ``make exercises`` is deterministic and a test can compare the
committed exercise with a fresh one.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell

from shared import course
from shared.notebooks import colab
from shared.course import Rung

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"


BEGIN_ANSWER, END_ANSWER = "<!-- BEGIN ANSWER -->", "<!-- END ANSWER -->"


ANSWER_PLACEHOLDER = "*Write your answer here, in your own words.*"


STUB = 'raise NotImplementedError("Your code here: replace this line.")'


COLAB_TAGS = ("colab-badge", "colab-setup")


class NotebookError(ValueError):
    """A notebook could not be read or used; the message says what to do."""


def read(path: str | Path) -> nbformat.NotebookNode:
    path = Path(path)
    if not path.exists():
        raise NotebookError(f"{path} does not exist. Pass the path of your notebook (NOTEBOOK=...).")
    try:
        return nbformat.read(path, as_version=4)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError, UnicodeDecodeError) as error:
        raise NotebookError(f"{path} is not a readable notebook (not valid JSON: {error}). "
                            "Was it saved from Jupyter? Restore it from your last checkpoint.") from error
    except Exception as error:  # nbformat raises several validation types
        raise NotebookError(f"{path} is not a valid notebook: {error}") from error


def write(nb: nbformat.NotebookNode, path: str | Path) -> None:
    Path(path).write_text(dumps(nb), encoding="utf-8")


def dumps(nb: nbformat.NotebookNode) -> str:
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _strip_solution(source: str) -> str:
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN_SOLUTION:
            if inside:
                raise NotebookError(f"nested {BEGIN_SOLUTION!r}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + STUB)
        elif stripped == END_SOLUTION:
            if not inside:
                raise NotebookError(f"{END_SOLUTION!r} without {BEGIN_SOLUTION!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise NotebookError(f"{BEGIN_SOLUTION!r} without {END_SOLUTION!r}")
    return "\n".join(out)


def _strip_answer(source: str) -> str:
    pattern = re.compile(re.escape(BEGIN_ANSWER) + r".*?" + re.escape(END_ANSWER), re.S)
    return pattern.sub(ANSWER_PLACEHOLDER, source)


def make_exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The exercise notebook for a solution notebook (pure: the solution is not changed)."""
    exercise = copy.deepcopy(solution)
    cells = []
    for cell in exercise.cells:
        if "solution-only" in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.source = _strip_solution(cell.source)
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown":
            cell.source = _strip_answer(cell.source)
        cell.metadata.pop("execution", None)
        cell.pop("id", None)
        cells.append(cell)
    exercise.cells = cells
    exercise.metadata.pop("widgets", None)
    exercise.nbformat_minor = 4  # cell ids (4.5+) change on every save; without them the diff stays stable
    return exercise


def clean_solution(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A solution without outputs or execution counts (what is committed)."""
    clean = copy.deepcopy(solution)
    for cell in clean.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
        cell.pop("id", None)
    clean.metadata.pop("widgets", None)
    clean.nbformat_minor = 4
    return clean


def colab_cells(rung: Rung) -> list[nbformat.NotebookNode]:
    """The badge and set-up cells for a rung's notebook, built from the manifest's repository slug."""
    badge = new_markdown_cell(f"{rung.colab_badge}\n\nOn Colab, run the next cell first: it fetches the course and "
                              "installs its packages. Anywhere else it does nothing.",
                              id="colab-badge", metadata={"tags": ["colab-badge"]})  # fixed ids: same output each time
    setup = new_code_cell(colab.setup_cell(course.REPOSITORY, course.BRANCH, rung.folder),
                          id="colab-setup", metadata={"tags": ["colab-setup"]})
    return [badge, setup]


def with_colab(nb: nbformat.NotebookNode, rung: Rung) -> nbformat.NotebookNode:
    """The notebook with fresh Colab cells after its title (or none, for a rung not offered on Colab). Pure."""
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if not set(COLAB_TAGS) & set(c.get("metadata", {}).get("tags", []))]
    if not rung.colab:
        return nb
    title = nb.cells[0] if nb.cells else None
    if title is None or title.cell_type != "markdown" or not title.source.lstrip().startswith("# "):
        raise NotebookError(f"the notebook for rung {rung.number} must start with its title: a markdown cell "
                            "beginning with '# '. The Colab cells go right after it.")
    nb.cells[1:1] = colab_cells(rung)
    return nb


def answer_cells(nb: nbformat.NotebookNode, tag: str = "answer") -> dict[str, str]:
    """Written answers: markdown cells tagged ``answer`` (name from the ``answer-<name>`` tag), by name."""
    answers = {}
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "markdown" and tag in tags:
            name = next((t[len(tag) + 1:] for t in tags if t.startswith(tag + "-")), f"answer{len(answers) + 1}")
            answers[name] = cell.source
    return answers
