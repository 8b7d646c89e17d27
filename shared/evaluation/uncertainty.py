"""How sure a figure is: bootstrap intervals for one model's score, and paired tests for before/after.

A held-out task of 100 questions scored 0.62 could as well have been 0.55 or 0.70 with another 100 questions like
them; two models scored on the *same* 100 questions differ less by chance than two independent samples would,
because most questions are easy or hard for both. So:

    bootstrap_interval(scores)                  # (low, high): 95% percentile bootstrap interval of the mean
    paired_bootstrap(before, after)             # the difference after - before, its interval, and a p-value
    mcnemar(before, after)                      # exact McNemar test on right/wrong pairs: a p-value

Scores are per-example lists (1/0 for right/wrong, or any number, e.g. a field F1), in the same example order for
both runs of a paired test. Every function here is deterministic for its seed.
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000  # percentile endpoints then move by about a point between seeds at n = 100: well under the width
SIGNIFICANCE = 0.05


def _scores(values, what: str) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what} must be a non-empty list of per-example scores, got {array.size} values")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds a score that is not a finite number")
    return array


def _paired(before, after) -> tuple[np.ndarray, np.ndarray]:
    before, after = _scores(before, "before"), _scores(after, "after")
    if before.shape != after.shape:
        raise ValueError(f"a paired test needs both runs scored on the same examples: {before.size} scores before, "
                         f"{after.size} after")
    return before, after


def bootstrap_interval(scores, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean score: resample the examples with replacement, take each
    resample's mean, and keep the middle `confidence` share of those means."""
    scores = _scores(scores, "scores")
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, scores.size, size=(resamples, scores.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def paired_bootstrap(before, after, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                     seed: int = 0) -> dict:
    """The difference of means (after - before) with a bootstrap interval that resamples *examples*, each keeping
    both of its scores, and a two-sided p-value: twice the share of resampled differences on the far side of 0
    (at least 1 / resamples, the smallest share the resamples can show)."""
    before, after = _paired(before, after)
    differences = after - before
    rng = np.random.default_rng(seed)
    resampled = differences[rng.integers(0, differences.size, size=(resamples, differences.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(resampled, [tail, 1 - tail])
    observed = float(differences.mean())
    if observed == 0 or not differences.any():
        p_value = 1.0
    else:
        beyond = np.mean(resampled <= 0) if observed > 0 else np.mean(resampled >= 0)
        # No resample on the far side says only that p is below what `resamples` draws can show: 1 / resamples.
        p_value = float(min(1.0, max(2 * beyond, 1 / resamples)))
    return {"difference": observed, "low": float(low), "high": float(high), "p_value": p_value}


def discordant_pairs(before, after) -> tuple[int, int]:
    """(lost, gained): examples right before and wrong after, and wrong before and right after."""
    before, after = _paired(before, after)
    if not np.isin(before, (0, 1)).all() or not np.isin(after, (0, 1)).all():
        raise ValueError("McNemar's test counts right/wrong pairs: every score must be 1 or 0")
    return int(((before == 1) & (after == 0)).sum()), int(((before == 0) & (after == 1)).sum())


def mcnemar(before, after) -> float:
    """Exact McNemar test: only the examples whose verdict changed count. Under "no real difference" each of the
    n changed examples is as likely gained as lost, so the smaller count is Binomial(n, 1/2); the two-sided p-value
    is twice its lower tail (at most 1). No changed example: p = 1."""
    lost, gained = discordant_pairs(before, after)
    n = lost + gained
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(lost, gained) + 1)) / 2 ** n
    return min(1.0, 2 * tail)
