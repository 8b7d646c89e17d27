"""The course's task registry: every kind of data a rung trains or evaluates on, each task named once.

    from shared.world import tasks
    tasks.REGISTRY["closed_qa"]                  # Task(name="closed_qa", kind="answer", ...)
    tasks.tasks_of_kind("preference")            # the preference-pair tasks registered so far
    tasks.register(Task("town_pairs", "town preferences", "preference"))

A task's examples live in ``data/tasks/<name>/<split>.jsonl`` (``shared.world.data.load_task`` reads them).
What a task's examples carry is set by its *kind*, so a new rung adds a task of a known kind and the loaders,
checks and evals already know its shape. ``TASKS``, ``SPLITS`` and ``TASK_TITLES`` are the three tasks rung 02
fine-tunes the base on, read from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

SPLITS = ("train", "validation", "heldout")
DOCUMENTS = "documents"  # a retrieval task's documents, in data/tasks/<name>/documents.jsonl
# What can be wrong with an example of a dirty instruction set (the curation rung finds and removes them).
FLAWS = ("clean", "duplicate", "near_duplicate", "paraphrase", "off_format", "wrong_answer", "leaked")


@dataclass(frozen=True)
class Kind:
    what: str
    fields: MappingProxyType        # field -> type every example carries
    choices: MappingProxyType       # field -> the values it may take


def _kind(what: str, choices: dict | None = None, **fields) -> Kind:
    # Every example has an id: a subset or a check names the example it means.
    return Kind(what, MappingProxyType({"id": str, **fields}), MappingProxyType(choices or {}))


KINDS = MappingProxyType({
    "answer": _kind("a prompt and a reference answer to score a generation against", prompt=str, answer=str),
    "preference": _kind("a prompt, a preferred answer and a worse one (DPO, reward models)",
                        prompt=str, chosen=str, rejected=str),
    "retrieval": _kind("a query and the id of the document that answers it (the documents are their own split)",
                       query=str, document_id=str),
    "dirty_instructions": _kind("an instruction example labelled with what is wrong with it, if anything",
                                {"flaw": FLAWS}, prompt=str, answer=str, flaw=str),
})
DOCUMENT_FIELDS = MappingProxyType({"id": str, "text": str})


@dataclass(frozen=True)
class Task:
    name: str
    title: str                       # how tables and plots name it
    kind: str                        # a key of KINDS
    splits: tuple = SPLITS
    max_new_tokens: int | None = None  # answer tasks: room for the longest reference answer when generating
    new: bool = False                # an answer task rung 02's SFT never saw (a later rung teaches it)

    @property
    def fields(self) -> MappingProxyType:
        return KINDS[self.kind].fields

    def fields_of(self, split: str) -> MappingProxyType:
        return DOCUMENT_FIELDS if split == DOCUMENTS and self.kind == "retrieval" else self.fields


REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add a task to the registry; a duplicate name, an unknown kind or a setting its kind has no use for fails."""
    if task.name in REGISTRY:
        raise ValueError(f"a task named {task.name!r} is already registered ({REGISTRY[task.name]}); "
                         "choose another name")
    if task.kind not in KINDS:
        raise ValueError(f"task {task.name!r} has unknown kind {task.kind!r}; kinds are: {', '.join(KINDS)}")
    if task.kind == "answer" and not (isinstance(task.max_new_tokens, int) and task.max_new_tokens > 0):
        raise ValueError(f"answer task {task.name!r} needs max_new_tokens (how long an answer may be)")
    if task.kind != "answer" and (task.max_new_tokens is not None or task.new):
        raise ValueError(f"max_new_tokens and new are for answer tasks; {task.name!r} is a {task.kind} task")
    if task.kind == "retrieval" and DOCUMENTS not in task.splits:
        raise ValueError(f"retrieval task {task.name!r} needs a {DOCUMENTS!r} split for its queries to point to")
    REGISTRY[task.name] = task
    return task


def get(name: str) -> Task:
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; tasks are: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def tasks_of_kind(kind: str) -> list[Task]:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; kinds are: {', '.join(KINDS)}")
    return [task for task in REGISTRY.values() if task.kind == kind]


def validate_example(task: Task | str, example: dict, split: str | None = None) -> None:
    """Raise ValueError naming the first field of `example` that is missing, of the wrong type or not allowed."""
    task = get(task) if isinstance(task, str) else task
    if not isinstance(example, dict):
        raise ValueError(f"a {task.name} example must be a dict, not {type(example).__name__}")
    for name, kind in task.fields_of(split).items():
        if name not in example:
            raise ValueError(f"{task.name} example is missing field {name!r} (a {task.kind} example has: "
                             f"{', '.join(task.fields_of(split))})")
        if not isinstance(example[name], kind):
            raise ValueError(f"{task.name} example's field {name!r} should be {kind.__name__}, "
                             f"not {type(example[name]).__name__}: {example[name]!r}")
    for name, allowed in KINDS[task.kind].choices.items():
        if split != DOCUMENTS and example[name] not in allowed:
            raise ValueError(f"{task.name} example's {name} {example[name]!r} is not one of: {', '.join(allowed)}")


# The three tasks the tiny world generator writes and rung 02 fine-tunes the base on. Answers are as long as the
# longest reference: a sentence about a person, a JSON object of three short fields, a sum with its working.
for _task in (Task("closed_qa", "closed QA", "answer", max_new_tokens=20),
              Task("extraction", "extraction (JSON)", "answer", max_new_tokens=40),
              Task("arithmetic", "arithmetic", "answer", max_new_tokens=16)):
    register(_task)

# Honest abstention (rungs 06 and 08): asked what the world never records (an age, a sister), "...'s records do not
# say." is preferred to an invented fact; asked a recorded fact, the right one to abstaining or a near miss
# (shared/world/preferences.py).
register(Task("abstention", "honest abstention", "preference"))

# Two-step word problems (rung 07): "7 plus 2 is 9. 9 minus 4 is 5." -- the working of both steps, right only when
# every step is (shared/world/word_problems.py). Rung 02's SFT model writes one step and stops.
register(Task("two_step", "two-step word problems", "answer", max_new_tokens=24, new=True))

TASKS = tuple(t.name for t in tasks_of_kind("answer") if not t.new)
TASK_TITLES = {name: REGISTRY[name].title for name in TASKS}
