"""`make grade SUBMISSIONS=dir [RUNG=NN] [OUT=dir] [HIDDEN=dir] [JOBS=n]`: grade a class (see batch.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.grading import batch, runner
from shared.grading.records import BROKEN, DONE, MISSING, NOT_DONE


def parse(argv):
    parser = argparse.ArgumentParser(prog="make grade", description="Grade a folder of submissions with the "
                                     "rungs' checkers: one subfolder or zip per learner.")
    parser.add_argument("submissions", type=Path)
    parser.add_argument("--rung", help="one rung (02, 02-sft or sft); default: every ready rung")
    parser.add_argument("--out", type=Path, help="where results go (default: SUBMISSIONS-graded beside it)")
    parser.add_argument("--hidden", type=Path, help="an instructor's hidden tests (a folder with hidden.json)")
    parser.add_argument("--jobs", type=int, help="checks at a time (default: 2 where the machine has the cores "
                                                 "and memory, else 1)")
    parser.add_argument("--timeout", type=float, default=runner.Limits.notebook_timeout_s,
                        help="seconds each notebook may run (default %(default)s)")
    parser.add_argument("--memory-gb", type=float, default=batch.MEMORY_PER_CHECK_GB,
                        help="memory each check may use, everything it starts together (default %(default)s)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    submissions = args.submissions.resolve()
    out = args.out or submissions.with_name(submissions.name + "-graded")
    try:
        grader = batch.Grader(submissions, out, batch.rungs_to_grade(args.rung), jobs=args.jobs,
                              hidden=args.hidden, limits=runner.Limits(args.timeout, args.memory_gb))
        results = grader.grade()
    except (ValueError, KeyError) as error:   # a wrong folder, an unknown rung, unusable hidden tests
        print(f"make grade: {error}", file=sys.stderr)
        return 2
    counts = {status: sum(r.status == status for r in results) for status in (DONE, NOT_DONE, BROKEN, MISSING)}
    print(", ".join(f"{n} {status}" for status, n in counts.items()))
    print(f"grades: {out / 'grades.csv'}\nreport: {out / 'report.html'}  "
          f"(to mark written answers: make grade-review OUT={out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
