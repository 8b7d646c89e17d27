"""A class of thirty submissions of one real rung, graded as an instructor grades one (``make grade``): the
seconds it takes and what the report says.

    .venv/bin/python bench/grade_class.py [--rung capstone] [--learners 30] [--jobs 2]

The class is made from the rung's solution and exercise: a third hand in the solution (each with a line of
their own, so no two notebooks are the same file), a third the untouched exercise, and the rest a notebook
that breaks at its first cell, a notebook with an endless loop in it, or nothing. Printed: the seconds for the
whole class, the verdicts, each criterion's pass rate, and the seconds of a second run (everything reused).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # works without `pip install -e .` too

from nbformat.v4 import new_code_cell  # noqa: E402

from shared import course  # noqa: E402
from shared.grading import batch, runner  # noqa: E402
from shared.notebooks import exercises  # noqa: E402
from shared.paths import REPO_ROOT  # noqa: E402

BROKEN_CELLS = ["raise RuntimeError('my own bug')", "while True:\n    pass"]


def make_class(rung: course.Rung, folder: Path, learners: int) -> None:
    exercise = exercises.read(REPO_ROOT / rung.exercise)
    for number in range(learners):
        kind = number % 3
        if kind == 0:
            notebook = exercises.read(REPO_ROOT / rung.solution)
            notebook.cells.append(new_code_cell(f"print('learner {number:02d} was here')"))
        elif kind == 1:
            notebook = exercise
        elif number % 9 == 8:   # handed in a note, not a notebook
            (folder / f"learner{number:02d}").mkdir(parents=True)
            (folder / f"learner{number:02d}" / "note.txt").write_text("I will hand it in tomorrow.")
            continue
        else:
            notebook = exercises.read(REPO_ROOT / rung.solution)
            notebook.cells.insert(1, new_code_cell(BROKEN_CELLS[number % 2]))
        (folder / f"learner{number:02d}").mkdir(parents=True)
        exercises.write(notebook, folder / f"learner{number:02d}" / f"{rung.name}.ipynb")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rung", default="capstone")
    parser.add_argument("--learners", type=int, default=30)
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--timeout", type=float, default=300, help="seconds a notebook may run")
    args = parser.parse_args(argv)
    rung = course.rung(args.rung)
    with tempfile.TemporaryDirectory(prefix="grade-class-") as scratch:
        submissions = Path(scratch) / "submissions"
        make_class(rung, submissions, args.learners)
        limits = runner.Limits(notebook_timeout_s=args.timeout)
        start = time.monotonic()
        grader = batch.Grader(submissions, Path(scratch) / "graded", [rung], jobs=args.jobs, limits=limits,
                              log=lambda line: print(line, file=sys.stderr, flush=True))
        results = grader.grade()
        seconds = time.monotonic() - start
        again = time.monotonic()
        batch.Grader(submissions, Path(scratch) / "graded", [rung], jobs=args.jobs, limits=limits,
                     log=lambda line: None).grade()
        print(f"{rung.name}: {args.learners} learners, {grader.jobs} at a time, {grader.limits.threads} thread(s) "
              f"each: {seconds:.0f} s; again, unchanged: {time.monotonic() - again:.1f} s")
        print("verdicts:", dict(Counter(result.status for result in results)))
        checked = [r for r in results if r.criteria]
        names = list(dict.fromkeys(c["name"] for r in checked for c in r.criteria))
        for name in names:
            statuses = [c["status"] for r in checked for c in r.criteria if c["name"] == name]
            met = sum(status in ("pass", "review") for status in statuses)
            print(f"  {met:3d} / {len(statuses):3d}  {name}")
        slowest = max(checked, key=lambda r: r.seconds)
        print(f"slowest: {slowest.learner} {slowest.seconds:.0f} s ({slowest.status})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
