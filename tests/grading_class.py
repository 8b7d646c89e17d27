"""A synthetic class for the grading tests: thirty-odd submissions of the test rung (grading_fixture/90-fixture)
built from its solution and its exercise -- good ones written many ways, unfinished ones, each way of cheating
the checker catches, and notebooks that break, hang, flood their output, eat memory, or reach for another
learner's files -- with what each must be graded.

    cls = build_class(tmp_path / "submissions", outside=tmp_path / "outside")
    cls.expected["ada"]  ->  Expect("done")
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from shared import course
from shared.notebooks import exercises

FIXTURE = Path(__file__).resolve().parent / "grading_fixture"
RUNG = course.Rung("90", "fixture", "Grading fixture", "A rung for the grading tests.", 1, False, "ready")
NOTEBOOK = "90-fixture.ipynb"

SOLUTION_FUNCTION = '''def mean_words(texts):
    """The mean number of whitespace-separated words in `texts`."""
    ### BEGIN SOLUTION
    if not texts:
        raise ValueError("no texts")
    return sum(len(text.split()) for text in texts) / len(texts)
    ### END SOLUTION'''
ANSWER = "A mean summarises many texts in one number that a reader can compare across sets."


def solution() -> nbformat.NotebookNode:
    answer = new_markdown_cell(f"{exercises.BEGIN_ANSWER}\n{ANSWER}\n{exercises.END_ANSWER}",
                               metadata={"tags": ["answer", "answer-why-a-mean"]})
    return new_notebook(cells=[
        new_markdown_cell("# The grading fixture\nMean words per text."),
        new_code_cell('import json\nfrom shared.paths import outputs_dir\n\nOUT = outputs_dir("90-fixture")\n'
                      'TEXTS = ["the owl keeps watch", "Fenwick", "a potter in Quillby makes jugs"]'),
        new_code_cell(SOLUTION_FUNCTION),
        new_code_cell('figure = mean_words(TEXTS)\n'
                      '(OUT / "metrics.json").write_text(json.dumps({"mean_words": figure}))\n'
                      'print(f"{figure:.2f} words a text")'),
        new_markdown_cell("Why report a mean?"), answer],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def exercise() -> nbformat.NotebookNode:
    return exercises.make_exercise(solution())


def plain(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The solution as a learner would hand it in: markers gone, the code and answer kept."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        cell.source = "\n".join(line for line in cell.source.splitlines()
                                if line.strip() not in (exercises.BEGIN_SOLUTION, exercises.END_SOLUTION,
                                                        exercises.BEGIN_ANSWER, exercises.END_ANSWER))
    return nb


def with_function(body: str) -> nbformat.NotebookNode:
    nb = plain(solution())
    nb.cells[2].source = body
    return nb


def with_cell(code: str, at: int = 2, base=None) -> nbformat.NotebookNode:
    """The solution with a code cell inserted before cell `at` (after the set-up)."""
    nb = plain(solution()) if base is None else base
    nb.cells.insert(at, new_code_cell(code))
    return nb


@dataclass
class Expect:
    status: str                 # "done", "not done", "broken", "missing"
    says: str = ""              # a fragment of the reason, or of a failed criterion's detail


@dataclass
class Class:
    folder: Path
    expected: dict[str, Expect]


GOOD_BODIES = [
    SOLUTION_FUNCTION,
    "def mean_words(texts):\n    if not texts:\n        raise ValueError('empty')\n"
    "    counts = [len(t.split()) for t in texts]\n    return sum(counts) / len(counts)",
    "def mean_words(texts):\n    total = 0\n    for text in texts:\n        total += len(text.split())\n"
    "    if len(texts) == 0:\n        raise ValueError('no texts')\n    return total / len(texts)",
    "import numpy as np\n\ndef mean_words(texts):\n    if not texts:\n        raise ValueError('no texts')\n"
    "    return float(np.mean([len(t.split()) for t in texts]))",
    "def mean_words(texts):\n    # words are what split() finds between runs of whitespace\n    if not texts:\n"
    "        raise ValueError('nothing to average')\n    return sum(map(lambda t: len(t.split()), texts)) / len(texts)",
]


def write(nb, folder: Path, name: str = NOTEBOOK) -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    exercises.write(nb, folder / name)


def build_class(folder: Path, outside: Path, hidden: Path) -> Class:
    """Thirty-odd submissions in `folder`; `outside` is a folder no notebook may write to, `hidden` the hidden
    tests' folder no notebook may read."""
    expected: dict[str, Expect] = {}

    def add(learner: str, nb, expect: Expect, name: str = NOTEBOOK) -> None:
        write(nb, folder / learner, name)
        expected[learner] = expect

    # Done: the solution written several ways, some with a comment or a print of their own.
    for number, body in enumerate(GOOD_BODIES):
        nb = with_function(body)
        if number % 2:
            nb.cells[3].source += f"\nprint('run {number}')"
        add(f"good{number:02d}", nb, Expect("done"))
    add("nested", plain(solution()), Expect("done"), name="rungs/90-fixture/exercise.ipynb")
    zipped = folder / "zipped.zip"
    with zipfile.ZipFile(zipped, "w") as bundle:
        bundle.writestr(f"90-fixture/{NOTEBOOK}", exercises.dumps(with_function(GOOD_BODIES[1])))
    expected["zipped"] = Expect("done")
    add("chatty", with_cell("for i in range(200_000):\n    print('x' * 100, i)"), Expect("done"))   # 20 MB printed

    # Not done: unfinished, wrong, or cheating -- each with the criterion that says so.
    add("untouched", exercise(), Expect("not done", "mean_words, which is not written yet"))
    add("hidden-miss", with_function("def mean_words(texts):\n    if texts == ['x y z', 'w']:\n        return 0.0\n"
                                     "    return sum(len(t.split()) for t in texts) / len(texts)"),
        Expect("not done", "mean_words(['x y z', 'w']) returned 0.0"))   # wrong only on the hidden case
    nb = plain(solution())
    nb.cells[5].source = exercises.ANSWER_PLACEHOLDER
    add("no-answer", nb, Expect("not done", "0 words written"))
    add("wrong", with_function("def mean_words(texts):\n    return sum(len(t) for t in texts) / len(texts)"),
        Expect("not done", "mean_words(['one two', 'three']) returned"))
    add("reference", with_function("import statistics\n\ndef mean_words(texts):\n"
                                   "    return statistics.mean(len(t.split()) for t in texts)"),
        Expect("not done", "statistics"))
    nb = plain(solution())
    nb.cells[3].source = 'figure = 99.0\n(OUT / "metrics.json").write_text(json.dumps({"mean_words": figure}))'
    add("tampered", nb, Expect("not done", "metrics.json says 99.0"))
    nb = plain(solution())
    nb.cells[3].source = 'print("saved nothing")'
    add("no-metrics", nb, Expect("not done", "metrics.json is missing"))
    add("syntax", with_cell("def broken(:\n    pass"), Expect("not done", "SyntaxError"))
    add("raises", with_cell("raise RuntimeError('my own bug')"), Expect("not done", "RuntimeError: my own bug"))
    add("course-writer", with_cell("from shared.paths import REPO_ROOT\n"
                                   "(REPO_ROOT / 'shared' / 'pwned.py').write_text('x = 1')"),
        Expect("not done", "outside this submission's folder"))
    add("outside-writer", with_cell(f"open({str(outside / 'pwned.txt')!r}, 'w').write('x')"),
        Expect("not done", "outside this submission's folder"))
    add("copier", with_cell(f"import glob\nfor path in glob.glob({str(folder)!r} + '/*/*.ipynb'):\n"
                            "    print(open(path).read()[:100])"),
        Expect("not done", "may not be read"))
    add("peeker", with_cell(f"print(open({str(hidden / 'hidden.json')!r}).read())"),
        Expect("not done", "may not be read"))
    add("shell", with_cell(f"import os\nos.system('cat {folder}/*/*.ipynb > stolen.txt')"),
        Expect("not done", "os.system is not allowed"))
    add("bang", with_cell(f"!cat {folder}/good00/{NOTEBOOK} > stolen.txt"), Expect("not done", "Python commands only"))
    (folder / "corrupt").mkdir()
    (folder / "corrupt" / NOTEBOOK).write_text("{ this is not json")
    expected["corrupt"] = Expect("not done", "not a readable notebook")

    # Broken: the batch stops them and says why.
    add("looper", with_cell("while True:\n    pass"), Expect("not done", "did not finish within"))
    add("hog", with_cell("hog = b'x' * (3 * 2**30)"), Expect("broken", "GB of memory"))
    add("hang-graded", with_function("def mean_words(texts):\n    if texts == ['one two', 'three']:\n"
                                     "        while True:\n            pass\n"
                                     "    return sum(len(t.split()) for t in texts) / len(texts)"),
        Expect("broken", "did not finish within"))
    write(plain(solution()), folder / "twice", NOTEBOOK)
    write(plain(solution()), folder / "twice", "90-fixture-copy.ipynb")
    expected["twice"] = Expect("broken", "2 notebooks for rung 90")
    with zipfile.ZipFile(folder / "slipper.zip", "w") as bundle:
        bundle.writestr("../../escaped.ipynb", exercises.dumps(plain(solution())))
    expected["slipper"] = Expect("broken", "a path outside the zip's own folder")
    (folder / "absent").mkdir()
    (folder / "absent" / "notes.txt").write_text("I will hand it in tomorrow")
    expected["absent"] = Expect("missing", "no notebook for rung 90-fixture")
    return Class(folder, expected)


def write_hidden(folder: Path) -> Path:
    """Hidden tests for the fixture rung: one more case its checker takes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hidden.json").write_text(json.dumps({"rungs": {"90": {"CASES": [[["x y z", "w"], 2.0]]}}}))
    return folder


def copy_of_fixture(destination: Path) -> Path:
    shutil.copytree(FIXTURE, destination)
    return destination
