"""Where things live. Every other module asks here instead of building paths itself."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
RUNGS_DIR = REPO_ROOT / "rungs"
SOLUTIONS_DIR = REPO_ROOT / "solutions"
TINY_BASE_DIR = DATA_DIR / "tiny-base"
METRICS_DIR = REPO_ROOT / "shared" / "evaluation" / "metrics"


def outputs_dir(rung: str, create: bool = True) -> Path:
    """Where a rung's notebook saves what it made (models, metrics, plots); made if missing, unless `create`
    is False (to read an earlier rung's results without leaving an empty folder behind).

    The checker points FT_OUTPUTS at a fresh folder when it runs a notebook, so a check never reads
    (or overwrites) what the learner saved from their own runs.
    """
    root = Path(os.environ.get("FT_OUTPUTS", REPO_ROOT / "outputs"))
    path = root / rung
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
