"""The course's eval harness: one call measures a model on the three task types and the forgetting check, every
figure with the per-example scores behind it; a table gives each figure with its 95% interval; a paired comparison
says which before/after differences are real.

    base = harness.evaluate(model, tokenizer, "base")
    sft = harness.evaluate(sft_model, tokenizer, "SFT")
    harness.table([base, sft])       # one row per model: "96% [93–99]" for every figure
    harness.compare(base, sft)       # per figure: the change, its paired interval, McNemar's p, real or noise

The figures (``FIGURES``), all on held-out data:

* three task types, each with its own metric: closed QA (normalised exact match), extraction (the whole JSON
  object right; also JSON validity and field-level F1), arithmetic (the final number right);
* the forgetting check: recall of the base model's facts ("Mira Olsen lives in" -> her town, every person of the
  world and four facts each, in plain prose) and perplexity on held-out world prose (lower is better). Every
  128-token row counts alike (1.73 for the tiny base; its model card averages batch means and says 1.75).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from shared.evaluation import uncertainty

# figure -> (what it is, higher is better?, right/wrong per example?)
FIGURES = {
    "closed_qa": ("closed QA: exact match", True, True),
    "extraction": ("extraction: whole object right", True, True),
    "extraction_f1": ("extraction: field F1", True, False),
    "json_valid": ("extraction: valid JSON", True, True),
    "arithmetic": ("arithmetic: final number", True, True),
    "fact_recall": ("forgetting: fact recall", True, True),
    "perplexity": ("forgetting: held-out perplexity", False, False),
}
TASK_FIGURES = ("closed_qa", "extraction", "arithmetic")
FORGETTING_FIGURES = ("fact_recall", "perplexity")
# The same three tasks written for lm-evaluation-harness (YAML, scored by the course's metric).
LM_EVAL_TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"


def lm_eval_name(task: str) -> str:
    """What lm-evaluation-harness calls a course task: "closed_qa" -> "course_closed_qa"."""
    return f"course_{task}"


@dataclass
class Report:
    """One model measured: per-example scores for every figure, in the same example order for every model (so
    two reports can be compared pair by pair), and the answers behind the task figures."""
    model: str
    split: str
    scores: dict[str, list[float]]            # figure -> per example (perplexity: per 128-token row, its loss)
    answers: dict = field(default_factory=dict, repr=False)   # task -> evals.TaskResult

    def value(self, figure: str) -> float:
        scores = self.scores[figure]
        mean = sum(scores) / len(scores)
        return math.exp(mean) if figure == "perplexity" else mean

    def interval(self, figure: str) -> tuple[float, float]:
        low, high = uncertainty.bootstrap_interval(self.scores[figure])
        return (math.exp(low), math.exp(high)) if figure == "perplexity" else (low, high)

    def figures(self) -> dict[str, dict]:
        """Every figure with its interval, as plain numbers (what a notebook saves)."""
        figures = {}
        for name in self.scores:
            low, high = self.interval(name)   # one bootstrap a figure
            figures[name] = {"value": round(self.value(name), 4), "low": round(low, 4), "high": round(high, 4),
                             "n": len(self.scores[name])}
        return figures


def evaluate(model, tokenizer, name: str, split: str = "heldout", limit: int | None = None) -> Report:
    """Measure a model: the three tasks on `split` (greedy answers scored by the course metric) and the
    forgetting check. A few seconds per task for the tiny model on a CPU."""
    from shared.evaluation import evals

    answers = {task: evals.evaluate_task(model, tokenizer, task, split, limit) for task in TASK_FIGURES}
    scores = {task: [float(e["correct"]) for e in result.examples] for task, result in answers.items()}
    extraction = evals.score("extraction", [e["prediction"] for e in answers["extraction"].examples],
                             [e["answer"] for e in answers["extraction"].examples])
    scores["extraction_f1"] = [float(f1) for f1 in extraction["field_f1"]]
    scores["json_valid"] = [float(valid) for valid in extraction["json_valid"]]
    scores.update(forgetting_scores(model, tokenizer))
    return Report(name, split, {figure: scores[figure] for figure in FIGURES}, answers)


def forgetting_scores(model, tokenizer) -> dict[str, list[float]]:
    """What a fine-tune may have erased: each (person, fact) of the world recalled or not, and the loss of each
    128-token row of held-out prose (its mean, exponentiated, is the perplexity)."""
    from shared.evaluation.perplexity import cut_into_rows, row_losses, tokenize_documents
    from shared.evaluation.probes import cloze_hits
    from shared.world.data import read_corpus
    from shared.world.generator import build_world

    hits = cloze_hits(model, tokenizer, build_world()["people"])
    rows = cut_into_rows(tokenize_documents(read_corpus("validation"), tokenizer), 128)
    return {"fact_recall": [float(hit) for fact in hits for hit in hits[fact]],
            "perplexity": row_losses(model, rows)}


def _points(fraction: float) -> str:
    """A fraction in whole percentage points, with as many decimals as it takes not to round a near-certainty to
    0 or 100: 499 of 500 right is 99.8, not 100."""
    for decimals in range(3):
        text = f"{fraction * 100:.{decimals}f}"
        if float(text) not in (0.0, 100.0) or fraction in (0.0, 1.0):
            break
    return text


def _percent(value: float) -> str:
    return f"{_points(value)}%"


def shown(report: Report, figure: str) -> str:
    """A figure with its interval: "96% [93–99]", "99.8% [99.4–100]", or "1.81 [1.78–1.84]" for perplexity."""
    low, high = report.interval(figure)
    if figure == "perplexity":
        return f"{report.value(figure):.2f} [{low:.2f}–{high:.2f}]"
    return f"{_percent(report.value(figure))} [{_points(low)}–{_points(high)}]"


def table(reports: list[Report], figures=tuple(FIGURES)):
    """One row per model, one column per figure, each "value [95% interval]"."""
    import pandas as pd

    frame = pd.DataFrame({FIGURES[f][0]: [shown(r, f) for r in reports] for f in figures},
                         index=[r.model for r in reports])
    frame.index.name = "model"
    return frame


def paired_verdict(before: Report, after: Report, figure: str) -> dict:
    """The change in one figure from `before` to `after` on the same examples: the paired bootstrap interval of the
    change, McNemar's exact p for right/wrong figures (else the paired bootstrap's p), and whether it is real."""
    if len(before.scores[figure]) != len(after.scores[figure]):
        raise ValueError(f"{figure}: the two reports were measured on different examples ({before.split} split, "
                         f"{len(before.scores[figure])} and {len(after.scores[figure])} scores); measure both alike")
    _, higher_is_better, right_or_wrong = FIGURES[figure]
    paired = uncertainty.paired_bootstrap(before.scores[figure], after.scores[figure])
    p_value = uncertainty.mcnemar(before.scores[figure], after.scores[figure]) if right_or_wrong \
        else paired["p_value"]
    change = after.value(figure) - before.value(figure)
    real = p_value < uncertainty.SIGNIFICANCE
    better = (change > 0) == higher_is_better
    verdict = "within noise" if not real else ("real gain" if better else "real loss")
    return {"figure": figure, "before": before.value(figure), "after": after.value(figure), "change": change,
            "low": paired["low"], "high": paired["high"], "p_value": p_value, "verdict": verdict}


def compare(before: Report, after: Report, figures=tuple(FIGURES)):
    """Per figure: before, after, the change with its paired 95% interval (for perplexity, of the mean row loss),
    the p-value and the verdict at p < 0.05."""
    import pandas as pd

    rows = []
    for figure in figures:
        verdict = paired_verdict(before, after, figure)
        scale = (lambda v: f"{v:.2f}") if figure == "perplexity" else _percent
        rows.append({"figure": FIGURES[figure][0], before.model: scale(verdict["before"]),
                     after.model: scale(verdict["after"]),
                     "change": f"{verdict['change']:+.2f}" if figure == "perplexity"
                     else f"{verdict['change'] * 100:+.0f} pts",
                     "paired 95% interval": f"[{verdict['low']:+.3f}, {verdict['high']:+.3f}]",
                     "p": f"{verdict['p_value']:.3g}", "verdict": verdict["verdict"]})
    return pd.DataFrame(rows).set_index("figure")
