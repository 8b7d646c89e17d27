"""Regenerate the exercise notebooks from the solutions (``make exercises``), or check they are in sync.

    python -m shared.notebooks.cli              # write rungs/NN-slug/exercise.ipynb from solutions/NN-slug.ipynb,
                                                # after stripping each solution's outputs and refreshing its
                                                # Colab cells (badge and set-up cell, for rungs with colab=True)
    python -m shared.notebooks.cli --rung 02    # only rung 02 (repeat --rung for more)
    python -m shared.notebooks.cli --check      # write nothing; exit 1 listing what is out of sync

The solution is the only notebook a maintainer edits; an exercise is always made from it, so a fix never has to
be applied twice. The Colab cells are generated from ``shared/course.py`` too: after the repository slug changes,
``--check`` fails until ``make exercises`` has rewritten them. This is a maintainer tool: it overwrites notebooks
without asking, and says what it wrote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.notebooks import exercises
from shared import course
from shared.paths import REPO_ROOT, RUNGS_DIR, SOLUTIONS_DIR


def pairs(rungs: list[str] | None = None) -> list[tuple[Path, Path]]:
    """(solution, exercise) for every solutions/NN-slug.ipynb, or only for the rung numbers given."""
    found = sorted(SOLUTIONS_DIR.glob("[0-9][0-9]-*.ipynb"))
    if rungs is None:
        return [(s, RUNGS_DIR / s.stem / "exercise.ipynb") for s in found]
    wanted = {course.rung(number).name for number in rungs}  # an unknown number raises a KeyError naming the rungs
    missing = sorted(wanted - {s.stem for s in found})
    if missing:
        raise FileNotFoundError(f"no solution notebook for {', '.join(missing)} under {_rel(SOLUTIONS_DIR)}/")
    return [(s, RUNGS_DIR / s.stem / "exercise.ipynb") for s in found if s.stem in wanted]


def rung_of(solution: Path) -> course.Rung:
    """The manifest's rung for solutions/NN-slug.ipynb (its name must match the manifest exactly)."""
    rung = next((r for r in course.RUNGS if r.name == solution.stem), None)
    if rung is None:
        raise exercises.NotebookError(f"{_rel(solution)} is not a rung in shared/course.py; rename it to one of: "
                                      f"{', '.join(r.name for r in course.RUNGS)}")
    return rung


def expected(solution: Path) -> tuple[str, str]:
    """The text the clean solution (with fresh Colab cells) and its exercise should have."""
    fresh = exercises.with_colab(exercises.read(solution), rung_of(solution))
    clean = exercises.clean_solution(fresh)
    return exercises.dumps(clean), exercises.dumps(exercises.make_exercise(clean))


def _text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def out_of_sync(rungs: list[str] | None = None) -> list[str]:
    """Notebooks that differ from what `make exercises` writes (empty list: all in sync). Writes nothing.

    A solution counts as stale only for its Colab cells: outputs left in a solution are stripped by
    `make exercises` but are no reason to fail a check.
    """
    stale = []
    for solution, exercise in pairs(rungs):
        solution_text, exercise_text = expected(solution)
        if exercises.dumps(exercises.clean_solution(exercises.read(solution))) != solution_text:
            stale.append(f"{_rel(solution)} has missing or stale Colab cells")
        current = _text(exercise)
        if current != exercise_text:
            reason = "missing" if current is None else "differs from its solution"
            stale.append(f"{_rel(exercise)} {reason} ({_rel(solution)})")
    return stale


def sync(rungs: list[str] | None = None) -> list[str]:
    """Write every exercise (and clean solution) that changed; return what was written."""
    written = []
    for solution, exercise in pairs(rungs):
        solution_text, exercise_text = expected(solution)
        if _text(solution) != solution_text:
            solution.write_text(solution_text, encoding="utf-8")
            written.append(f"{_rel(solution)} (outputs stripped, Colab cells refreshed)")
        if _text(exercise) != exercise_text:
            exercise.parent.mkdir(parents=True, exist_ok=True)
            exercise.write_text(exercise_text, encoding="utf-8")
            written.append(_rel(exercise))
    return written


def _rel(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make rungs/NN-slug/exercise.ipynb from solutions/NN-slug.ipynb.")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a notebook is out of sync")
    parser.add_argument("--rung", action="append", metavar="NN", help="only this rung (e.g. 02); repeatable")
    args = parser.parse_args(argv)
    try:
        chosen = pairs(args.rung)
    except (KeyError, FileNotFoundError) as error:
        parser.error(error.args[0])
    if not chosen:
        print(f"no solution notebooks under {_rel(SOLUTIONS_DIR)}/")
        return 0
    try:
        return _check(args.rung, len(chosen)) if args.check else _sync(args.rung)
    except exercises.NotebookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _check(rungs: list[str] | None, count: int) -> int:
    stale = out_of_sync(rungs)
    for line in stale:
        print(f"out of sync: {line}", file=sys.stderr)
    if stale:
        print("Run `make exercises` to regenerate them from the solutions.", file=sys.stderr)
        return 1
    print(f"all {count} exercise(s) in sync with their solutions")
    return 0


def _sync(rungs: list[str] | None) -> int:
    written = sync(rungs)
    for line in written:
        print(f"wrote {line}")
    if not written:
        print("nothing to write: every exercise already matches its solution")
    return 0


if __name__ == "__main__":
    sys.exit(main())
