"""The task registry: the three base tasks come from it, new kinds register and load, bad examples are named."""

from __future__ import annotations

import json

import pytest

from shared.world import checksums, data, tasks
from shared.world.tasks import Task

NEW_TASKS = {  # one task of each kind a coming rung needs, with one good example per split
    "preference": (Task("town_pairs", "town preferences", "preference"),
                   {"id": "p-0", "prompt": "Where does Mira live?", "chosen": "Mira lives in Fenwick.",
                    "rejected": "Mira lives in Quillby."}),
    "retrieval": (Task("town_search", "town search", "retrieval", splits=("documents", "train")),
                  {"id": "q-0", "query": "Who keeps a newt?", "document_id": "d-0"}),
    "dirty_instructions": (Task("dirty_sums", "dirty sums", "dirty_instructions"),
                           {"id": "s-0", "prompt": "What is 2 plus 2?", "answer": "2 plus 2 is 5.",
                            "flaw": "wrong_answer"}),
    "answer": (Task("pet_qa", "pet QA", "answer", max_new_tokens=12, new=True),
               {"id": "a-0", "prompt": "What pet does Mira have?", "answer": "Mira has a pet newt."}),
}
DOCUMENT = {"id": "d-0", "text": "Mira Olsen keeps a newt."}


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry that a test may add to; the real one is put back afterwards."""
    monkeypatch.setattr(tasks, "REGISTRY", dict(tasks.REGISTRY))
    return tasks.REGISTRY


@pytest.fixture
def data_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    return tmp_path


def write_task(data_dir, name: str, rows_by_split: dict) -> None:
    for split, rows in rows_by_split.items():
        path = data_dir / "tasks" / name / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    checksums.update(data_dir)


def test_the_three_base_tasks_come_from_the_registry():
    assert tasks.TASKS == ("closed_qa", "extraction", "arithmetic")
    assert tasks.TASK_TITLES == {name: tasks.REGISTRY[name].title for name in tasks.TASKS}
    for name in tasks.TASKS:
        task = tasks.REGISTRY[name]
        assert task.kind == "answer" and task.splits == tasks.SPLITS and not task.new
        assert task.max_new_tokens > 0
        assert set(task.fields) == {"id", "prompt", "answer"}


def test_register_refuses_a_duplicate_name(registry):
    with pytest.raises(ValueError, match="'closed_qa' is already registered"):
        tasks.register(Task("closed_qa", "again", "answer", max_new_tokens=5))


def test_register_refuses_an_unknown_kind_and_lists_the_kinds(registry):
    with pytest.raises(ValueError, match="unknown kind 'essay'") as info:
        tasks.register(Task("essays", "essays", "essay"))
    assert all(kind in str(info.value) for kind in tasks.KINDS)
    assert "essays" not in registry


@pytest.mark.parametrize("task, problem", [
    (Task("no_length", "x", "answer"), "needs max_new_tokens"),
    (Task("long_pairs", "x", "preference", max_new_tokens=5), "are for answer tasks"),
    (Task("no_documents", "x", "retrieval"), "needs a 'documents' split"),
])
def test_register_refuses_settings_a_kind_cannot_use(registry, task, problem):
    with pytest.raises(ValueError, match=problem):
        tasks.register(task)


def test_tasks_of_kind(registry):
    assert [t.name for t in tasks.tasks_of_kind("answer")] == [*tasks.TASKS, "two_step"]  # rung 07's is new
    assert [t.name for t in tasks.tasks_of_kind("preference")] == ["abstention"]
    pairs = tasks.register(NEW_TASKS["preference"][0])
    assert tasks.tasks_of_kind("preference") == [tasks.get("abstention"), pairs]
    with pytest.raises(ValueError, match="unknown kind 'pairs'"):
        tasks.tasks_of_kind("pairs")


def test_a_new_answer_task_is_not_one_of_the_base_three(registry):
    task = tasks.register(NEW_TASKS["answer"][0])
    assert task in tasks.tasks_of_kind("answer")
    assert task.name not in tasks.TASKS          # rung 02's mix and the base evals stay the three tasks


@pytest.mark.parametrize("kind", NEW_TASKS)
def test_validate_example_accepts_each_kind_and_names_a_missing_field(kind):
    task, example = NEW_TASKS[kind]
    tasks.validate_example(task, example)
    for field in task.fields:
        broken = {k: v for k, v in example.items() if k != field}
        with pytest.raises(ValueError, match=f"missing field '{field}'"):
            tasks.validate_example(task, broken)


def test_validate_example_names_a_field_of_the_wrong_type():
    with pytest.raises(ValueError, match="field 'answer' should be str, not int"):
        tasks.validate_example("arithmetic", {"id": "x", "prompt": "What is 2 plus 3?", "answer": 5})


def test_validate_example_knows_the_flaws():
    task, example = NEW_TASKS["dirty_instructions"]
    for flaw in tasks.FLAWS:
        tasks.validate_example(task, {**example, "flaw": flaw})
    with pytest.raises(ValueError, match="flaw 'typo' is not one of: clean, duplicate"):
        tasks.validate_example(task, {**example, "flaw": "typo"})


def test_validate_example_checks_documents_by_their_own_fields():
    task, _ = NEW_TASKS["retrieval"]
    tasks.validate_example(task, DOCUMENT, split="documents")
    with pytest.raises(ValueError, match="missing field 'text'"):
        tasks.validate_example(task, {"id": "d-1"}, split="documents")


@pytest.mark.parametrize("kind", NEW_TASKS)
def test_load_task_reads_any_registered_task(registry, data_dir, kind):
    task, example = NEW_TASKS[kind]
    tasks.register(task)
    rows = {split: [{**example, "id": f"{example['id']}-{split}"}] for split in task.splits}
    if kind == "retrieval":
        rows["documents"] = [DOCUMENT]
    write_task(data_dir, task.name, rows)
    for split in task.splits:
        assert data.load_task(task.name, split) == rows[split]


def test_load_task_names_the_line_of_a_bad_row(registry, data_dir):
    task, example = NEW_TASKS["preference"]
    tasks.register(task)
    write_task(data_dir, task.name, {"train": [example, {**example, "chosen": None}]})
    with pytest.raises(ValueError, match=r"train.jsonl, line 2: .*'chosen' should be str, not NoneType"):
        data.load_task(task.name, "train")


def test_load_task_says_which_file_is_missing(registry, data_dir):
    task, example = NEW_TASKS["preference"]
    tasks.register(task)
    write_task(data_dir, task.name, {"train": [example]})
    with pytest.raises(FileNotFoundError, match="town_pairs is registered but has no validation data"):
        data.load_task(task.name, "validation")
    with pytest.raises(ValueError, match="unknown split 'documents' of town_pairs"):
        data.load_task(task.name, "documents")


def test_load_task_still_checks_the_checksums(registry, data_dir):
    task, example = NEW_TASKS["preference"]
    tasks.register(task)
    write_task(data_dir, task.name, {"train": [example]})
    (data_dir / "tasks" / task.name / "train.jsonl").write_text(json.dumps({**example, "chosen": "edited"}) + "\n")
    with pytest.raises(checksums.DataIntegrityError, match="town_pairs/train.jsonl differs from its checksum"):
        data.load_task(task.name, "train")
