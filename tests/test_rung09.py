"""Rung 09's checker: passes on the solution, fails on the untouched exercise, and turns every kind of bad
input and every cheat it knows into a clear ✗ (never a traceback)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from rung_harness import RungUnderTest, by_name, edit_json
from shared import checking
from shared.evaluation import contamination, uncertainty
from shared.evaluation.harness import FIGURES

RUNG = RungUnderTest("09")
check09 = RUNG.check
solution_run = RUNG.solution_run_fixture()
outputs_copy = RUNG.outputs_copy_fixture()


def metrics_of(outputs_root):
    return json.loads((outputs_root / "09-evals" / "metrics.json").read_text())


def test_checker_passes_on_the_solution(solution_run):
    report, printed, _ = solution_run
    assert report.passed, printed
    assert all(c.status == checking.PASS for c in report.criteria if "written answer" not in c.name), printed
    assert by_name(report, "what your fine-tune changed").status == checking.REVIEW   # flagged, never auto-passed
    assert by_name(report, "3-point gain").status == checking.REVIEW
    assert by_name(report, "lm_eval_accuracy").status == checking.PASS


def test_the_lessons_claims_hold_in_the_solutions_run(solution_run):
    """What the lesson says, from the solution's own run: SFT gains every task and pays in prose perplexity; DPO
    (abstention pairs only) loses extraction and arithmetic for real while closed QA stays within noise; the two
    harnesses agree; the held-out splits are clean."""
    metrics = metrics_of(solution_run[2])
    models = metrics["all_models"]
    assert set(models) >= {"base", "SFT", "DPO"}, models.keys()
    assert all(models["base"][task]["value"] == 0.0 for task in ("closed_qa", "extraction", "arithmetic"))
    assert models["base"]["fact_recall"]["value"] >= 0.95
    assert min(models["SFT"][task]["value"] for task in ("closed_qa", "extraction", "arithmetic")) >= 0.85
    assert models["SFT"]["perplexity"]["value"] > 2 * models["base"]["perplexity"]["value"]
    assert models["DPO"]["extraction"]["value"] <= 0.2 and models["DPO"]["arithmetic"]["value"] <= 0.75, models["DPO"]
    verdicts = {figure: row["verdict"] for figure, row in metrics["my_eval"]["comparison"].items()}
    assert verdicts["closed_qa"] == "within noise", verdicts
    assert all(verdicts[f] == "real loss" for f in ("extraction", "json_valid", "arithmetic", "perplexity")), verdicts
    for name, figures in metrics["lm_eval"].items():
        for task, value in figures.items():
            assert abs(value - models[name][task]["value"]) <= 0.011, (name, task)
    assert all(row["dirty"] == 0 for row in metrics["contamination"])
    assert {row["n"] for row in metrics["contamination"] if row["eval"] == "closed_qa/heldout"} == {10}
    for row in metrics["my_eval"]["figures"].values():
        low, high = row["closed_qa"]["low"], row["closed_qa"]["high"]
        assert low <= row["closed_qa"]["value"] <= high


def test_checker_fails_on_the_untouched_exercise(tmp_path):
    """In an empty outputs folder (no earlier rung's model in it): a stub stands in the way, so nothing trains."""
    RUNG.assert_exercise_fails(graded=("bootstrap_interval", "mcnemar", "ngram_coverage", "compare_models"),
                               unmet=("metrics were saved", "lm_eval_accuracy", "three task types", "reload",
                                      "table agrees", "verdicts", "contamination"),
                               outputs_root=tmp_path, answers=2)


# -- what the run saved ----------------------------------------------------------------------------------
def _edit(outputs, change):
    edit_json(outputs / "09-evals" / "metrics.json", change)
    report, printed = RUNG.verify(outputs)
    assert not report.passed and "Traceback" not in printed
    return report, printed


def test_a_hand_edited_figure_disagrees_with_the_models(outputs_copy):
    report, printed = _edit(outputs_copy, lambda m: m["my_eval"]["figures"]["DPO"]["extraction"].update(value=0.9))
    criterion = by_name(report, "table agrees")
    assert criterion.status == checking.FAIL and "DPO extraction 0.9" in criterion.detail, printed


def test_a_flipped_verdict_disagrees_with_the_paired_test(outputs_copy):
    report, printed = _edit(outputs_copy, lambda m: m["my_eval"]["comparison"]["arithmetic"].update(
        verdict="within noise"))
    criterion = by_name(report, "verdicts")
    assert criterion.status == checking.FAIL and "'real loss'" in criterion.detail, printed


def test_a_made_up_p_value_is_refused(outputs_copy):
    report, printed = _edit(outputs_copy, lambda m: m["my_eval"]["comparison"]["closed_qa"].update(p_value=0.5))
    assert by_name(report, "verdicts").status == checking.FAIL and "p = 0.5" in printed, printed


def _same_model_twice(metrics):
    metrics["my_eval"]["after"] = dict(metrics["my_eval"]["before"])


@pytest.mark.parametrize("change,fragment", [
    (_same_model_twice, "same model"),
    (lambda m: m["my_eval"]["after"].update(name="GRPO"), "pick BEFORE and AFTER from"),
    (lambda m: m["my_eval"]["after"].update(adapter="/tmp/elsewhere/adapter"), "only models in the run's outputs"),
    (lambda m: m["my_eval"]["after"].update(adapter="../../elsewhere"), "only models in the run's outputs"),
    (lambda m: m.pop("my_eval"), "no 'my_eval'"),
    (lambda m: m.update(sft_model="/somewhere/else"), "sft_model"),
    (lambda m: m["my_eval"]["figures"]["SFT"]["closed_qa"].update(value="96%"), "not a figure"),
])
def test_a_broken_or_borrowed_eval_fails_clearly(outputs_copy, change, fragment):
    report, printed = _edit(outputs_copy, change)
    criterion = by_name(report, "metrics were saved")
    assert criterion.status == checking.FAIL and fragment in criterion.detail, printed
    assert by_name(report, "reload").status == checking.FAIL    # the later criteria say they need it


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m.update(split="validation"), "'validation' split"),
    (lambda m: m["my_eval"]["figures"]["DPO"].pop("fact_recall"), "lack fact_recall"),
    (lambda m: m["my_eval"]["figures"]["SFT"]["arithmetic"].update(n=50), "arithmetic on 50 questions"),
])
def test_an_eval_without_the_held_out_split_or_the_forgetting_check_fails(outputs_copy, change, fragment):
    report, printed = _edit(outputs_copy, change)
    criterion = by_name(report, "three task types")
    assert criterion.status == checking.FAIL and fragment in criterion.detail, printed


def test_a_missing_adapter_fails_without_a_traceback(outputs_copy):
    adapter = metrics_of(outputs_copy)["my_eval"]["after"]["adapter"]
    shutil.rmtree(outputs_copy / adapter)
    report, printed = RUNG.verify(outputs_copy)
    criterion = by_name(report, "reload")
    assert criterion.status == checking.FAIL and "does not load" in criterion.detail, printed
    assert "Traceback" not in printed


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["contamination"][0].update(dirty=3), "recomputed"),
    (lambda m: m["contamination"][1].update(**{"mean coverage": 0.0}), "recomputed"),
    (lambda m: m.update(contamination=[r for r in m["contamination"] if r["eval"] != "arithmetic/heldout"]),
     "no contamination row for arithmetic/heldout"),
    (lambda m: m["contamination"][0].update(eval="closed_qa/secret"), "closed_qa/secret"),
])
def test_tampered_contamination_rows_are_recomputed(outputs_copy, change, fragment):
    report, printed = _edit(outputs_copy, change)
    criterion = by_name(report, "contamination")
    assert criterion.status == checking.FAIL and fragment in criterion.detail, printed


# -- the graded functions, on the checker's hidden cases -------------------------------------------------------
def _solution_functions():
    import nbformat

    from shared.notebooks.graded import extract_functions

    return extract_functions(nbformat.read(RUNG.solution, as_version=4),
                             ["bootstrap_interval", "mcnemar", "ngram_coverage", "compare_models"])


def test_the_hidden_cases_pass_the_solutions_functions():
    functions = _solution_functions()
    assert "6 unseen sets" in check09.check_bootstrap(functions["bootstrap_interval"])
    assert "8 unseen pairs" in check09.check_mcnemar(functions["mcnemar"])
    assert "n = 13, 5, 3, 1" in check09.check_coverage(functions["ngram_coverage"])
    assert "real gain, real loss, within noise" in check09.check_compare(functions["compare_models"])


def _normal_interval(scores, confidence=0.95, resamples=2000, seed=0):
    from statistics import NormalDist

    scores = np.asarray(scores, dtype=float)
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * scores.std(ddof=1) / math.sqrt(len(scores))
    return float(scores.mean() - half), float(scores.mean() + half)


def _without_replacement(scores, confidence=0.95, resamples=2000, seed=0):
    rng = np.random.default_rng(seed)
    scores = np.asarray(scores, dtype=float)
    means = [rng.permutation(scores).mean() for _ in range(resamples)]
    return float(np.quantile(means, (1 - confidence) / 2)), float(np.quantile(means, 1 - (1 - confidence) / 2))


def _half_samples_without_replacement(scores, confidence=0.95, resamples=2000, seed=0):
    """Subsampling, not a bootstrap: its spread happens to be close on large sets, not on four scores."""
    rng = np.random.default_rng(seed)
    scores = np.asarray(scores, dtype=float)
    means = [rng.permutation(scores)[:max(1, len(scores) // 2)].mean() for _ in range(resamples)]
    return float(np.quantile(means, (1 - confidence) / 2)), float(np.quantile(means, 1 - (1 - confidence) / 2))


def _confidence_ignored(scores, confidence=0.95, resamples=2000, seed=0):
    return uncertainty.bootstrap_interval(scores, 0.95, resamples, seed)


def _a_new_seed_each_call(scores, confidence=0.95, resamples=2000, seed=0):
    return uncertainty.bootstrap_interval(scores, confidence, resamples, int(np.random.randint(1 << 30)))


WRONG_BOOTSTRAPS = {
    "the normal approximation": (_normal_interval, "within the scores' range"),
    "resampling without replacement": (_without_replacement, "expected about"),
    "half-size samples without replacement": (_half_samples_without_replacement, "expected about [0.0000, 0.7500]"),
    "the confidence ignored": (_confidence_ignored, "expected about"),
    "a new random seed each call": (_a_new_seed_each_call, "draw from the seed given"),
}


@pytest.mark.parametrize("mistake", WRONG_BOOTSTRAPS)
def test_wrong_bootstraps_fail(mistake):
    function, fragment = WRONG_BOOTSTRAPS[mistake]
    RUNG.assert_fails(lambda: check09.check_bootstrap(function), fragment)


def _chi_squared(before, after):
    from statistics import NormalDist

    lost, gained = uncertainty.discordant_pairs(before, after)
    if lost + gained == 0:
        return 1.0
    statistic = (abs(lost - gained) - 1) ** 2 / (lost + gained)
    return 2 * (1 - NormalDist().cdf(math.sqrt(statistic)))


def _one_sided(before, after):
    lost, gained = uncertainty.discordant_pairs(before, after)
    n = lost + gained
    return 1.0 if n == 0 else sum(math.comb(n, k) for k in range(min(lost, gained) + 1)) / 2 ** n


def _zipped_silently(before, after):
    n = min(len(before), len(after))
    return uncertainty.mcnemar(list(before)[:n], list(after)[:n])


def _above_one(before, after):
    lost, gained = uncertainty.discordant_pairs(before, after)
    n = lost + gained
    return 1.0 if n == 0 else 2 * sum(math.comb(n, k) for k in range(min(lost, gained) + 1)) / 2 ** n


WRONG_MCNEMARS = {
    "the chi-squared approximation": (_chi_squared, "the exact binomial"),
    "one-sided": (_one_sided, "two-sided"),
    "twice the tail, above 1": (_above_one, "3 lost, 3 gained): p = 1.3125"),
    "lists of different lengths paired anyway": (_zipped_silently, "raise ValueError"),
}


@pytest.mark.parametrize("mistake", WRONG_MCNEMARS)
def test_wrong_mcnemars_fail(mistake):
    function, fragment = WRONG_MCNEMARS[mistake]
    RUNG.assert_fails(lambda: check09.check_mcnemar(function), fragment)


def _split_on_spaces(eval_texts, train_texts, n=13):
    seen = {tuple(t.split()[i:i + n]) for t in train_texts for i in range(len(t.split()) - n + 1)}
    shares = []
    for text in eval_texts:
        tokens = text.split()
        covered = [False] * len(tokens)
        for i in range(len(tokens) - n + 1):
            if tuple(tokens[i:i + n]) in seen:
                covered[i:i + n] = [True] * n
        shares.append(sum(covered) / len(tokens) if tokens else 0.0)
    return shares


def _share_of_ngrams(eval_texts, train_texts, n=13):
    seen = contamination.training_ngrams(train_texts, n)
    return [len(contamination.ngrams(t, n) & seen) / max(1, len(contamination.ngrams(t, n))) for t in eval_texts]


def _training_texts_run_together(eval_texts, train_texts, n=13):
    return contamination.coverage(eval_texts, [" ".join(train_texts)], n)


WRONG_COVERAGES = {
    "words split on spaces, case kept": (_split_on_spaces, "expected"),
    "training texts run together": (_training_texts_run_together, "'on the gate dawn came'"),
    "the share of n-grams, not of words": (_share_of_ngrams, "expected"),
}


@pytest.mark.parametrize("mistake", WRONG_COVERAGES)
def test_wrong_coverages_fail(mistake):
    function, fragment = WRONG_COVERAGES[mistake]
    RUNG.assert_fails(lambda: check09.check_coverage(function), fragment)


def _compare_with(verdict_of=None, p_of=None):
    """compare_models written with one slip: the verdict ignoring which way is better, or one test for all."""
    from shared.evaluation.harness import paired_verdict

    def compare_models(before, after):
        table = {}
        for figure in FIGURES:
            row = dict(paired_verdict(before, after, figure))
            if p_of:
                row["p_value"] = p_of(before.scores[figure], after.scores[figure])
                row["verdict"] = "within noise" if row["p_value"] >= 0.05 else row["verdict"]
            if verdict_of:
                row["verdict"] = verdict_of(row)
            table[figure] = {k: row[k] for k in ("before", "after", "change", "p_value", "verdict")}
        return table

    return compare_models


def _higher_always_better(row):
    return "within noise" if row["p_value"] >= 0.05 else ("real gain" if row["change"] > 0 else "real loss")


WRONG_COMPARISONS = {
    "perplexity's rise called a gain": (_compare_with(verdict_of=_higher_always_better), "perplexity: verdict"),
    "the paired bootstrap for right/wrong figures too": (
        _compare_with(p_of=lambda b, a: uncertainty.paired_bootstrap(b, a)["p_value"]), "p_value"),
}


@pytest.mark.parametrize("mistake", WRONG_COMPARISONS)
def test_wrong_comparisons_fail(mistake):
    function, fragment = WRONG_COMPARISONS[mistake]
    RUNG.assert_fails(lambda: check09.check_compare(function), fragment)


def test_graded_functions_that_call_their_references_are_refused():
    notebook = RUNG.solution_with(
        bootstrap_interval="from shared.evaluation.uncertainty import bootstrap_interval as _b\n\n\n"
                           "def bootstrap_interval(scores, confidence=0.95, resamples=2000, seed=0):\n"
                           "    return _b(scores, confidence, resamples, seed)\n",
        mcnemar="from shared.evaluation.harness import paired_verdict\n\n\n"
                "def mcnemar(before, after):\n"
                "    from shared.evaluation.uncertainty import mcnemar as _m\n"
                "    return _m(before, after)\n",
        ngram_coverage="from shared.evaluation import contamination\n\n\n"
                       "def ngram_coverage(eval_texts, train_texts, n=13):\n"
                       "    return contamination.coverage(eval_texts, train_texts, n)\n",
        compare_models="def compare_models(before, after):\n"
                       "    from shared.evaluation.harness import paired_verdict\n"
                       "    return {f: paired_verdict(before, after, f) for f in harness.FIGURES}\n")
    report, printed = RUNG.graded_only(notebook)
    for name, reference in (("bootstrap_interval", "uncertainty.bootstrap_interval"),
                            ("mcnemar", "uncertainty.mcnemar"), ("ngram_coverage", "contamination.coverage"),
                            ("compare_models", "harness.paired_verdict")):
        criterion = by_name(report, name)
        assert criterion.status == checking.FAIL and f"{reference}, which is not allowed here" in criterion.detail, \
            printed
    assert "Traceback" not in printed


# -- lm_eval_accuracy, which needs the run's SFT model ---------------------------------------------------------
def _lm_eval_criterion(solution_run, source):
    """The lm-eval criterion on the solution with lm_eval_accuracy written as `source`, judged as the checker
    judges it (the function served from its own process, its references forbidden)."""
    notebook = RUNG.solution_with(lm_eval_accuracy=source)
    ctx = checking.Context("09", RUNG.solution, timeout=60)
    ctx.nb = notebook
    try:
        function = ctx.graded(["lm_eval_accuracy"], forbidden=check09.FORBIDDEN)["lm_eval_accuracy"]
        saved = check09.read_saved(solution_run[2] / "09-evals", ctx_for(solution_run[2]))
        return RUNG.judge(lambda: check09.check_lm_eval(function, saved, ctx.profile))
    finally:
        ctx.close()


def ctx_for(outputs_root):
    return checking.Context("09", RUNG.solution, timeout=60, outputs_root=outputs_root)


LM_EVAL_HEAD = ("from lm_eval import simple_evaluate\nfrom lm_eval.models.huggingface import HFLM\n"
                "from lm_eval.tasks import TaskManager\n\n\n")


def test_lm_eval_figures_not_from_lm_eval_are_refused(solution_run):
    criterion, printed = _lm_eval_criterion(solution_run, LM_EVAL_HEAD + (
        "def lm_eval_accuracy(model, tokenizer, tasks=harness.TASK_FIGURES, limit=None):\n"
        "    from shared.evaluation import evals\n"
        "    return {t: evals.evaluate_task(model, tokenizer, t, limit=limit).accuracy for t in tasks}\n"))
    assert criterion.status == checking.FAIL, printed
    assert "evals.evaluate_task, which is not allowed here" in criterion.detail, criterion.detail
