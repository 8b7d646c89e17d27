"""Loading task data and turning examples into chat messages."""

from __future__ import annotations

import pytest

from shared.world import data
from shared.world.tasks import SPLITS, TASKS


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("split", SPLITS)
def test_load_task_rows_have_the_fields(task, split):
    rows = data.load_task(task, split)
    assert rows
    for row in rows:
        assert {"task", "prompt", "answer", "id"} <= set(row)
        assert row["task"] == task
        assert isinstance(row["prompt"], str) and row["prompt"]
        assert isinstance(row["answer"], str) and row["answer"]
    assert len({row["id"] for row in rows}) == len(rows)


def test_limit_gives_a_deterministic_subset():
    everything = data.load_task("arithmetic", "train")
    first = data.load_task("arithmetic", "train", limit=10)
    assert len(first) == 10
    assert data.load_task("arithmetic", "train", limit=10) == first
    assert [row["id"] for row in first] == sorted(row["id"] for row in first)
    assert all(row in everything for row in first)
    assert data.load_task("arithmetic", "train", limit=10, seed=1) != first  # the seed picks the subset


def test_limit_above_the_size_returns_everything():
    everything = data.load_task("closed_qa", "validation")
    assert data.load_task("closed_qa", "validation", limit=len(everything) + 5) == everything


def test_unknown_task_lists_the_tasks():
    with pytest.raises(ValueError, match="unknown task 'summaries'") as info:
        data.load_task("summaries", "train")
    for task in TASKS:
        assert task in str(info.value)


def test_unknown_split_lists_the_splits():
    with pytest.raises(ValueError, match="unknown split 'test'") as info:
        data.load_task("closed_qa", "test")
    for split in SPLITS:
        assert split in str(info.value)


def test_load_tasks_and_mixed():
    tasks = data.load_tasks("validation", limit=5)
    assert set(tasks) == set(TASKS)
    assert all(len(rows) == 5 for rows in tasks.values())
    rows = data.mixed("validation", limit_per_task=5)
    assert len(rows) == 5 * len(TASKS)
    assert {row["task"] for row in rows} == set(TASKS)
    assert data.mixed("validation", limit_per_task=5) == rows


def test_to_messages_shape():
    example = {"task": "arithmetic", "prompt": "What is 2 plus 3?", "answer": "5", "id": "x"}
    assert data.to_messages(example) == [{"role": "user", "content": "What is 2 plus 3?"},
                                         {"role": "assistant", "content": "5"}]
    assert data.to_messages(example, with_answer=False) == [{"role": "user", "content": "What is 2 plus 3?"}]
