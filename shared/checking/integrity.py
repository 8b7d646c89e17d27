"""Did the notebook change the course itself? A fingerprint of every file under ``data/`` and ``shared/``
taken before a run and compared after it.

A notebook runs with the learner's permissions, so it *could* rewrite the task data, the tiny base model, a
checker's helper or the checksum manifest that guards them. The checker keeps the fingerprint in its own
memory (never in a file the notebook could reach) and reports every file added, removed or changed.
"""

from __future__ import annotations

from pathlib import Path

from shared.paths import DATA_DIR, REPO_ROOT
from shared.world.checksums import sha256 as _digest

GUARDED = (DATA_DIR, REPO_ROOT / "shared")
IGNORED_PARTS = {"__pycache__", ".ipynb_checkpoints"}  # written by Python and Jupyter themselves


def _files(root: Path):
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not IGNORED_PARTS & set(path.parts) and path.suffix != ".pyc":
            yield path


def fingerprint(roots=GUARDED) -> dict[str, str]:
    """sha256 of every guarded file, by its path relative to the repository."""
    return {_name(path): _digest(path) for root in roots for path in _files(Path(root))}


def _name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:  # outside the repository (a learner's outputs folder): its own path
        return str(path)


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What differs, one phrase per file: 'data/x.jsonl changed', 'shared/y.py added', ..."""
    found = [f"{path} changed" for path in sorted(before.keys() & after.keys()) if before[path] != after[path]]
    found += [f"{path} added" for path in sorted(after.keys() - before.keys())]
    found += [f"{path} removed" for path in sorted(before.keys() - after.keys())]
    return found


def content_key(roots) -> tuple:
    """What the files under `roots` hold, wherever they are: (name within its root, sha256) for each file.
    Two copies of the same folder give the same key; a changed byte gives another."""
    key = []
    for root in map(Path, roots):
        base = root if root.is_dir() else root.parent
        key.append(tuple((str(path.relative_to(base)), _digest(path)) for path in _files(root)))
    return tuple(key)
