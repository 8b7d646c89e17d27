"""Hidden tests: cases an instructor adds that learners never see.

An instructor keeps a folder outside the learners' copy of the course and points the checkers at it
(``FT_HIDDEN_TESTS=/path/to/folder``, or ``make grade HIDDEN=/path/to/folder``). Its ``hidden.json``:

    {
      "check_seed": 90210,
      "rungs": {
        "02": {"SCORING_CASES": [["Oak Hollow", "Oakhollow", "closed_qa"]],
               "UNSEEN_EXAMPLES": [{"prompt": "Who keeps a heron?", "answer": "Ro Sel keeps a heron."}]}
      }
    }

* ``check_seed`` replaces the course's public seed for everything a checker draws at check time -- new
  questions, a dirty set, a held-out split of new people, spot checks -- so a learner cannot have trained on it
  (an explicit ``FT_CHECK_SEED`` still wins: it is the command line's).
* ``rungs.NN.NAME`` adds cases to the checker's list of that name (``SCORING_CASES`` in rungs/02-sft/check.py):
  the same shape as the list's own entries, judged the same way -- against the course's reference, so a hidden
  case needs no expected answer of its own. Each checker's module says which lists it takes.

What a check used is recorded in its report (``Report.hidden``) and printed, so a grade always says whether
hidden tests were part of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

HIDDEN_VAR = "FT_HIDDEN_TESTS"
FILE_NAME = "hidden.json"

_used: list[str] = []   # what the current check took from the hidden tests, in order


class HiddenTestsError(ValueError):
    """The hidden tests' file cannot be used; the message says what to fix."""


def folder() -> Path | None:
    value = os.environ.get(HIDDEN_VAR, "").strip()
    return Path(value).expanduser() if value else None


def load(where: Path | None = None) -> dict:
    """The hidden tests in `where` (default: FT_HIDDEN_TESTS), or {} when no folder is set. A folder that is set
    but unusable is an error, never silently nothing: grading without the tests an instructor meant to add would
    look like grading with them."""
    where = where or folder()
    if where is None:
        return {}
    path = where / FILE_NAME
    if not path.is_file():
        raise HiddenTestsError(f"{HIDDEN_VAR} is {where}, which holds no {FILE_NAME}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise HiddenTestsError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("rungs", {}), dict):
        raise HiddenTestsError(f"{path}: expected an object with \"check_seed\" and/or \"rungs\"")
    return data


def cases(rung: str, name: str, public: list) -> list:
    """The checker's own `public` cases, then the hidden ones of that name for `rung` (none when there are none)."""
    extra = load().get("rungs", {}).get(rung, {}).get(name, [])
    if not isinstance(extra, list):
        raise HiddenTestsError(f"{folder() / FILE_NAME}: rungs.{rung}.{name} must be a list of cases")
    if extra:
        _used.append(f"{len(extra)} more {name}")
    return list(public) + extra


def check_seed(default: int) -> int:
    """FT_CHECK_SEED when set, else the hidden tests' seed, else `default` (the course's public one)."""
    if os.environ.get("FT_CHECK_SEED"):
        return int(os.environ["FT_CHECK_SEED"])
    seed = load().get("check_seed")
    if seed is None:
        return default
    if not isinstance(seed, int):
        raise HiddenTestsError(f"{folder() / FILE_NAME}: check_seed must be a whole number, got {seed!r}")
    if "check seed" not in _used:
        _used.append("check seed")
    return seed


def start() -> None:
    """A new check begins: nothing used yet (several checks may run in one process)."""
    _used.clear()


def used() -> list[str]:
    return list(_used)
