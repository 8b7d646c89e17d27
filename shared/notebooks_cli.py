"""Regenerate the exercise notebooks from the solutions (``make exercises``), or check they are in sync.

    python -m shared.notebooks_cli          # write rungs/NN-slug/exercise.ipynb from solutions/NN-slug.ipynb,
                                            # and strip the outputs from each solution
    python -m shared.notebooks_cli --check  # write nothing; exit 1 listing exercises that are out of sync

The solution is the only notebook a maintainer edits; an exercise is always made from it, so a fix never has to
be applied twice. This is a maintainer tool: it overwrites exercises without asking, and says what it wrote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared import notebooks
from shared.paths import REPO_ROOT, RUNGS_DIR, SOLUTIONS_DIR


def pairs() -> list[tuple[Path, Path]]:
    """(solution, exercise) for every solutions/NN-slug.ipynb."""
    return [(s, RUNGS_DIR / s.stem / "exercise.ipynb") for s in sorted(SOLUTIONS_DIR.glob("[0-9][0-9]-*.ipynb"))]


def expected(solution: Path) -> tuple[str, str]:
    """The text the clean solution and its exercise should have (as notebooks.write writes them)."""
    clean = notebooks.clean_solution(notebooks.read(solution))
    return notebooks.dumps(clean), notebooks.dumps(notebooks.make_exercise(clean))


def _text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def out_of_sync() -> list[str]:
    """Exercises that differ from what their solution makes (empty list: all in sync). Writes nothing."""
    stale = []
    for solution, exercise in pairs():
        _, exercise_text = expected(solution)
        current = _text(exercise)
        if current != exercise_text:
            reason = "missing" if current is None else "differs from its solution"
            stale.append(f"{_rel(exercise)} {reason} ({_rel(solution)})")
    return stale


def sync() -> list[str]:
    """Write every exercise (and clean solution) that changed; return what was written."""
    written = []
    for solution, exercise in pairs():
        solution_text, exercise_text = expected(solution)
        if _text(solution) != solution_text:
            solution.write_text(solution_text, encoding="utf-8")
            written.append(f"{_rel(solution)} (outputs stripped)")
        if _text(exercise) != exercise_text:
            exercise.parent.mkdir(parents=True, exist_ok=True)
            exercise.write_text(exercise_text, encoding="utf-8")
            written.append(_rel(exercise))
    return written


def _rel(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make rungs/NN-slug/exercise.ipynb from solutions/NN-slug.ipynb.")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when an exercise is out of sync")
    args = parser.parse_args(argv)
    if not pairs():
        print(f"no solution notebooks under {_rel(SOLUTIONS_DIR)}/")
        return 0
    if args.check:
        stale = out_of_sync()
        for line in stale:
            print(f"out of sync: {line}", file=sys.stderr)
        if stale:
            print("Run `make exercises` to regenerate them from the solutions.", file=sys.stderr)
            return 1
        print(f"all {len(pairs())} exercise(s) in sync with their solutions")
        return 0
    written = sync()
    for line in written:
        print(f"wrote {line}")
    if not written:
        print("nothing to write: every exercise already matches its solution")
    return 0


if __name__ == "__main__":
    sys.exit(main())
