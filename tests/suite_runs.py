"""The test suite's one run of each solution notebook, shared by nbval and the checker tests.

nbval executes every solution notebook (cell by cell, as test items) with FT_OUTPUTS pointing at one folder
for the whole session. conftest.py records how each went here; a rung's checker tests then judge that same
run (``checking.PriorRun``) instead of executing the notebook a second time. Run on their own (nbval not
collected), the checker tests execute the notebook themselves, once per test module.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from shared.paths import REPO_ROOT, SOLUTIONS_DIR

# One outputs folder per session, set before nbval starts any kernel: no test reads or writes outputs/.
# A folder the session made itself is removed when it ends (conftest.py); one named by FT_OUTPUTS is kept.
OUTPUTS_MADE_HERE = "FT_OUTPUTS" not in os.environ
OUTPUTS_ROOT = Path(os.environ.setdefault("FT_OUTPUTS", tempfile.mkdtemp(prefix="ft-suite-outputs-")))


@dataclass
class NotebookRun:
    cells: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


RUNS: dict[str, NotebookRun] = {}   # notebook file name (02-sft.ipynb) -> how its nbval run went
FINGERPRINT_BEFORE: dict = {}       # the course's files before any notebook ran (integrity.fingerprint)


def solution_path(nodeid: str) -> Path | None:
    """The solution notebook an nbval item belongs to (None for other tests)."""
    path = nodeid.split("::", 1)[0]
    if path.endswith(".ipynb") and Path(path).parent.name == SOLUTIONS_DIR.name:
        return SOLUTIONS_DIR / Path(path).name
    return None

EXTRA_RUNS: dict[str, float] = {}   # solutions the checker tests had to execute themselves: name -> seconds


LEARNER_OUTPUTS = REPO_ROOT / "outputs"  # what a learner's own runs saved: the suite never touches it
LEARNER_OUTPUTS_BEFORE: dict = {}


def learner_outputs() -> dict[str, tuple]:
    """Every file and folder under the learner's outputs/: path -> (size, modification time)."""
    if not LEARNER_OUTPUTS.is_dir():
        return {}
    paths = [LEARNER_OUTPUTS, *LEARNER_OUTPUTS.rglob("*")]
    return {str(p.relative_to(REPO_ROOT)): (p.stat().st_size if p.is_file() else None, p.stat().st_mtime_ns)
            for p in paths}


def changed_learner_outputs() -> list[str]:
    """What the session added, changed or removed under outputs/ (sorted), compared with its start."""
    now = learner_outputs()
    before = LEARNER_OUTPUTS_BEFORE
    return sorted([f"added   {p}" for p in now.keys() - before.keys()]
                  + [f"removed {p}" for p in before.keys() - now.keys()]
                  + [f"changed {p}" for p in now.keys() & before.keys() if now[p] != before[p]])
