"""The capstone's measurements: the learner's own task on its held-out split (scored by the course's metric, the
change tested pair by pair), how much of the held-out split the training data holds, and the results a model card
is written from.

Rung 09's harness measures the three course tasks and the forgetting check (`harness.evaluate`); this module adds
the task the capstone trains for, which may be any task of the registry (`shared.world.tasks`).
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.evaluation import harness, uncertainty


def normalised(text: str) -> str:
    return " ".join(str(text).lower().split())


def overlap(train: list[dict], heldout: list[dict]) -> int:
    """How many held-out examples the training data holds: the same id, or the same prompt once case and spacing
    are set aside. Anything above 0 makes the held-out figure a memory test."""
    ids = {example.get("id") for example in train}
    prompts = {normalised(example["prompt"]) for example in train}
    return sum(1 for example in heldout if example.get("id") in ids or normalised(example["prompt"]) in prompts)


def target_scores(model, tokenizer, task: str, examples: list[dict]) -> list[float]:
    """Right (1.0) or wrong (0.0) for each example of the capstone's task, by the course's metric for it."""
    from shared.evaluation import evals

    return [float(e["correct"]) for e in evals.evaluate_task(model, tokenizer, task, "heldout",
                                                             examples=examples).examples]


def target_change(before: list[float], after: list[float]) -> dict:
    """The task's accuracy before and after, the paired 95% interval of the change, McNemar's p and the verdict --
    the same test rung 09's harness applies to its figures."""
    paired = uncertainty.paired_bootstrap(before, after)
    p_value = uncertainty.mcnemar(before, after)
    change = sum(after) / len(after) - sum(before) / len(before)
    real = p_value < uncertainty.SIGNIFICANCE
    return {"before": round(sum(before) / len(before), 4), "after": round(sum(after) / len(after), 4),
            "change": round(change, 4), "low": round(paired["low"], 4), "high": round(paired["high"], 4),
            "p_value": p_value, "n": len(after),
            "verdict": "within noise" if not real else ("real gain" if change > 0 else "real loss")}


def comparison(before: harness.Report, after: harness.Report) -> dict[str, dict]:
    """Every figure of rung 09's harness, before and after, with its paired verdict (rounded, as saved)."""
    rows = {}
    for figure in harness.FIGURES:
        verdict = harness.paired_verdict(before, after, figure)
        rows[figure] = {key: (round(value, 4) if isinstance(value, float) else value)
                        for key, value in verdict.items() if key != "figure"}
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
