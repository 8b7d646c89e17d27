"""Keeping a graded notebook's code in its own folder (an instructor grading a class: ``make grade``).

The grader sets FT_JAIL for each check -- {"root": the submission's folder, "deny": what it may not read} --
and the checking framework passes it on to the two processes that run a learner's code: the notebook's
kernel (and any Python command it starts) and the graded functions' process. The rules themselves are in
``jail_site/sitecustomize.py``: an audit hook that refuses reads under denied folders and writes outside the
root. ``make check`` sets no FT_JAIL, and nothing changes for a learner checking their own work.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

# The same names as in jail_site/sitecustomize.py, which cannot import them: it also starts in the frameworks'
# own environments, where this package is not installed.
JAIL_VAR = "FT_JAIL"
REFUSED_LOG = "refused.log"   # jail_site writes each refusal there, in the root
SITE_FOLDER = Path(__file__).resolve().parent / "jail_site"


def spec(root: Path, deny: list[Path], log_only: bool = False) -> str:
    """FT_JAIL's value: `root` is the only place a graded notebook writes; nothing under `deny` is read. With
    `log_only`, what would be refused is only written to the root's refused.log."""
    return json.dumps({"root": str(Path(root).resolve()), "deny": [str(Path(p).resolve()) for p in deny],
                       "log_only": log_only})


def active() -> str:
    return os.environ.get(JAIL_VAR, "")


def kernel_env() -> dict[str, str]:
    """What a notebook's kernel needs in its environment to start jailed ({} when no jail is set): Python
    imports jail_site/sitecustomize.py at start-up, which installs the hook."""
    if not active():
        return {}
    path = os.pathsep.join(p for p in (str(SITE_FOLDER), os.environ.get("PYTHONPATH", "")) if p)
    return {JAIL_VAR: active(), "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}


def enter() -> bool:
    """Jail this process (the graded functions' child, forked before any learner code runs). False when no
    jail is set."""
    if not active():
        return False
    location = importlib.util.spec_from_file_location("ft_jail_site", SITE_FOLDER / "sitecustomize.py")
    module = importlib.util.module_from_spec(location)
    location.loader.exec_module(module)   # installs the hook from FT_JAIL as it loads
    return True
