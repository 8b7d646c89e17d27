"""Every ready rung's solution graded as ``make grade`` grades a learner's notebook, with the jail noting what it
would refuse instead of refusing it: what a good notebook's libraries do that the jail must allow.

    .venv/bin/python bench/jail_audit.py [--rung 09]

Prints, per rung, the verdict, the seconds, and each thing the jail would have refused. An empty list for every
rung means the course's own notebooks pass under grading as they pass under ``make check``; a line here is a
program or a path to allow in ``shared/checking/jail_site/sitecustomize.py`` (or a real escape to look at).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # works without `pip install -e .` too

from shared import course  # noqa: E402
from shared.grading import runner  # noqa: E402
from shared.paths import RUNGS_DIR, SOLUTIONS_DIR  # noqa: E402


def audit(rung: course.Rung, scratch: Path) -> runner.Result:
    submission = scratch / "submissions" / "solution"
    submission.mkdir(parents=True, exist_ok=True)
    notebook = submission / f"{rung.name}.ipynb"
    shutil.copy(SOLUTIONS_DIR / f"{rung.name}.ipynb", notebook)
    job = runner.Job("solution", rung.number, rung.name, RUNGS_DIR / rung.name / "check.py", submission, notebook,
                     scratch / "work", keep=scratch / "kept")
    limits = runner.Limits(notebook_timeout_s=1800, memory_gb=16, threads=os.cpu_count() or 1)
    result = runner.run(job, limits, deny=[SOLUTIONS_DIR, scratch / "submissions"], log_only=True)
    notebook.unlink()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rung", help="one rung (default: every ready rung)")
    args = parser.parse_args(argv)
    rungs = [course.rung(args.rung)] if args.rung else course.ready_rungs()
    clean = True
    with tempfile.TemporaryDirectory(prefix="jail-audit-") as scratch:
        for rung in rungs:
            result = audit(rung, Path(scratch) / rung.number)
            print(f"{rung.name}: {result.status}, {result.seconds:.0f} s"
                  + (f" -- {result.reason}" if result.reason else ""), flush=True)
            for failed in result.failed_criteria():
                print(f"    ✗ {failed['name']}: {failed['detail'][:200]}", flush=True)
            for line in result.refused:
                print(f"    would refuse: {line}", flush=True)
            clean = clean and not result.refused
    print("nothing would be refused" if clean else "the jail would refuse the lines above")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
