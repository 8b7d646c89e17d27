"""Task data: loading the tiny-world tasks and turning examples into chat messages.

Every example is a dict with ``task``, ``prompt`` (what the user asks), ``answer`` (the reference) and ``id``.
The files are checked against ``data/checksums.sha256`` on first load, so a corrupt file is named, not
silently used.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache

from shared.world import checksums
from shared.paths import DATA_DIR
from shared.world.tasks import SPLITS, TASKS

@lru_cache(maxsize=1)
def _verified() -> bool:
    checksums.verify(DATA_DIR, only="tasks")
    return True


def load_task(task: str, split: str, limit: int | None = None, seed: int = 0) -> list[dict]:
    """Examples of one task and split. ``limit`` keeps a seeded random subset (same subset every run)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks are: {', '.join(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits are: {', '.join(SPLITS)}")
    _verified()
    path = DATA_DIR / "tasks" / task / f"{split}.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
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
