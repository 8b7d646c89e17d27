"""Checksums of data/: a corrupt, edited or missing file is caught by name."""

from __future__ import annotations

import shutil

import pytest

from shared.world import checksums
from shared.paths import DATA_DIR


@pytest.fixture
def data_copy(tmp_path):
    """A small copy of data/ (the task files and world.json) with a fresh manifest."""
    root = tmp_path / "data"
    shutil.copytree(DATA_DIR / "tasks", root / "tasks")
    (root / "world").mkdir()
    shutil.copy(DATA_DIR / "world" / "world.json", root / "world" / "world.json")
    checksums.update(root)
    return root


def test_update_then_no_problems(data_copy):
    assert checksums.problems(data_copy) == []
    checksums.verify(data_copy)  # does not raise
    manifest = checksums.read_manifest(data_copy)
    assert "world/world.json" in manifest
    assert "tasks/closed_qa/train.jsonl" in manifest
    assert checksums.MANIFEST not in manifest  # the manifest does not list itself


def test_corrupt_file_is_named(data_copy):
    path = data_copy / "tasks" / "arithmetic" / "train.jsonl"
    path.write_bytes(path.read_bytes() + b"\n")
    assert checksums.problems(data_copy) == [
        "data/tasks/arithmetic/train.jsonl differs from its checksum (corrupt or edited)"]
    with pytest.raises(checksums.DataIntegrityError, match=r"tasks/arithmetic/train\.jsonl") as info:
        checksums.verify(data_copy)
    assert "git checkout" in str(info.value)  # and says how to restore it


def test_missing_file_is_named(data_copy):
    (data_copy / "world" / "world.json").unlink()
    with pytest.raises(checksums.DataIntegrityError, match=r"data/world/world\.json is missing"):
        checksums.verify(data_copy)


def test_missing_manifest_gives_a_clear_message(data_copy):
    (data_copy / checksums.MANIFEST).unlink()
    with pytest.raises(checksums.DataIntegrityError, match="checksums.sha256 is missing") as info:
        checksums.problems(data_copy)
    assert "make data" in str(info.value)


def test_only_limits_the_scope(data_copy):
    (data_copy / "world" / "world.json").write_text("{}\n", encoding="utf-8")
    assert checksums.problems(data_copy, only="tasks") == []
    assert checksums.problems(data_copy, only="tasks/") == []
    checksums.verify(data_copy, only="tasks")  # does not raise
    assert len(checksums.problems(data_copy, only="world")) == 1
    assert len(checksums.problems(data_copy)) == 1


def test_only_matches_whole_folder_names(data_copy):
    """only="task" must not match "tasks/..." (a prefix of a folder name is not the folder)."""
    (data_copy / "tasks" / "closed_qa" / "heldout.jsonl").write_text("", encoding="utf-8")
    assert checksums.problems(data_copy, only="task") == []
    assert checksums.problems(data_copy, only="tasks/closed_qa") != []


def test_sha256_matches_hashlib(tmp_path):
    import hashlib

    path = tmp_path / "f.bin"
    path.write_bytes(b"tiny world" * 1000)
    assert checksums.sha256(path) == hashlib.sha256(b"tiny world" * 1000).hexdigest()


def test_committed_data_matches_its_manifest():
    assert checksums.problems(DATA_DIR) == []
