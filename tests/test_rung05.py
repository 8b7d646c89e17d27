"""Rung 05's checker: passes on the solution, fails on the untouched exercise, and turns every kind of bad
input and every cheat it knows into a clear ✗ (never a traceback)."""

from __future__ import annotations

import collections
import json
import random
import shutil

import numpy as np
import pytest

from rung_harness import RungUnderTest, by_name, edit_json
from shared import checking
from shared.curation import dirty, stages
from shared.curation.dirty import jaccard
from shared.evaluation.contamination import DIRTY, covered_share, example_text, ngram_size, training_ngrams

RUNG = RungUnderTest("05")
check05 = RUNG.check
solution_run = RUNG.solution_run_fixture()
outputs_copy = RUNG.outputs_copy_fixture()


def metrics_of(outputs_root):
    return json.loads((outputs_root / "05-data-curation" / "metrics.json").read_text())


def test_checker_passes_on_the_solution(solution_run):
    report, printed, _ = solution_run
    assert report.passed, printed
    assert all(c.status == checking.PASS for c in report.criteria if "written answer" not in c.name), printed
    assert by_name(report, "why deduplication matters").status == checking.REVIEW   # flagged, never auto-passed


def test_the_lessons_claims_hold_in_the_solutions_run(solution_run):
    """What the lesson says, from the solution's own run: each stage removes its own flaw and (but for semantic
    dedup's few same-answer stories, and rebalancing) no clean example; the raw model learned the leaked
    problems and not the skill; the curated model, trained as many steps, is the more accurate."""
    metrics = metrics_of(solution_run[2])
    stage = {row["stage"]: row for row in metrics["funnel"]}
    assert stage["exact dedup"]["duplicate"] == 48 and stage["exact dedup"]["clean"] == 0
    assert stage["MinHash dedup"]["near_duplicate"] >= 38 and stage["MinHash dedup"]["clean"] == 0
    assert stage["semantic dedup"]["paraphrase"] >= 40 and stage["semantic dedup"]["clean"] <= 10
    assert stage["decontamination"]["removed"] == stage["decontamination"]["leaked"] == 60
    assert stage["quality"]["removed"] == stage["quality"]["off_format"] + stage["quality"]["wrong_answer"] == 180
    raw, curated = metrics["figures"]["raw"], metrics["figures"]["curated"]
    assert raw["two_step_leaked"] >= 0.8 and raw["two_step_unseen"] <= 0.25, raw
    assert curated["two_step_leaked"] <= 0.1 and curated["mean"] > raw["mean"], (raw, curated)
    runs = metrics["runs"]
    assert abs(runs["raw"]["steps"] - runs["curated"]["steps"]) <= 3, runs   # as many steps, on a third of the data
    assert runs["curated"]["examples"] < runs["raw"]["examples"] / 2, runs


def test_checker_fails_on_the_untouched_exercise():
    RUNG.assert_exercise_fails(graded=("normalise undoes", "exact_dedup", "minhash_dedup", "embed gives",
                                       "semantic_dedup", "decontaminate", "problem finds", "rebalance"),
                               unmet=("name the two models", "curated set is clean", "reload", "learned the leaked",
                                      "never saw them", "at least as accurate", "new questions", "saved figures agree"))


# -- what the run saved ----------------------------------------------------------------------------------
def _edit(outputs, change):
    edit_json(outputs / "05-data-curation" / "metrics.json", change)
    report, printed = RUNG.verify(outputs)
    assert not report.passed and "Traceback" not in printed
    return report, printed


def _labelled(metrics):
    return {row["id"]: row for row in dirty.dirty_instructions(seed=metrics["seed"])}


def _add_rows_of(flaw, count):
    def change(metrics):
        rows = [i for i, row in _labelled(metrics).items() if row["flaw"] == flaw]
        metrics["curated_ids"] += rows[:count]
    return change


@pytest.mark.parametrize("change,fragment", [
    (_add_rows_of("leaked", 1), "eval examples left in the training set"),
    (_add_rows_of("wrong_answer", 20), "flawed, at most 3% allowed"),
    (lambda m: m.update(curated_ids=[i for i, row in _labelled(m).items() if row["flaw"] == "clean"]),
     "more than 2.5 times the rarest"),
    (lambda m: m.update(seed=m["seed"] + 7), "are not in the dirty set of seed"),
    (lambda m: m["curated_ids"].append(m["curated_ids"][0]), "holds an example twice"),
])
def test_a_curated_set_that_is_not_clean_fails(outputs_copy, change, fragment):
    report, printed = _edit(outputs_copy, change)
    criterion = by_name(report, "curated set is clean")
    assert criterion.status == checking.FAIL and fragment in criterion.detail, printed


def test_models_swapped_fail_every_effect(outputs_copy):
    """The curated model named as the raw one and the other way round: no leak learned by "raw", the leaks known
    by "curated", and curation no longer pays."""
    def swap(metrics):
        metrics["models"]["raw"], metrics["models"]["curated"] = metrics["models"]["curated"], metrics["models"]["raw"]
    report, printed = _edit(outputs_copy, swap)
    for fragment in ("learned the leaked", "never saw them", "at least as accurate"):
        assert by_name(report, fragment).status == checking.FAIL, printed
    assert "was the raw model trained on the whole dirty set?" in by_name(report, "learned the leaked").detail


def test_another_rungs_model_passed_off_as_curated_is_refused(outputs_copy, solution_run):
    """Rung 02's SFT model (every clean training example) copied in as the curated one."""
    sft = solution_run[2] / "02-sft" / "model"
    if not sft.is_dir():
        pytest.skip("rung 02's model is not in this run's outputs")
    curated = outputs_copy / metrics_of(outputs_copy)["models"]["curated"]
    shutil.rmtree(curated)
    shutil.copytree(sft, curated)
    report, printed = RUNG.verify(outputs_copy)
    criterion = by_name(report, "name the two models")
    assert criterion.status == checking.FAIL and "a copy of 02-sft/model" in criterion.detail, printed


def test_a_curated_model_trained_on_the_held_out_questions_is_caught():
    """Held-out questions answered far better than new ones like them (figures as such a model gives them)."""
    memorised = {"closed_qa": 1.0, "extraction": 1.0, "arithmetic": 1.0,
                 "fresh": {"closed_qa": 0.7, "extraction": 0.8, "arithmetic": 0.9}}
    criterion = RUNG.assert_fails(lambda: check05.check_fresh({"curated": memorised}), "closed_qa: 100% on the held-out")
    assert "was the model trained on the held-out split?" in criterion.detail


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["figures"]["curated"].update(mean=0.99), "curated model's mean"),
    (lambda m: m["figures"]["raw"].update(two_step_leaked=0.1), "raw model's two_step_leaked"),
])
def test_hand_edited_figures_disagree_with_the_models(outputs_copy, change, fragment):
    report, printed = _edit(outputs_copy, change)
    criterion = by_name(report, "saved figures agree")
    assert criterion.status == checking.FAIL and fragment in criterion.detail, printed


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["models"].update(curated="/tmp/elsewhere/model"), "only models this rung trained"),
    (lambda m: m["models"].update(raw="02-sft/model"), "only models this rung trained"),
    (lambda m: m["models"].update(raw=m["models"]["curated"]), "two different models"),
    (lambda m: m.pop("curated_ids"), "curated set's ids"),
    (lambda m: m.update(seed="zero"), "not a whole number"),
    (lambda m: m["figures"].pop("raw"), "figures of both models"),
])
def test_a_broken_or_borrowed_run_fails_clearly(outputs_copy, change, fragment):
    report, printed = _edit(outputs_copy, change)
    criterion = by_name(report, "name the two models")
    assert criterion.status == checking.FAIL and fragment in criterion.detail, printed
    assert by_name(report, "reload").status == checking.FAIL


def test_a_missing_model_fails_without_a_traceback(outputs_copy):
    shutil.rmtree(outputs_copy / metrics_of(outputs_copy)["models"]["raw"])
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "reload").status == checking.FAIL and "does not load" in printed, printed
    assert "Traceback" not in printed


# -- the stages, on the checker's unseen dirty set ---------------------------------------------------------------
@pytest.fixture(scope="module")
def unseen():
    return check05.Unseen()


def test_the_hidden_cases_pass_the_references(unseen):
    assert "unseen texts" in check05.check_normalise(dirty.normalise)
    assert "removed of" in check05.check_exact(stages.exact_dedup, unseen)
    assert "near duplicates found" in check05.check_minhash(stages.minhash_dedup, unseen)
    assert "within cosine 0.999" in check05.check_embed(stages.embed, unseen)
    assert "two hand-made cases" in check05.check_semantic(stages.semantic_dedup, unseen)
    assert "leaked rows" in check05.check_decontaminate(stages.decontaminate, unseen)
    assert "hand-made examples" in check05.check_problem(stages.problem, unseen)
    assert "the rarest task's count" in check05.check_rebalance(stages.rebalance, unseen)


def _lower_not_casefold(text):
    return " ".join(dirty.unicodedata.normalize("NFKC", text).translate(dirty._QUOTES).lower().split())


def _no_unicode_forms(text):
    return " ".join(text.translate(dirty._QUOTES).casefold().split())


def _dedup_without_normalising(examples):
    seen, kept = set(), []
    for example in examples:
        if (example["prompt"], example["answer"]) not in seen:
            seen.add((example["prompt"], example["answer"]))
            kept.append(example)
    return kept


def _minhash_at_half(examples, threshold=0.8, num_perm=128):
    return stages.minhash_dedup(examples, threshold=0.5, num_perm=num_perm)


def _minhash_ignoring_the_threshold(examples, threshold=0.8, num_perm=128):
    return stages.minhash_dedup(examples, num_perm=num_perm)


def _embed_not_normalised(texts):
    return stages.embed(texts) * 3.0


def _semantic_by_cosine_alone(examples, embeddings, threshold=0.8):
    kept, rows = [], []
    for i, example in enumerate(examples):
        if not any(float(embeddings[i] @ embeddings[j]) >= threshold for j in rows):
            rows.append(i)
            kept.append(example)
    return kept


def _decontaminate_with_13_grams(examples, eval_examples):
    texts = [example_text(e) for e in eval_examples]
    seen = training_ngrams(texts, 13)
    return [e for e in examples if covered_share(example_text(e), seen, 13) < DIRTY]


def _format_only(example, world):
    found = stages.problem(example, world)
    return found if found and found.startswith("off format") else None


def _reasons_without_a_kind(example, world):
    found = stages.problem(example, world)
    return found and found.split(": ", 1)[-1]


def _unseeded_rebalance(examples, per_task=None, seed=0):
    return stages.rebalance(examples, per_task=per_task, seed=random.randrange(10**6))


def _grouped_by_task(examples, per_task=None, seed=0):
    kept = stages.rebalance(examples, per_task=per_task, seed=seed)
    return sorted(kept, key=lambda e: e["task"])


def _dedup_by_prompt_alone(examples):
    seen, kept = set(), []
    for example in examples:
        if stages.normalise(example["prompt"]) not in seen:
            seen.add(stages.normalise(example["prompt"]))
            kept.append(example)
    return kept


def _exact_jaccard_no_minhash(examples, threshold=0.8, num_perm=128):
    """Right by the measure, without the estimate section 2 teaches: num_perm changes nothing."""
    kept = []
    for example in examples:
        if all(jaccard(example_text(example), example_text(other)) < threshold for other in kept):
            kept.append(example)
    return kept


def _semantic_against_every_earlier(examples, embeddings, threshold=0.8):
    """Compares with the examples already dropped as well as those kept."""
    return [example for i, example in enumerate(examples)
            if not any(stages.normalise(examples[j]["answer"]) == stages.normalise(example["answer"])
                       and float(embeddings[i] @ embeddings[j]) >= threshold for j in range(i))]


def _any_true_answer_sentence(example, world):
    """Passes a closed-QA answer that is true of whoever it names, not of the person asked about."""
    named = [p for p in world["people"] if example["answer"].strip().startswith(p["name"])]
    if example["task"] == "closed_qa" and named:
        return stages.problem({**example, "prompt": named[0]["name"]}, {"people": named})
    return stages.problem(example, world)


def _extraction_values_anywhere_in_the_prompt(example, world):
    if example["task"] == "extraction":
        return stages.problem({**example, "prompt": "Text: " + example["prompt"]}, world)
    return stages.problem(example, world)


def _names_in_any_case(example, world):
    named = [p for p in world["people"] if p["name"].casefold() in example["prompt"].casefold()]
    if example["task"] == "closed_qa" and named:
        return stages.problem({**example, "prompt": named[0]["name"]}, world)
    return stages.problem(example, world)


def _dirty_itself_kept(examples, eval_examples):
    texts = [example_text(e) for e in eval_examples]
    n = ngram_size(texts)
    seen = training_ngrams(texts, n)
    return [e for e in examples if covered_share(example_text(e), seen, n) <= DIRTY]


def _zero_as_none(examples, per_task=None, seed=0):
    return stages.rebalance(examples, per_task=per_task or None, seed=seed)


def _returns_ids(examples):
    return [e["id"] for e in stages.exact_dedup(examples)]


WRONG_STAGES = {
    "lower() where casefold() is meant": ("normalise", _lower_not_casefold, "expected 'strasse strasse'"),
    "no NFKC": ("normalise", _no_unicode_forms, "expected 'fenwick'"),
    "duplicates compared as written": ("exact", _dedup_without_normalising, "kept {'duplicate'"),
    "ids, not the examples": ("exact", _returns_ids, "must return a list of the examples it keeps"),
    "the prompt alone": ("exact", _dedup_by_prompt_alone, "prompt and answer both match"),
    "exact Jaccard, no MinHash": ("minhash", _exact_jaccard_no_minhash, "num_perm=16 kept exactly what"),
    "against dropped examples too": ("semantic", _semantic_against_every_earlier, "which was not kept"),
    "a true sentence about someone else": ("problem", _any_true_answer_sentence, "expected off format or wrong"),
    "extraction values found before 'Text:'": ("problem", _extraction_values_anywhere_in_the_prompt,
                                               "said good, expected wrong"),
    "names matched in any case": ("problem", _names_in_any_case,
                                  "(wrong: the question names no one in the world)"),
    "per_task=0 read as None": ("rebalance", _zero_as_none, "per_task=0 kept"),
    "a share of DIRTY itself kept": ("decontaminate", _dirty_itself_kept, "covered exactly DIRTY (80%"),
    "MinHash at 0.5": ("minhash", _minhash_at_half, "not a near duplicate"),
    "MinHash ignoring its threshold": ("minhash", _minhash_ignoring_the_threshold, "at threshold 0.97"),
    "embeddings not unit length": ("embed", _embed_not_normalised, "normalise them to unit length"),
    "cosine alone, any answer": ("semantic", _semantic_by_cosine_alone, "that should stay"),
    "13-grams for every split": ("decontaminate", _decontaminate_with_13_grams, "kept {'leaked'"),
    "format checked, truth not": ("problem", _format_only, "said good, expected wrong"),
    "a reason without its kind": ("problem", _reasons_without_a_kind, "must start with 'off format' or 'wrong'"),
    "a fresh seed every call": ("rebalance", _unseeded_rebalance, "a second call chose others"),
    "grouped by task": ("rebalance", _grouped_by_task, "changed the examples' order"),
}


@pytest.mark.parametrize("mistake", WRONG_STAGES)
def test_wrong_stages_fail(mistake, unseen):
    stage, function, fragment = WRONG_STAGES[mistake]
    check = getattr(check05, f"check_{stage}")
    RUNG.assert_fails(lambda: check(function) if stage == "normalise" else check(function, unseen), fragment)


def test_stages_that_call_their_references_are_refused():
    """Wrappers that call the course's stages, and (rebalance) the reference imported under the graded name."""
    notebook = RUNG.solution_with(
        exact_dedup="from shared.curation import dirty, stages\n\n\n"
                    "def normalise(text):\n    return dirty.normalise(text)\n\n\n"
                    "def exact_dedup(examples):\n    return stages.exact_dedup(examples)\n",
        minhash_dedup="from shared.curation import stages\n\n\n"
                      "def minhash_dedup(examples, threshold=0.8, num_perm=128):\n"
                      "    return stages.minhash_dedup(examples, threshold, num_perm)\n",
        problem="from shared.curation import stages\n\n\n"
                "def problem(example, world):\n    return stages.problem(example, world)\n",
        rebalance="import random\nfrom shared.curation.stages import rebalance\n")
    report, printed = RUNG.graded_only(notebook)
    for name, reference in (("normalise", "dirty.normalise"), ("exact_dedup", "stages.exact_dedup"),
                            ("minhash_dedup", "stages.minhash_dedup"), ("problem", "stages.problem"),
                            ("rebalance", "stages.rebalance")):
        criterion = by_name(report, name)
        assert criterion.status == checking.FAIL, printed
        assert f"calls shared.curation.{reference}, which is not allowed here" in criterion.detail, criterion.detail
    for name in ("embed gives", "semantic_dedup", "decontaminate"):   # the solution's own, untouched
        assert by_name(report, name).status == checking.PASS, printed
    assert "Traceback" not in printed


def test_the_checkers_set_is_not_the_notebooks(unseen):
    notebook = dirty.dirty_instructions(seed=0)
    assert [row["prompt"] for row in unseen.labelled] != [row["prompt"] for row in notebook]
    assert collections.Counter(row["flaw"] for row in unseen.labelled) == collections.Counter(
        row["flaw"] for row in notebook)   # another draw, the same flaws in the same numbers
    assert np.asarray(unseen.embeddings).shape == (len(unseen.semantic_rows), 384)
