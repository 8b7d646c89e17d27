"""``make bench``: run every ready rung's solution notebook and print its time and before/after figures.

Each notebook runs as the checker runs it (fresh FT_OUTPUTS folder, quiet, offline, from solutions/), then
the held-out accuracies it saved in ``<FT_OUTPUTS>/NN-slug/metrics.json`` are read back:

    {"before": {"closed_qa": 0.0, "extraction": 0.0, "arithmetic": 0.0}, "after": {...}, ...}

These are the numbers the README's "Expected figures" section quotes. Progress goes to stderr, the table
to stdout, so the table can be pasted or compared as it is.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # works without `pip install -e .` too

from shared.notebooks import exercises, running  # noqa: E402
from shared import course  # noqa: E402
from shared.paths import REPO_ROOT, SOLUTIONS_DIR  # noqa: E402
from shared.profiles import profile_name  # noqa: E402
from shared.world.tasks import TASKS  # noqa: E402

TIMEOUT_S = 900


def read_metrics(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def figure(metrics: dict, task: str) -> str:
    """'0.12 -> 0.85' for one task, 'n/a' for any side that is missing or not a number."""
    def one(stage: str) -> str:
        value = (metrics.get(stage) or {}).get(task)
        return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"

    before, after = one("before"), one("after")
    return "n/a" if before == after == "n/a" else f"{before} -> {after}"


def bench_rung(rung: course.Rung, outputs: Path) -> tuple[str, dict, str]:
    """(seconds as text, metrics, error or '') for one rung's solution."""
    env = {"FT_OUTPUTS": str(outputs), "FT_QUIET": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    result = running.execute(exercises.read(REPO_ROOT / rung.solution), timeout=TIMEOUT_S, cwd=SOLUTIONS_DIR,
                               env=env)
    seconds = f"{result.seconds:.1f}" if result.ok else "failed"
    return seconds, read_metrics(outputs / rung.name / "metrics.json"), result.error


def main() -> int:
    rungs = course.ready_rungs()
    rows, errors = [], []
    for rung in rungs:
        print(f"running {rung.solution} (up to {TIMEOUT_S} s) ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix=f"bench-{rung.number}-") as tmp:
            seconds, metrics, error = bench_rung(rung, Path(tmp))
        rows.append([rung.name, seconds] + [figure(metrics, task) for task in TASKS])
        if error:
            errors.append(f"{rung.name}: {error}")

    header = ["rung", "notebook s", *TASKS]
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    print(f"Bench: profile {profile_name()}, {len(rungs)} ready rung(s); held-out accuracy, before -> after")
    for row in [header] + rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for error in errors:
        print(f"FAILED {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
