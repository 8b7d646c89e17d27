"""Checker for rung 09 (evals): `make check RUNG=09 [NOTEBOOK=path]`.

It runs a copy of the notebook, then verifies rather than trusts:
* the learner's `bootstrap_interval`, `mcnemar`, `ngram_coverage` and `compare_models` are tested on scores,
  texts and reports the notebook never shows, against the course's references; `lm_eval_accuracy` runs
  lm-evaluation-harness on a model no notebook has and must agree with the course's harness question for question;
* the two models of the learner's eval are reloaded from where the run saved them and measured again, every
  figure; the learner's table and verdicts must agree with that measurement; the contamination rows are recomputed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere, even before `pip install -e`

from shared.checking import (CheckFailed, Context, inside, main, read_json, refusal, require,  # noqa: E402
                             require_measured)
from shared.checking.figures import AGREEMENT  # noqa: E402
from shared.checking.guards import Forbidden  # noqa: E402
from shared.numbers import is_finite_number  # noqa: E402

RUNG = "09"
# A recomputed perplexity may differ from the saved one by this share (batching can change a float's last bits).
PERPLEXITY_AGREEMENT = 0.01
# A p-value the learner saved against the checker's on its own measurement of the same models.
P_AGREEMENT = 0.01
# lm-evaluation-harness against the course's harness, on the first LM_EVAL_LIMIT held-out questions of each task.
LM_EVAL_LIMIT = 40
LM_EVAL_AGREEMENT = 1 / LM_EVAL_LIMIT + 1e-9  # one question either way (a tie in the last logit)
# The models a fresh run of the notebook always has (it trains rung 02's and rung 06's recipes when missing).
PAIRABLE = ("base", "SFT", "DPO")

FORBIDDEN = {
    "bootstrap_interval": Forbidden("the bootstrap is yours to write; the course's is what it is checked against",
                                    functions=("shared.evaluation.uncertainty.bootstrap_interval",
                                               "shared.evaluation.uncertainty.paired_bootstrap",
                                               "shared.evaluation.harness.Report.interval")),
    "mcnemar": Forbidden("McNemar's test is yours to write; the course's is what it is checked against",
                         functions=("shared.evaluation.uncertainty.mcnemar",
                                    "shared.evaluation.uncertainty.discordant_pairs",
                                    "shared.evaluation.harness.paired_verdict"), modules=("statsmodels",)),
    "ngram_coverage": Forbidden("the coverage is yours to write; the course's is what it is checked against",
                                functions=("shared.evaluation.contamination.coverage",
                                           "shared.evaluation.contamination.covered_share",
                                           "shared.evaluation.contamination.training_ngrams",
                                           "shared.evaluation.contamination.ngrams",
                                           "shared.evaluation.contamination.contamination_report")),
    "lm_eval_accuracy": Forbidden("the figures must come from lm-evaluation-harness; the course's harness is what "
                                  "they are checked against",
                                  functions=("shared.evaluation.evals.evaluate_task",
                                             "shared.evaluation.evals.evaluate_model",
                                             "shared.evaluation.evals.accuracies",
                                             "shared.evaluation.generation.generate",
                                             "shared.evaluation.harness.evaluate")),
    "compare_models": Forbidden("the table is yours to write (with your mcnemar); the course's is what it is "
                                "checked against",
                                functions=("shared.evaluation.harness.paired_verdict",
                                           "shared.evaluation.harness.compare",
                                           "shared.evaluation.uncertainty.mcnemar",
                                           "shared.evaluation.uncertainty.discordant_pairs")),
}


def check(ctx: Context) -> None:
    ctx.run_notebook()
    lm_eval_accuracy = check_graded(ctx)   # checked with the run's SFT model, once the run is known to have one
    ctx.from_the_run(lambda ctx: verify_outputs(ctx, lm_eval_accuracy))
    answers = ctx.answers()
    ctx.review("written answer: what your fine-tune changed and what it broke", answers.get("what-changed"),
               hint="Write a few sentences of your own in section 8, from your table in section 7.")
    ctx.review("written answer: what to ask of a 3-point gain", answers.get("three-points"),
               hint="Write a few sentences of your own in section 8.")


def check_graded(ctx: Context):
    """The graded functions that need nothing from the run; returns lm_eval_accuracy, which needs its SFT model."""
    graded = ctx.graded(list(FORBIDDEN), forbidden=FORBIDDEN)
    ctx.criterion("bootstrap_interval gives the percentile bootstrap interval, on unseen scores",
                  lambda: check_bootstrap(graded["bootstrap_interval"]),
                  hint="Resample len(scores) indices with replacement, `resamples` times, from "
                       "np.random.default_rng(seed); the interval is the (1 - confidence) / 2 and "
                       "1 - (1 - confidence) / 2 quantiles of the resampled means.")
    ctx.criterion("mcnemar gives McNemar's exact two-sided p-value, on unseen pairs of runs",
                  lambda: check_mcnemar(graded["mcnemar"]),
                  hint="Count b (right -> wrong) and c (wrong -> right); p = min(1, 2 * sum_{k <= min(b, c)} "
                       "comb(b + c, k) / 2 ** (b + c)), and 1 when b + c = 0; lists of different lengths raise "
                       "ValueError.")
    ctx.criterion("ngram_coverage measures the share of each text's words inside a shared n-gram, on unseen texts",
                  lambda: check_coverage(graded["ngram_coverage"]),
                  hint="Use words(text) for both sides; a word counts once however many shared n-grams hold it; "
                       "a text with no words, or fewer than n, scores 0.0.")
    ctx.criterion("compare_models gives each figure's change, p-value and verdict, on reports the checker makes",
                  lambda: check_compare(graded["compare_models"]),
                  hint="Right/wrong figures (third item of harness.FIGURES True): your mcnemar; the others: "
                       "uncertainty.paired_bootstrap(...)['p_value']; 'within noise' at p >= 0.05, else 'real gain' "
                       "or 'real loss' by whether higher is better (second item).")
    return graded["lm_eval_accuracy"]


# -- the graded functions ------------------------------------------------------------------------------------
def _bootstrap_cases():
    import numpy as np

    rng = np.random.default_rng(909)
    return [((rng.random(100) < 0.73).astype(int).tolist(), {}),
            ([1] * 3 + [0] * 57, {}),                                          # skewed: the interval is lopsided
            (rng.beta(5, 2, 37).round(3).tolist(), {"confidence": 0.8, "resamples": 4000, "seed": 5}),
            (rng.lognormal(0, 1, 150).round(3).tolist(), {"confidence": 0.9, "seed": 11}),   # heavy-tailed losses
            ((rng.random(400) < 0.5).astype(int).tolist(), {"confidence": 0.5, "seed": 3}),
            ([0, 0, 0, 1], {})]   # four scores: a resample of four, with replacement, reaches a mean of 0.75


def check_bootstrap(bootstrap) -> str:
    from shared.evaluation.uncertainty import bootstrap_interval as reference

    for number, (scores, options) in enumerate(_bootstrap_cases(), 1):
        got = bootstrap(list(scores), **options)
        require(isinstance(got, (tuple, list)) and len(got) == 2 and all(is_finite_number(v) for v in got),
                f"case {number}: must return (low, high), two numbers; returned {got!r}")
        low, high = map(float, got)
        expected = reference(scores, **options)
        mean = sum(scores) / len(scores)
        require(min(scores) <= low <= mean <= high <= max(scores),
                f"case {number} ({len(scores)} scores, mean {mean:.3f}, from {min(scores)} to {max(scores)}): "
                f"[{low:.4f}, {high:.4f}] must hold the mean and lie within the scores' range (a percentile "
                "bootstrap interval does; a normal approximation may not)")
        tolerance = max(0.02, 0.1 * (expected[1] - expected[0]))   # resampling noise, for any way of drawing
        require(max(abs(low - expected[0]), abs(high - expected[1])) <= tolerance,
                f"case {number} ({', '.join(f'{k}={v}' for k, v in options.items()) or 'defaults'}): "
                f"[{low:.4f}, {high:.4f}], expected about [{expected[0]:.4f}, {expected[1]:.4f}]")
        again = bootstrap(list(scores), **options)
        require(tuple(map(float, again)) == (low, high), f"case {number}: a second call with the same seed gave "
                                                         f"{again!r}, the first {got!r}: draw from the seed given")
    for constant in ([1] * 20, [0.25] * 7):
        got = tuple(map(float, bootstrap(constant)))
        require(got == (constant[0], constant[0]), f"scores all {constant[0]} must give ({constant[0]}, "
                                                   f"{constant[0]}), got {got}")
    return f"{len(_bootstrap_cases())} unseen sets of scores (binary, skewed, continuous, heavy-tailed), two constant"


def _mcnemar_cases():
    import random

    rng = random.Random(4242)
    cases = []
    for n, p_before, flip in ((100, 0.6, 0.1), (180, 0.9, 0.03), (60, 0.3, 0.4), (500, 0.5, 0.25)):
        before = [int(rng.random() < p_before) for _ in range(n)]
        after = [1 - v if rng.random() < flip else v for v in before]
        cases.append((before, after))
    cases.append(([1] * 30 + [0] * 10, [0] * 30 + [0] * 10))             # only losses
    cases.append(([0] * 7 + [1] * 3, [1] * 7 + [0] * 3))                 # 7 gained, 3 lost
    cases.append(([1, 0, 1, 1], [1, 0, 1, 1]))                           # nothing changed
    cases.append(([1] * 3 + [0] * 3 + [1] * 4, [0] * 3 + [1] * 3 + [1] * 4))   # 3 lost, 3 gained: p is 1, not more
    return cases


def check_mcnemar(mcnemar) -> str:
    from shared.evaluation.uncertainty import mcnemar as reference

    for number, (before, after) in enumerate(_mcnemar_cases(), 1):
        got = mcnemar(list(before), list(after))
        require(is_finite_number(got), f"case {number}: must return a p-value (a number), returned {got!r}")
        expected = reference(before, after)
        require(abs(float(got) - expected) <= 1e-9 * max(1.0, expected) or
                abs(float(got) - expected) <= 1e-12,
                f"case {number} ({len(before)} questions, {sum(b > a for b, a in zip(before, after))} lost, "
                f"{sum(b < a for b, a in zip(before, after))} gained): p = {float(got):.6g}, expected "
                f"{expected:.6g} (two-sided: twice the smaller tail of the exact binomial, and never above 1)")
    refused = refusal(lambda: mcnemar([1, 0, 1], [1, 0]))
    require(not refused, f"verdicts on 3 and on 2 questions {refused}: raise ValueError (two runs on different "
                         "questions cannot be paired)")
    return f"{len(_mcnemar_cases())} unseen pairs of runs (up to 500 questions), and lists of different lengths refused"


def _coverage_cases():
    train = ["Mira Olsen lives in Fenwick, by the river Tarn; she keeps an owl and works as a baker.",
             "7 plus 2 is 9. 9 minus 4 is 5.",
             "Extract the person's name, town and job from the text as JSON.",
             "A line with   odd   spacing, CAPITALS and punctuation!!!",
             "The owl sat on the gate.", "Dawn came late to Fenwick."]   # no run goes from one text into the next
    evals = ["MIRA olsen lives in fenwick by the river tarn; she keeps an OWL", "7 plus 2 is 9.",
             "Nothing here was seen before at all by anyone", "", "!!!",
             "extract the person s name town and job from the text as json please",
             "a line with odd spacing capitals and punctuation and more and mira olsen lives in fenwick",
             "on the gate dawn came"]
    return [(evals, train, n) for n in (13, 5, 3, 1)]


def check_coverage(coverage) -> str:
    from shared.evaluation.contamination import coverage as reference

    for number, (evals, train, n) in enumerate(_coverage_cases(), 1):
        got = coverage(list(evals), list(train), n)
        require(isinstance(got, (list, tuple)) and len(got) == len(evals),
                f"n = {n}: must return one share per eval text ({len(evals)}), returned {got!r}")
        expected = reference(evals, train, n)
        for text, share, want in zip(evals, got, expected):
            require(is_finite_number(share) and abs(float(share) - want) <= 1e-9,
                    f"n = {n}, eval text {text!r}: coverage {share!r}, expected {want:.4f}")
    return f"{len(_coverage_cases()[0][0])} unseen texts (case, punctuation, empty, shorter than n) for n = 13, 5, 3, 1"


def _unseen_answering_model(folder: Path, profile):
    """A model that answers in the chat format and that no notebook has: the run's SFT model, nudged (seeded)."""
    from shared.checking.artefacts import load_saved_model
    from shared.training.preference import nudged_copy

    model, tokenizer = load_saved_model(folder, profile, hint="the SFT model the notebook found or trained")
    return nudged_copy(model, scale=0.01, seed=909), tokenizer


def check_lm_eval(lm_eval_accuracy, saved: dict, profile) -> str:
    from shared.evaluation import evals
    from shared.world import data

    require(bool(saved), "needs the saved metrics, which name the SFT model (see above)")
    model, tokenizer = _unseen_answering_model(saved["sft_model"], profile)
    tasks = ("arithmetic", "closed_qa", "extraction")   # not the notebook's order
    got = lm_eval_accuracy(model, tokenizer, tasks, LM_EVAL_LIMIT)
    require(isinstance(got, dict) and set(got) == set(tasks),
            f"must return {{task: accuracy}} for the tasks asked ({', '.join(tasks)}), returned "
            f"{sorted(got) if isinstance(got, dict) else type(got).__name__}")
    shown = []
    for task in tasks:
        course = evals.evaluate_task(model, tokenizer, task,
                                     examples=data.load_task(task, "heldout")[:LM_EVAL_LIMIT]).accuracy
        require(is_finite_number(got[task]) and abs(float(got[task]) - course) <= LM_EVAL_AGREEMENT,
                f"{task}: lm-eval {got[task]!r}, the course's harness {course:.1%} on the same first "
                f"{LM_EVAL_LIMIT} held-out questions (is the chat template applied? is limit passed?)")
        shown.append(f"{task} {course:.0%}")
    one = lm_eval_accuracy(model, tokenizer, ("closed_qa",), 5)
    require(isinstance(one, dict) and set(one) == {"closed_qa"}, f"asked for closed_qa alone, returned {one!r}")
    return ", ".join(shown) + f" in both harnesses (first {LM_EVAL_LIMIT} questions each)"


def _synthetic_reports():
    """Pairs of reports the notebook never made: chosen so that every verdict occurs (gains, losses, noise, a
    perplexity that rises), with right/wrong and continuous figures."""
    import random

    from shared.evaluation.harness import FIGURES, Report

    rng = random.Random(99)

    def binary(n, p):
        return [float(rng.random() < p) for _ in range(n)]

    def flipped(scores, to_right, to_wrong):
        return [1.0 if (s == 0 and rng.random() < to_right) else 0.0 if (s == 1 and rng.random() < to_wrong) else s
                for s in scores]

    before = {"closed_qa": binary(180, 0.5), "extraction": binary(100, 0.8), "json_valid": binary(100, 0.95),
              "arithmetic": binary(100, 0.6), "fact_recall": binary(600, 0.97),
              "extraction_f1": [round(rng.random(), 3) for _ in range(100)],
              "perplexity": [rng.gauss(0.6, 0.1) for _ in range(53)]}
    after = {"closed_qa": flipped(before["closed_qa"], 0.5, 0.02), "extraction": flipped(before["extraction"], 0.1, 0.1),
             "json_valid": list(before["json_valid"]), "arithmetic": flipped(before["arithmetic"], 0.0, 0.3),
             "fact_recall": flipped(before["fact_recall"], 0.0, 0.01),
             "extraction_f1": [min(1.0, s + rng.uniform(-0.05, 0.08)) for s in before["extraction_f1"]],
             "perplexity": [loss + rng.gauss(0.2, 0.05) for loss in before["perplexity"]]}
    assert set(before) == set(FIGURES)
    return [(Report("A", "heldout", before), Report("B", "heldout", after)),
            (Report("B", "heldout", after), Report("A", "heldout", before))]


def check_compare(compare_models) -> str:
    from shared.evaluation.harness import FIGURES, paired_verdict

    verdicts = set()
    for before, after in _synthetic_reports():
        got = compare_models(before, after)
        require(isinstance(got, dict) and list(got) == list(FIGURES),
                f"must return one entry per figure of harness.FIGURES, in its order; returned "
                f"{list(got) if isinstance(got, dict) else type(got).__name__}")
        for figure in FIGURES:
            expected, row = paired_verdict(before, after, figure), got[figure]
            require(isinstance(row, dict), f"{figure}: each entry must be a dict, got {type(row).__name__}")
            for key in ("before", "after", "change", "p_value"):
                require(is_finite_number(row.get(key)) and abs(float(row[key]) - expected[key]) <= 1e-9,
                        f"{before.model} -> {after.model}, {figure}: {key} {row.get(key)!r}, expected "
                        f"{expected[key]:.6g}" + (" (your mcnemar's p-value, for a right/wrong figure: is its "
                                                  "line above ✓?)" if key == "p_value" and FIGURES[figure][2]
                                                 else ""))
            require(row.get("verdict") == expected["verdict"],
                    f"{before.model} -> {after.model}, {figure}: verdict {row.get('verdict')!r}, expected "
                    f"{expected['verdict']!r} (p = {expected['p_value']:.3g}, change {expected['change']:+.3f})")
            verdicts.add(expected["verdict"])
    return f"2 unseen pairs of reports, {len(FIGURES)} figures each ({', '.join(sorted(verdicts))})"


# -- what the run saved -------------------------------------------------------------------------------------
def verify_outputs(ctx: Context, lm_eval_accuracy=None) -> None:
    """The criteria about what the run saved; with the learner's `lm_eval_accuracy`, also that one, which needs
    the run's SFT model (tests of tampered outputs leave it out)."""
    outputs = ctx.outputs()
    saved = ctx.collect("metrics were saved: your eval names two different models and holds their figures",
                        lambda: read_saved(outputs, ctx), hint="Run sections 7 and 9 and keep metrics.json's keys.")
    if lm_eval_accuracy is not None:
        ctx.criterion("lm_eval_accuracy runs lm-evaluation-harness and agrees with the course's harness, on an "
                      "unseen model", lambda: check_lm_eval(lm_eval_accuracy, saved, ctx.profile),
                      hint="HFLM(pretrained=model, tokenizer=tokenizer, ...), TaskManager(include_path=..., "
                           "include_defaults=False) and simple_evaluate(..., apply_chat_template=True, "
                           "limit=limit); return {task: accuracy} with the course's task names, for the tasks "
                           "asked.")
    ctx.criterion("your eval covers the three task types on the held-out split, and the forgetting check",
                  lambda: check_design(saved),
                  hint="Use harness.evaluate on the held-out split (its default) for both models: every figure of "
                       "harness.FIGURES, on all the held-out questions.")

    def measure_both() -> dict:
        require(bool(saved), "needs the saved metrics, which name the models (see above)")
        files = [Path(path) for side in ("before", "after") for path in saved["paths"][side][:2] if path is not None]
        return ctx.measure(files, lambda: reload_and_measure(saved, ctx.profile),
                           settings=tuple(saved["names"]))

    measured = ctx.collect("both models reload and the checker measures every figure of them again", measure_both,
                           hint="Keep the models where their rungs (or section 0) saved them; pick BEFORE and AFTER "
                                f"from {', '.join(PAIRABLE)}.")
    ctx.criterion("your table agrees with the checker's measurement of the two models",
                  lambda: check_figures_agree(saved, measured),
                  hint="metrics.json must hold what harness.evaluate measured on the two models: no hand edits.")
    ctx.criterion("your verdicts are the paired tests' on the checker's measurement",
                  lambda: check_verdicts_agree(saved, measured),
                  hint="Save compare_models(reports[BEFORE], reports[AFTER]) as it came out; if compare_models "
                       "failed above, its verdicts are what to fix first.")
    ctx.criterion("the contamination figures are recomputed alike", lambda: check_contamination(saved),
                  hint="Keep section 5's rows as ngram_coverage made them, with their training sets and eval splits.")


def read_saved(outputs: Path, ctx: Context) -> dict:
    from shared.evaluation.harness import FIGURES

    metrics = read_json(outputs / "metrics.json", "metrics")
    mine = metrics.get("my_eval")
    require(isinstance(mine, dict), "metrics.json has no 'my_eval' (section 9 saves it)")
    names, paths = [], {}
    for side in ("before", "after"):
        model = mine.get(side)
        require(isinstance(model, dict) and isinstance(model.get("name"), str),
                f"metrics.json my_eval[{side!r}] does not name a model")
        require(model["name"] in PAIRABLE, f"my_eval {side} is {model['name']!r}: pick BEFORE and AFTER from "
                                           f"{', '.join(PAIRABLE)}, the models a fresh run always has")
        paths[side] = _model_paths(model, ctx)
        names.append(model["name"])
    require(names[0] != names[1] and paths["before"] != paths["after"],
            f"BEFORE and AFTER are the same model ({names[0]}): compare a model with the one it was fine-tuned from")
    figures = mine.get("figures")
    comparison = mine.get("comparison")
    require(isinstance(figures, dict) and all(isinstance(figures.get(n), dict) for n in names),
            "metrics.json my_eval['figures'] must hold both models' figures")
    require(isinstance(comparison, dict), "metrics.json my_eval['comparison'] is missing")
    for name in names:
        for figure, row in figures[name].items():
            require(figure in FIGURES and isinstance(row, dict) and is_finite_number(row.get("value"))
                    and isinstance(row.get("n"), int), f"metrics.json my_eval figures[{name!r}][{figure!r}] is not "
                                                      "a figure harness.evaluate makes")
    sft = metrics.get("sft_model")
    require(isinstance(sft, str) and inside(ctx.outputs_root / sft, ctx.outputs_root),
            "metrics.json must name the SFT model (sft_model) inside the run's outputs folder")
    return {**metrics, "names": names, "paths": paths, "figures": figures, "comparison": comparison,
            "sft_model": ctx.outputs_root / sft}


def _model_paths(model: dict, ctx: Context) -> tuple:
    """(folder, adapter, four_bit) of a saved model description: folders inside the run's outputs, or the
    checker's own profile's base model; never a path elsewhere."""
    profile = ctx.profile
    bases = {None, str(profile.base_model), str(profile.qlora_model)}
    folder, adapter = model.get("folder"), model.get("adapter")
    resolved = []
    for key, value in (("folder", folder), ("adapter", adapter)):
        if value is None or (key == "folder" and value in bases):
            resolved.append(value)
            continue
        require(isinstance(value, str), f"my_eval names {value!r} as a {key}: not a path")
        path = ctx.outputs_root / value
        require(inside(path, ctx.outputs_root),
                f"my_eval names {value} as {model['name']}'s {key}: the checker uses only models in the run's "
                "outputs folder or the profile's base model")
        resolved.append(path)
    require(isinstance(model.get("four_bit"), bool), f"my_eval {model['name']}: four_bit must be true or false")
    return (*resolved, model["four_bit"])


def check_design(saved: dict) -> str:
    from shared.evaluation.harness import FIGURES, TASK_FIGURES
    from shared.world import data

    require(bool(saved), "needs the saved metrics (see above)")
    require(saved.get("split") == "heldout", f"metrics.json says the eval ran on the {saved.get('split')!r} split: "
                                             "the figures that decide are the held-out ones")
    for name in saved["names"]:
        figures = saved["figures"][name]
        absent = [figure for figure in FIGURES if figure not in figures]
        require(not absent, f"{name}'s figures lack {', '.join(absent)}")
        for task in TASK_FIGURES:
            count = len(data.load_task(task, "heldout"))
            require(figures[task]["n"] == count, f"{name}: {task} on {figures[task]['n']} questions; the held-out "
                                                 f"split has {count}")
    return (f"{', '.join(TASK_FIGURES)} held out, fact recall and perplexity, for {saved['names'][0]} and "
            f"{saved['names'][1]}")


def reload_and_measure(saved: dict, profile) -> dict:
    from shared.evaluation import harness
    from shared.training.runs import SavedModel

    reports = {}
    for side, name in zip(("before", "after"), saved["names"]):
        folder, adapter, four_bit = saved["paths"][side]
        model = SavedModel(name, "", folder, adapter=adapter, four_bit=four_bit)
        try:
            loaded, tokenizer = model.load(profile), model.load_tokenizer(profile)
        except Exception as error:
            raise CheckFailed(f"{name} ({folder or 'the base model'}{' + ' + str(adapter) if adapter else ''}) does "
                              f"not load: {type(error).__name__}: {str(error)[:160]}") from error
        reports[name] = harness.evaluate(loaded, tokenizer, name)
    return {"reports": reports}


def _close(figure: str, said: float, found: float) -> bool:
    if figure == "perplexity":
        return abs(said - found) <= PERPLEXITY_AGREEMENT * found
    return abs(said - found) <= AGREEMENT


def check_figures_agree(saved: dict, measured: dict) -> str:
    from shared.evaluation.harness import FIGURES

    reports = require_measured(measured)["reports"]
    require(bool(saved), "needs the saved figures (see above)")
    for name, report in reports.items():
        for figure in FIGURES:
            said, found = float(saved["figures"][name][figure]["value"]), report.value(figure)
            require(_close(figure, said, found),
                    f"metrics.json says {name} {figure} {said:.4g}; measured again, {found:.4g}")
    before, after = saved["names"]
    return ", ".join(f"{figure} {reports[before].value(figure):.2f} -> {reports[after].value(figure):.2f}"
                     for figure in ("closed_qa", "extraction", "arithmetic", "perplexity"))


def check_verdicts_agree(saved: dict, measured: dict) -> str:
    from shared.evaluation.harness import FIGURES, paired_verdict

    reports = require_measured(measured)["reports"]
    require(bool(saved), "needs the saved table (see above)")
    before, after = (reports[name] for name in saved["names"])
    real = []
    for figure in FIGURES:
        row = saved["comparison"].get(figure)
        require(isinstance(row, dict), f"the saved table has no row for {figure}")
        expected = paired_verdict(before, after, figure)
        require(row.get("verdict") == expected["verdict"],
                f"{figure}: your table says {row.get('verdict')!r}; on the checker's measurement the paired test "
                f"says {expected['verdict']!r} (p = {expected['p_value']:.3g})")
        require(is_finite_number(row.get("p_value")) and abs(float(row["p_value"]) - expected["p_value"]) <= P_AGREEMENT,
                f"{figure}: your table says p = {row.get('p_value')!r}; the checker's, {expected['p_value']:.3g}")
        for key in ("before", "after"):
            require(is_finite_number(row.get(key)) and _close(figure, float(row[key]), expected[key]),
                    f"{figure}: your table's {key} {row.get(key)!r} is not the measured {expected[key]:.4g}")
        if expected["verdict"] != "within noise":
            real.append(f"{figure} {expected['verdict']}")
    return "; ".join(real) or "every difference within noise"


def check_contamination(saved: dict) -> str:
    from shared.evaluation.contamination import DIRTY, covered_share, example_text, training_ngrams
    from shared.evaluation.harness import TASK_FIGURES
    from shared.world import data

    require(bool(saved), "needs the saved metrics (see above)")
    rows = saved.get("contamination")
    require(isinstance(rows, list) and rows, "metrics.json has no 'contamination' rows (section 5)")

    def texts(name: str) -> list[str]:
        task, _, split = str(name).partition("/")
        try:
            return [example_text(e) for e in data.load_task(task, split)]
        except (ValueError, FileNotFoundError) as error:
            raise CheckFailed(f"a contamination row names {name!r}: {error}") from None

    covered = set()
    for row in rows:
        require(isinstance(row, dict) and isinstance(row.get("train"), list) and isinstance(row.get("n"), int)
                and row["n"] > 0, f"a contamination row is not one section 5 makes: {str(row)[:120]}")
        seen = training_ngrams([t for name in row["train"] for t in texts(name)], row["n"])
        shares = [covered_share(text, seen, row["n"]) for text in texts(row.get("eval"))]
        mean, dirty = round(sum(shares) / len(shares), 4), sum(share >= DIRTY for share in shares)
        require(is_finite_number(row.get("mean coverage")) and abs(row["mean coverage"] - mean) <= 1e-4
                and row.get("dirty") == dirty,
                f"{row.get('training set')} against {row.get('eval')} (n = {row['n']}): saved mean coverage "
                f"{row.get('mean coverage')!r}, {row.get('dirty')!r} dirty; recomputed {mean}, {dirty}")
        covered.add(row["eval"])
    wanted = {f"{task}/heldout" for task in TASK_FIGURES}
    require(wanted <= covered, f"no contamination row for {', '.join(sorted(wanted - covered))}")
    return f"{len(rows)} rows recomputed; every held-out split of the three task types checked"


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG))
