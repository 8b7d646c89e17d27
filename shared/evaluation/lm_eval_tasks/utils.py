"""The course's tasks for lm-evaluation-harness: their held-out examples, read from the course's data files (no
download), and the score of each answer by the course's own metric, so both harnesses judge alike.

    from lm_eval.tasks import TaskManager
    TaskManager(include_path="shared/evaluation/lm_eval_tasks")   # adds course_closed_qa, course_extraction, ...
    TaskManager(include_path="shared/evaluation/lm_eval_tasks", include_defaults=False)   # only the course's
"""

from datasets import Dataset, DatasetDict

from shared.evaluation.evals import score
from shared.world.data import load_task


def _heldout(task: str) -> DatasetDict:
    rows = [{"id": e["id"], "task": task, "prompt": e["prompt"], "answer": e["answer"]}
            for e in load_task(task, "heldout")]
    return DatasetDict({"heldout": Dataset.from_list(rows)})


def closed_qa(**metadata) -> DatasetDict:
    return _heldout("closed_qa")


def extraction(**metadata) -> DatasetDict:
    return _heldout("extraction")


def arithmetic(**metadata) -> DatasetDict:
    return _heldout("arithmetic")


def process_results(doc: dict, results: list[str]) -> dict:
    """One answer's score: 1 when the course's metric counts it right (surrounding spaces stripped, as the
    course's harness strips them), else 0."""
    return {"acc": score(doc["task"], [results[0].strip()], [doc["answer"]])["correct"][0]}
