"""What a notebook saved against what the checker measures: metrics files read with care, held-out accuracy
recomputed on the saved model, thresholds, and agreement between the two."""

from __future__ import annotations

from pathlib import Path

from shared.checking import CheckFailed, read_json, require
from shared.numbers import is_fraction


def finite_fraction(value, what: str) -> float:
    """A metric read from a file: must be a finite number in [0, 1]."""
    if not is_fraction(value):
        raise CheckFailed(f"{what} is {value!r}, not a number between 0 and 1")
    return float(value)


# -- what a notebook saved: metrics and a model whose accuracy the checker recomputes ----------------
AGREEMENT = 0.02  # saved figures may differ from a recomputation by this much (batching can flip a tie)


def read_metrics(outputs: Path, keys=("before", "after")) -> dict:
    """metrics.json from a rung's outputs; each of `keys` must map task -> a fraction in [0, 1]."""
    metrics = read_json(outputs / "metrics.json", "metrics")
    for key in keys:
        require(isinstance(metrics.get(key), dict), f"metrics.json has no {key!r} figures")
        for task, value in metrics[key].items():
            finite_fraction(value, f"metrics.json {key}[{task!r}]")
    return metrics


def heldout_accuracies(model, tokenizer, profile) -> dict[str, float]:
    """Held-out accuracy per task, measured here with the course's metric (never read from a file)."""
    from shared.evaluation import evals

    results = evals.evaluate_model(model, tokenizer, split="heldout", limit=profile.eval_limit)
    accuracies = evals.accuracies(results)
    require(all(is_fraction(v) for v in accuracies.values()), f"accuracy is not a number: {accuracies}")
    return accuracies


def measure_model(model, tokenizer, profile) -> dict[str, dict[str, float]]:
    """What the checker measures on a saved model: held-out accuracy, and accuracy on questions made now."""
    return {"heldout": heldout_accuracies(model, tokenizer, profile), "fresh": fresh_accuracies(model, tokenizer)}


FRESH_HINT = ("Train on the train split only: the held-out split is for measuring, and the checker asks new "
              "questions like it to tell a learned skill from memorised answers.")


def check_thresholds(measured: dict[str, float], thresholds: dict[str, float] | float) -> str:
    """Every task at or above its threshold (one number applies to every task)."""
    require(bool(measured), "no accuracy could be measured (see the failure above)")
    if not isinstance(thresholds, dict):
        thresholds = {task: thresholds for task in measured}
    low = {task: value for task, value in measured.items() if value < thresholds.get(task, 0.0)}
    shown = ", ".join(f"{task} {value:.0%}" for task, value in measured.items())
    if low:
        needed = ", ".join(f"{task} {thresholds[task]:.0%}" for task in low)
        raise CheckFailed(f"held-out accuracy {shown}; needed: {needed}")
    return shown


def check_agreement(saved: dict, measured: dict, key: str = "after") -> str:
    """The figures a notebook saved under `key` match what the checker measured on the saved model."""
    require(bool(saved) and bool(measured), "needs both the saved figures and the recomputed ones (see above)")
    figures = saved[key]
    for task, value in measured.items():
        require(task in figures, f"metrics.json {key!r} has no figure for {task}")
        require(abs(figures[task] - value) <= AGREEMENT,
                f"metrics.json says {task} {figures[task]:.1%}, the saved model scores {value:.1%}")
    return f"within {AGREEMENT:.0%}"


# -- questions made at check time ------------------------------------------------------------------
FRESH_PER_TASK = 60   # enough to tell a memorised split (near 100%) from a learned skill, quickly
HELDOUT_GAP = 0.15    # held-out may beat the fresh questions by this much before it looks trained-on
DEFAULT_CHECK_SEED = 2718  # instructors grade with their own FT_CHECK_SEED, which learners never see


def check_seed() -> int:
    """The seed of what a checker draws at check time: FT_CHECK_SEED, else the instructor's hidden tests' seed
    (``shared.checking.hidden``), else the course's public one."""
    from shared.checking import hidden

    return hidden.check_seed(DEFAULT_CHECK_SEED)


def fresh_accuracies(model, tokenizer, seed: int | None = None) -> dict[str, float]:
    """Accuracy per task on held-out questions drawn now (``generator.fresh_heldout``), never saved anywhere."""
    from shared.evaluation import evals
    from shared.world.generator import fresh_heldout

    fresh = fresh_heldout(check_seed() if seed is None else seed, FRESH_PER_TASK)
    return {task: round(evals.evaluate_task(model, tokenizer, task, "heldout", examples=examples).accuracy, 4)
            for task, examples in fresh.items()}


def check_not_trained_on_heldout(heldout: dict[str, float], fresh: dict[str, float]) -> str:
    """The held-out score is not far above the score on questions the notebook could never have seen."""
    require(bool(heldout) and bool(fresh), "needs the held-out and the fresh figures (see above)")
    for task, value in fresh.items():
        require(task in heldout, f"no held-out figure for {task}")
        require(heldout[task] - value <= HELDOUT_GAP,
                f"{task}: {heldout[task]:.0%} on the held-out split but {value:.0%} on {FRESH_PER_TASK} new questions "
                "like it: was the model trained on the held-out split?")
    return ", ".join(f"{task} {value:.0%}" for task, value in fresh.items()) + \
        f" on {FRESH_PER_TASK} new questions per task"


def require_same_embeddings(got, expected) -> None:
    """The learner's sentence embeddings against the course's: an array of the same shape, unit rows, each within
    cosine 0.999 of the course's (the same model, whatever device or batch size computed it)."""
    import numpy as np

    require(isinstance(got, np.ndarray), f"must return a numpy array (one row per text), returned a "
                                         f"{type(got).__name__}: keep encode's own output type")
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    require(got.shape == expected.shape, f"shape {got.shape}, expected {expected.shape} (one 384-number row per text)")
    norms = np.linalg.norm(got, axis=1)
    require(np.allclose(norms, 1.0, atol=1e-3), f"row lengths from {norms.min():.3f} to {norms.max():.3f}: "
                                                "normalise them to unit length (normalize_embeddings=True)")
    agreement = (got * expected).sum(axis=1)
    require(agreement.min() >= 0.999, f"a row's cosine with the course's MiniLM embedding is {agreement.min():.3f}: "
                                      "embed with all-MiniLM-L6-v2 (minilm_path()) and nothing added")
