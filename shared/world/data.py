"""Task data: loading the tasks of the registry (``shared.world.tasks``) and turning examples into chat messages.

An example of the three answer tasks is a dict with ``task``, ``prompt`` (what the user asks), ``answer`` (the
reference) and ``id``; other kinds carry the fields their kind names (``tasks.KINDS``). Any registered task loads
from ``data/tasks/<name>/<split>.jsonl``, each row checked against its kind, so a malformed row is named by line.
The files are checked against ``data/checksums.sha256`` on first load, so a corrupt file is named, not
silently used.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache

from shared.world import checksums, tasks
from shared.paths import DATA_DIR
from shared.world.tasks import TASKS


@lru_cache(maxsize=None)
def _verified(data_dir) -> bool:
    checksums.verify(data_dir, only="tasks")
    return True


def split_path(task: str, split: str) -> Path:
    """The file that holds one task's split (``data/tasks/<task>/<split>.jsonl``)."""
    return DATA_DIR / "tasks" / task / f"{split}.jsonl"


def load_task(task: str, split: str, limit: int | None = None, seed: int = 0) -> list[dict]:
    """Examples of one task and split. ``limit`` keeps a seeded random subset (same subset every run)."""
    spec = tasks.get(task)
    if split not in spec.splits:
        raise ValueError(f"unknown split {split!r} of {task}; splits are: {', '.join(spec.splits)}")
    _verified(DATA_DIR)  # read at call time: tests point DATA_DIR at a folder of their own
    path = split_path(task, split)
    if not path.exists():
        raise FileNotFoundError(f"{task} is registered but has no {split} data: {path} is missing")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            try:
                tasks.validate_example(spec, row, split)
            except ValueError as problem:
                raise ValueError(f"{path}, line {number}: {problem}") from None
            rows.append(row)
    if limit is not None and limit < len(rows):
        rows = sorted(random.Random(seed).sample(rows, limit), key=lambda r: r["id"])
    return rows


def load_tasks(split: str, limit: int | None = None, tasks=TASKS) -> dict[str, list[dict]]:
    return {task: load_task(task, split, limit) for task in tasks}


def mixed(split: str, limit_per_task: int | None = None, seed: int = 0, tasks=TASKS) -> list[dict]:
    """All tasks of a split in one shuffled list (what a multi-task fine-tune trains on)."""
    rows = [row for task in tasks for row in load_task(task, split, limit_per_task, seed)]
    random.Random(seed).shuffle(rows)
    return rows


def to_messages(example: dict, with_answer: bool = True) -> list[dict]:
    """The chat form of an example: a user turn, and (for training) the assistant's reference answer."""
    messages = [{"role": "user", "content": example["prompt"]}]
    if with_answer:
        messages.append({"role": "assistant", "content": example["answer"]})
    return messages


def read_corpus(split: str) -> list[str]:
    """The tiny world's pretraining corpus ("train") or its held-out prose ("validation"), one text a document."""
    path = DATA_DIR / "world" / f"corpus.{split}.jsonl"
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
