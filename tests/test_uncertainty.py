"""The eval harness's statistics and contamination check, against independent references (scipy's exact binomial
test, the normal approximation where it holds) and on the properties a learner is told they have."""

import math

import numpy as np
import pytest

from shared.evaluation import contamination, uncertainty
from shared.evaluation.harness import FIGURES, Report, compare, paired_verdict, shown


def test_bootstrap_interval_is_deterministic_and_holds_the_mean():
    scores = [1] * 73 + [0] * 27
    low, high = uncertainty.bootstrap_interval(scores)
    assert (low, high) == uncertainty.bootstrap_interval(scores)
    assert low < 0.73 < high
    # For 100 binary scores the bootstrap and the normal approximation agree to about a point.
    half_width = 1.96 * math.sqrt(0.73 * 0.27 / 100)
    assert abs(low - (0.73 - half_width)) < 0.02 and abs(high - (0.73 + half_width)) < 0.02


def test_bootstrap_interval_narrows_with_more_questions_and_less_confidence():
    def width(n, confidence=0.95):
        low, high = uncertainty.bootstrap_interval([1] * (4 * n // 5) + [0] * (n - 4 * n // 5), confidence)
        return high - low

    assert width(400) < width(100) / 1.6           # about 1 / sqrt(n): a quarter of the questions, twice the width
    assert width(100, 0.5) < width(100) / 2
    assert uncertainty.bootstrap_interval([0.5] * 9) == (0.5, 0.5)


def test_bootstrap_interval_of_a_skewed_score_stays_in_range():
    low, high = uncertainty.bootstrap_interval([1] * 3 + [0] * 57)
    assert low >= 0.0 and high <= 1.0 and low < 0.05 < high


@pytest.mark.parametrize("bad", [[], [1, float("nan")], [[1, 0], [0, 1]]])
def test_scores_that_are_not_a_list_of_numbers_are_refused(bad):
    with pytest.raises(ValueError, match="scores"):
        uncertainty.bootstrap_interval(bad)


def test_mcnemar_is_scipys_exact_binomial_test():
    from scipy.stats import binomtest

    rng = np.random.default_rng(1)
    for n, flip in ((50, 0.1), (180, 0.03), (400, 0.3), (30, 0.5)):
        before = (rng.random(n) < 0.6).astype(int)
        after = np.where(rng.random(n) < flip, 1 - before, before)
        lost, gained = uncertainty.discordant_pairs(before, after)
        expected = binomtest(min(lost, gained), lost + gained, 0.5).pvalue if lost + gained else 1.0
        assert uncertainty.mcnemar(before, after) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_cases_a_learner_can_work_by_hand():
    assert uncertainty.mcnemar([1, 0, 1], [1, 0, 1]) == 1.0
    assert uncertainty.mcnemar([1] * 10, [0] * 10) == pytest.approx(2 / 2 ** 10)
    assert uncertainty.mcnemar([0, 0, 0, 1], [1, 1, 1, 0]) == pytest.approx(2 * (1 + 4) / 16)  # 3 gained, 1 lost
    with pytest.raises(ValueError, match="same examples"):
        uncertainty.mcnemar([1, 0], [1])
    with pytest.raises(ValueError, match="1 or 0"):
        uncertainty.mcnemar([0.5, 1], [1, 1])


def test_paired_bootstrap_sees_a_consistent_gain_and_not_a_mixed_one():
    consistent = uncertainty.paired_bootstrap([0] * 8 + [1] * 92, [1] * 8 + [1] * 92)
    mixed = uncertainty.paired_bootstrap([1] * 10 + [0] * 13 + [1] * 77, [0] * 10 + [1] * 13 + [1] * 77)
    assert consistent["difference"] == pytest.approx(0.08) and consistent["p_value"] < 0.05 and consistent["low"] > 0
    assert mixed["difference"] == pytest.approx(0.03) and mixed["p_value"] > 0.3 and mixed["low"] < 0 < mixed["high"]
    assert uncertainty.paired_bootstrap([1, 0, 1], [1, 0, 1])["p_value"] == 1.0


def test_coverage_finds_a_leak_and_not_a_template():
    train = ["Where does Mira Olsen live? Mira Olsen lives in Fenwick, by the river Tarn, with her owl."]
    leaked = "where does mira olsen live?  MIRA OLSEN lives in fenwick, by the river tarn, with her owl"
    template_only = "Where does Tomas Berg live? Tomas Berg lives in Harrowgate, by the river Tarn, with his owl."
    shares = contamination.coverage([leaked, template_only, "too short", ""], train, n=13)
    assert shares[0] == 1.0
    assert shares[1] == 0.0 and shares[2] == 0.0 and shares[3] == 0.0
    assert contamination.coverage([template_only], train, n=4)[0] == pytest.approx(5 / 17)  # "by the river tarn with"


def test_short_examples_need_a_shorter_ngram_to_be_seen_at_all():
    from shared.world import data

    train = [contamination.example_text(e) for e in data.load_task("closed_qa", "train")]
    heldout = [contamination.example_text(e) for e in data.load_task("closed_qa", "heldout")]
    with_leak = train + heldout[:5]
    n = contamination.ngram_size(heldout)
    assert n < contamination.NGRAM                               # closed-QA examples are about 10 words long
    assert max(contamination.coverage(heldout, train, n)) == 0.0   # clean at that n ...
    leaked = contamination.coverage(heldout, with_leak, n)
    assert sum(share >= contamination.DIRTY for share in leaked) == 5  # ... and every leaked one found
    blind = contamination.coverage(heldout, with_leak, contamination.NGRAM)
    assert sum(share >= contamination.DIRTY for share in blind) < 5    # 13 words: the short ones slip through


def _reports(before_scores, after_scores):
    return Report("before", "heldout", before_scores), Report("after", "heldout", after_scores)


def _all_figures(scores):
    return {figure: list(scores) for figure in FIGURES}


def test_paired_verdicts_say_gain_loss_and_noise_the_right_way_round():
    base = [0.0] * 20 + [1.0] * 80
    gained = [1.0] * 20 + [1.0] * 80
    before, after = _reports(_all_figures(base), _all_figures(gained))
    # perplexity's scores are row losses: lower is better, so a rise in every row is a real loss
    before.scores["perplexity"] = [0.5] * 40
    after.scores["perplexity"] = [0.5 + 0.01 * (i % 3 + 1) for i in range(40)]
    assert paired_verdict(before, after, "closed_qa")["verdict"] == "real gain"
    assert paired_verdict(after, before, "closed_qa")["verdict"] == "real loss"
    assert paired_verdict(before, after, "perplexity")["verdict"] == "real loss"
    assert paired_verdict(before, before, "arithmetic")["verdict"] == "within noise"
    assert after.value("perplexity") == pytest.approx(math.exp(sum(after.scores["perplexity"]) / 40))
    table = compare(before, after)
    assert list(table.index) == [FIGURES[f][0] for f in FIGURES]


def test_a_near_certainty_is_not_rounded_to_one_hundred_or_zero():
    almost, perfect = _reports(_all_figures([1.0] * 499 + [0.0]), _all_figures([1.0] * 500))
    assert shown(almost, "closed_qa").startswith("99.8% [")
    assert "100" not in shown(almost, "closed_qa").split("[")[0]
    assert shown(perfect, "closed_qa") == "100% [100–100]"
    assert shown(Report("m", "heldout", _all_figures([0.0] * 499 + [1.0])), "closed_qa").startswith("0.2% [0–")
    assert shown(Report("m", "heldout", _all_figures([1.0] * 96 + [0.0] * 4)), "closed_qa").startswith("96% [")
    assert compare(almost, perfect).loc[FIGURES["closed_qa"][0], "before"] == "99.8%"


def test_reports_on_different_questions_are_not_compared():
    before, after = _reports(_all_figures([1.0] * 10), _all_figures([1.0] * 11))
    with pytest.raises(ValueError, match="different examples"):
        paired_verdict(before, after, "closed_qa")


def test_extraction_metric_gives_validity_and_field_f1():
    from shared.evaluation import evals

    reference = '{"name": "Ada Brook", "town": "Fenwick", "job": "baker"}'
    verdict = evals.score("extraction", ['{"name": "Ada Brook", "town": "Fenwick"}', "not json",
                                         '{"name": "ada brook", "town": "Fenwick", "job": "Baker", "pet": "owl"}'],
                          [reference] * 3)
    assert verdict["correct"] == [0, 0, 1]
    assert verdict["json_valid"] == [1, 0, 1]
    assert verdict["field_f1"] == pytest.approx([0.8, 0.0, 2 * 0.75 * 1.0 / 1.75])
    assert verdict["mean_field_f1"] == pytest.approx(sum(verdict["field_f1"]) / 3)
    assert "field_f1" not in evals.score("arithmetic", ["3"], ["3"])
