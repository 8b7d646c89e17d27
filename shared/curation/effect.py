"""What curation changes in a model fine-tuned on the data, measured on held-out questions: accuracy on the
three tasks the instruction set teaches, and on the two-step problems -- a task the set never teaches, some of
whose held-out problems it leaked -- the leaked ones apart from the rest. A model that learned the leaks scores
them far above the others: its score on that split is inflated by memory, not skill.

    figures = measure(model, tokenizer, leaked_ids(labelled))
    figures["mean"], figures["two_step_leaked"], figures["two_step_unseen"]
"""

from __future__ import annotations

TASKS = ("closed_qa", "extraction", "arithmetic")   # what the instruction set teaches
LEAK_TASK = "two_step"                              # the benchmark its sources copied


def leaked_ids(labelled: list[dict], task: str = LEAK_TASK) -> set[str]:
    """The held-out examples of `task` that the labelled dirty set holds copies of (a leak's source is the eval
    example's own id)."""
    return {row["source"] for row in labelled if row["flaw"] == "leaked" and row["task"] == task}


def measure(model, tokenizer, leaked: set[str]) -> dict[str, float]:
    """Held-out accuracy per task, their mean, and the two-step split's: all of it, the leaked problems, the rest."""
    from shared.evaluation.evals import evaluate_task

    figures = {task: evaluate_task(model, tokenizer, task).accuracy for task in TASKS}
    figures["mean"] = sum(figures[task] for task in TASKS) / len(TASKS)
    result = evaluate_task(model, tokenizer, LEAK_TASK)
    seen = [row["correct"] for row in result.examples if row["id"] in leaked]
    unseen = [row["correct"] for row in result.examples if row["id"] not in leaked]
    figures[LEAK_TASK] = result.accuracy
    figures["two_step_leaked"] = sum(seen) / len(seen) if seen else 0.0
    figures["two_step_unseen"] = sum(unseen) / len(unseen) if unseen else 0.0
    return figures
