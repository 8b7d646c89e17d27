"""``make bench [RUNG=NN] [SEEDS=0,1,2]``: run ready rungs' solution notebooks and print their figures.

Each notebook runs as the checker runs it (fresh FT_OUTPUTS folder, quiet, offline, from solutions/), then the
figures it saved in ``<FT_OUTPUTS>/NN-slug/metrics.json`` are read back:

    {"before": {"closed_qa": 0.0, "extraction": 0.0, "arithmetic": 0.0}, "after": {...}, ...}

Without SEEDS: one run per rung, its seconds and held-out accuracy before -> after (the README's "Expected
figures"). With SEEDS: the rung's solution once per training seed (FT_SEED), and every number it saved with
its mean, its worst and its spread over the seeds -- where a checker's thresholds come from (a margin below
the worst seed). Progress goes to stderr, tables to stdout, so they can be pasted as they are.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # works without `pip install -e .` too

from shared import course  # noqa: E402
from shared.notebooks import exercises, running  # noqa: E402
from shared.numbers import is_finite_number  # noqa: E402
from shared.paths import REPO_ROOT, SOLUTIONS_DIR  # noqa: E402
from shared.profiles import SEED_VAR, profile_name  # noqa: E402
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
        return f"{value:.2f}" if is_finite_number(value) else "n/a"

    before, after = one("before"), one("after")
    return "n/a" if before == after == "n/a" else f"{before} -> {after}"


def numbers_in(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Every number a metrics.json holds, by its path: {"after.closed_qa": 0.96, "train_seconds": 71.2, ...}."""
    found = {}
    for key, value in metrics.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(numbers_in(value, path + "."))
        elif is_finite_number(value):
            found[path] = float(value)
    return found


def bench_rung(rung: course.Rung, outputs: Path, seed: int | None = None) -> tuple[float | None, dict, str]:
    """(seconds or None when it failed, metrics, error or '') for one run of a rung's solution."""
    env = {"FT_OUTPUTS": str(outputs), "FT_QUIET": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    if seed is not None:
        env[SEED_VAR] = str(seed)
    result = running.execute(exercises.read(REPO_ROOT / rung.solution), timeout=TIMEOUT_S, cwd=SOLUTIONS_DIR,
                             env=env)
    return (result.seconds if result.ok else None), read_metrics(outputs / rung.name / "metrics.json"), result.error


def run_once(rung: course.Rung, seed: int | None = None) -> tuple[float | None, dict, str]:
    label = f" with {SEED_VAR}={seed}" if seed is not None else ""
    print(f"running {rung.solution}{label} (up to {TIMEOUT_S} s) ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix=f"bench-{rung.number}-") as tmp:
        return bench_rung(rung, Path(tmp), seed)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def before_after(rungs: list[course.Rung]) -> int:
    rows, errors = [], []
    for rung in rungs:
        seconds, metrics, error = run_once(rung)
        rows.append([rung.name, f"{seconds:.1f}" if seconds is not None else "failed"]
                    + [figure(metrics, task) for task in TASKS])
        if error:
            errors.append(f"{rung.name}: {error}")
    print(f"Bench: profile {profile_name()}, {len(rungs)} ready rung(s); held-out accuracy, before -> after")
    print_table(["rung", "notebook s", *TASKS], rows)
    for error in errors:
        print(f"FAILED {error}")
    return 1 if errors else 0


def over_seeds(rung: course.Rung, seeds: list[int]) -> int:
    per_seed, errors = {}, []
    for seed in seeds:
        seconds, metrics, error = run_once(rung, seed)
        if error:
            errors.append(f"{rung.name}, seed {seed}: {error}")
            continue
        per_seed[seed] = {**numbers_in(metrics), "notebook_seconds": seconds}
    names = sorted({name for figures in per_seed.values() for name in figures})
    rows = []
    for name in names:
        values = [per_seed[seed].get(name) for seed in per_seed]
        known = [v for v in values if v is not None]
        rows.append([name, *(f"{v:.4g}" if v is not None else "n/a" for v in values),
                     f"{statistics.mean(known):.4g}", f"{min(known):.4g}", f"{max(known) - min(known):.4g}"])
    print(f"Bench: rung {rung.number} ({rung.name}), profile {profile_name()}, training seeds "
          f"{', '.join(map(str, per_seed))}")
    print_table(["figure", *(f"seed {seed}" for seed in per_seed), "mean", "worst (min)", "spread"], rows)
    for error in errors:
        print(f"FAILED {error}")
    return 1 if errors or not per_seed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run ready rungs' solutions and print their figures.")
    parser.add_argument("--rung", help="one rung, e.g. 02 (default: every ready rung)")
    parser.add_argument("--seeds", help="training seeds, e.g. 0,1,2: the rung's figures over seeds (needs --rung)")
    args = parser.parse_args(argv)
    rungs = course.ready_rungs()
    if args.rung:
        rungs = [r for r in rungs if r.number == args.rung.zfill(2)]
        if not rungs:
            parser.error(f"no ready rung {args.rung!r}; ready: {', '.join(r.number for r in course.ready_rungs())}")
    if args.seeds is None:
        return before_after(rungs)
    if len(rungs) != 1:
        parser.error("SEEDS needs one rung: make bench RUNG=02 SEEDS=0,1,2")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"SEEDS must be whole numbers separated by commas, e.g. 0,1,2 (got {args.seeds!r})")
    return over_seeds(rungs[0], seeds)


if __name__ == "__main__":
    sys.exit(main())
