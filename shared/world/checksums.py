"""sha256 checksums of the files under data/, so a corrupt or hand-edited file is caught by name."""

from __future__ import annotations

import hashlib
from pathlib import Path

MANIFEST = "checksums.sha256"


class DataIntegrityError(RuntimeError):
    pass


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tracked_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


def update(data_dir: Path) -> Path:
    """Rewrite the manifest from the files now on disk."""
    lines = [f"{sha256(p)}  {p.relative_to(data_dir).as_posix()}" for p in _tracked_files(data_dir)]
    manifest = data_dir / MANIFEST
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def read_manifest(data_dir: Path) -> dict[str, str]:
    manifest = data_dir / MANIFEST
    if not manifest.exists():
        raise DataIntegrityError(f"{manifest} is missing. Restore it with `git checkout -- data/` "
                                 "or rebuild the data with `make data`.")
    entries = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            entries[name] = digest
    return entries


def problems(data_dir: Path, only: str | None = None) -> list[str]:
    """Files that are missing or differ from the manifest, as readable lines (empty list: all good).

    `only`: a sub-folder (e.g. "tiny-base") to limit the check to.
    """
    found = []
    for name, digest in read_manifest(data_dir).items():
        if only and not name.startswith(only.rstrip("/") + "/"):
            continue
        path = data_dir / name
        if not path.exists():
            found.append(f"data/{name} is missing")
        elif sha256(path) != digest:
            found.append(f"data/{name} differs from its checksum (corrupt or edited)")
    return found


def verify(data_dir: Path, only: str | None = None) -> None:
    """Raise DataIntegrityError naming every bad file; do nothing when all match."""
    bad = problems(data_dir, only)
    if bad:
        raise DataIntegrityError("; ".join(bad) + ". Restore the files with `git checkout -- data/` "
                                 "(or rebuild them: `make data`, `make base-model`).")
