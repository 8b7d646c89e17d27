"""The eval core: task -> predictions -> metric -> before/after table and plot.

    before = evaluate_model(model, tokenizer, split="heldout")
    ... fine-tune ...
    after = evaluate_model(model, tokenizer, split="heldout")
    compare(before=before, after=after)        # a table: one row per task
    plots.before_after({"base": before, "SFT": after})

Scores come from the local ``evaluate`` metric in shared/evaluation/metrics/task_accuracy, loaded by path.
Every example of a result keeps its own score (``correct``, 1 or 0), and ``task_reward`` gives the same scores
to TRL's GRPOTrainer as a reward function:

    GRPOTrainer(..., reward_funcs=evals.task_reward, train_dataset=...)   # rows with task and answer columns
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from shared.evaluation.generation import generate
from shared.paths import METRICS_DIR
from shared.world.data import load_task
from shared.world.tasks import REGISTRY, TASKS, tasks_of_kind

# Room for the longest reference answer of each answer task (the registry's max_new_tokens): a sentence about a
# person, a JSON object of three short fields, a sum with its working, two sums.
MAX_NEW_TOKENS = {task.name: task.max_new_tokens for task in tasks_of_kind("answer")}


@lru_cache(maxsize=None)
def task_metric(task: str):
    import evaluate

    return evaluate.load(str(METRICS_DIR / "task_accuracy"), config_name=task)


def score(task: str, predictions: list[str], references: list[str]) -> dict:
    """The metric's verdict: ``accuracy`` (the share right) and ``correct`` (1 or 0 for each prediction)."""
    return task_metric(task).compute(predictions=predictions, references=references)


def accuracy(task: str, predictions: list[str], references: list[str]) -> float:
    return score(task, predictions, references)["accuracy"]


def task_reward(prompts, completions, task, answer, **kwargs) -> list[float]:
    """A reward function for TRL's GRPOTrainer: 1.0 for each completion the course metric counts right against
    its row's reference answer, else 0.0.

    TRL calls it with the prompts, the sampled completions and every other dataset column as a keyword list,
    here ``task`` and ``answer`` (a task example's own fields). A completion is a string, or in conversational
    data one assistant message, ``[{"role": "assistant", "content": ...}]``.
    """
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    rewards = [0.0] * len(texts)
    for name in set(task):  # the metric is configured per task: one call per task in the batch
        rows = [i for i, t in enumerate(task) if t == name]
        # stripped, as generate() strips the answers evaluate_task scores: a reward and an eval agree
        verdict = score(name, [texts[i].strip() for i in rows], [answer[i] for i in rows])
        for i, correct in zip(rows, verdict["correct"]):
            rewards[i] = float(correct)
    return rewards


@dataclass
class TaskResult:
    task: str
    split: str
    accuracy: float
    examples: list[dict] = field(repr=False)  # each: id, prompt, answer, prediction, correct (1 or 0)

    @property
    def n(self) -> int:
        return len(self.examples)


def evaluate_task(model, tokenizer, task: str, split: str = "heldout", limit: int | None = None,
                  examples: list[dict] | None = None) -> TaskResult:
    examples = examples if examples is not None else load_task(task, split, limit)
    predictions = generate(model, tokenizer, [e["prompt"] for e in examples],
                           max_new_tokens=MAX_NEW_TOKENS[task], desc=f"{task} ({split})")
    verdict = score(task, predictions, [e["answer"] for e in examples])
    scored = [{"id": e["id"], "prompt": e["prompt"], "answer": e["answer"], "prediction": p, "correct": c}
              for e, p, c in zip(examples, predictions, verdict["correct"])]
    return TaskResult(task, split, verdict["accuracy"], scored)


def evaluate_model(model, tokenizer, split: str = "heldout", tasks=TASKS, limit: int | None = None
                   ) -> dict[str, TaskResult]:
    return {task: evaluate_task(model, tokenizer, task, split, limit) for task in tasks}


def accuracies(results: dict[str, TaskResult]) -> dict[str, float]:
    return {task: round(result.accuracy, 4) for task, result in results.items()}


def compare(**runs: dict[str, TaskResult]):
    """A table of accuracy per task (rows) for each named run (columns), e.g. compare(base=..., sft=...)."""
    import pandas as pd

    table = pd.DataFrame({name: {REGISTRY[t].title: r.accuracy for t, r in results.items()}
                          for name, results in runs.items()})
    table.index.name = "task"
    return table


def side_by_side(before: TaskResult, after: TaskResult, n: int = 3):
    """The first n examples of a task with both runs' answers, to read what changed."""
    import pandas as pd

    rows = [{"prompt": b["prompt"], "reference": b["answer"], "before": b["prediction"], "after": a["prediction"]}
            for b, a in zip(before.examples[:n], after.examples[:n])]
    return pd.DataFrame(rows)


def is_valid_accuracy(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and 0.0 <= value <= 1.0
