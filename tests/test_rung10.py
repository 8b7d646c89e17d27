"""Rung 10's checker: passes on the solution, fails on the untouched exercise, and turns every kind of bad
input and every cheat it knows into a clear ✗ (never a traceback)."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch

from rung_harness import RungUnderTest, by_name, edit_json
from shared import checking
from shared.training import forgetting

RUNG = RungUnderTest("10")
check10 = RUNG.check
solution_run = RUNG.solution_run_fixture()
outputs_copy = RUNG.outputs_copy_fixture()


def metrics_of(outputs_root):
    return json.loads((outputs_root / "10-forgetting" / "metrics.json").read_text())


def test_checker_passes_on_the_solution(solution_run):
    report, printed, _ = solution_run
    assert report.passed, printed
    assert all(c.status == checking.PASS for c in report.criteria if "written answer" not in c.name), printed
    assert by_name(report, "the remedy you chose").status == checking.REVIEW   # flagged, never auto-passed
    assert by_name(report, "which old task").status == checking.REVIEW


def test_the_lessons_claims_hold_in_the_solutions_run(solution_run):
    """What the lesson says, from the solution's own run: the unmitigated fine-tune learns A and loses much of B,
    arithmetic most; replay keeps more B the more it replays, and at 0.75 brings arithmetic back; EWC at its
    larger strength keeps closed QA but not arithmetic; LoRA learns less A at lower rank."""
    metrics = metrics_of(solution_run[2])
    start, plain = metrics["curve"][0], metrics["curve"][-1]
    assert start["A"] <= 0.05 and plain["A"] >= 0.8, (start, plain)
    assert start["B"] - plain["B"] >= 0.25, (start, plain)
    assert plain["arithmetic"] == min(plain[t] for t in ("closed_qa", "extraction", "arithmetic", "fact_recall"))
    sweep = metrics["sweep"]
    replay = {p["strength"]: p for p in sweep["replay"]}
    assert replay[0.1]["B"] < replay[0.25]["B"] < replay[0.75]["B"], replay
    assert replay[0.75]["arithmetic"] >= plain["arithmetic"] + 0.4, replay
    ewc = {p["strength"]: p for p in sweep["EWC"]}
    assert ewc[1e7]["closed_qa"] >= plain["closed_qa"] + 0.2 and ewc[1e7]["arithmetic"] <= 0.4, ewc
    lora = {p["strength"]: p for p in sweep["LoRA"]}
    assert lora[2]["A"] < lora[32]["A"], lora
    assert metrics["recovered"] >= 0.6 and metrics["remedy"] == "replay", metrics["recovered"]


def test_checker_fails_on_the_untouched_exercise(tmp_path):
    """In an empty outputs folder (no earlier rung's model in it): a stub stands in the way, so nothing trains."""
    RUNG.assert_exercise_fails(graded=("replay_mixture", "fisher_diagonal", "ewc_penalty"),
                               unmet=("name the three models", "reload", "checker's own run", "forgot the old",
                                      "wins back",
                                      "new two-step problems", "saved figures agree"),
                               outputs_root=tmp_path, answers=2)


# -- what the run saved ----------------------------------------------------------------------------------
def _edit(outputs, change):
    edit_json(outputs / "10-forgetting" / "metrics.json", change)
    report, printed = RUNG.verify(outputs)
    assert not report.passed and "Traceback" not in printed
    return report, printed


def _point_mitigated_at(metrics, role_or_run):
    """The remedy's model replaced by another one the run saved (a role's model, or a sweep run's folder)."""
    models = metrics["models"]
    run = models["unmitigated"]["folder"].replace("unmitigated", role_or_run)
    if role_or_run in models:
        models["mitigated"] = dict(models[role_or_run])
    elif role_or_run.startswith("LoRA"):   # an adapter, on the SFT model
        models["mitigated"] = {**models["start"], "adapter": run}
    else:
        models["mitigated"] = {**models["unmitigated"], "folder": run}


def test_the_sft_model_as_the_remedy_keeps_b_but_not_a(outputs_copy):
    """Submitting the model from before the fine-tune "recovers" all of B and none of A."""
    report, printed = _edit(outputs_copy, lambda m: _point_mitigated_at(m, "start"))
    assert by_name(report, "name the three models").status == checking.FAIL and "three different" in printed


def test_an_unmitigated_run_of_another_recipe_is_refused(outputs_copy):
    """A "no remedy" run that forgot less (here the sweep's replay at 0.1) would move the bar: the checker's own
    run of the profile's recipe disagrees with it."""
    def swap(metrics):
        unmitigated = metrics["models"]["unmitigated"]
        unmitigated["folder"] = unmitigated["folder"].replace("unmitigated", "replay-0.1")
    report, printed = _edit(outputs_copy, swap)
    criterion = by_name(report, "checker's own run")
    assert criterion.status == checking.FAIL and "not the profile's unmitigated fine-tune" in criterion.detail, printed


def test_a_weak_remedy_falls_short_of_the_bar(outputs_copy):
    report, printed = _edit(outputs_copy, lambda m: _point_mitigated_at(m, "EWC-1e+06"))
    criterion = by_name(report, "wins back")
    assert criterion.status == checking.FAIL and "needed 50% won back" in criterion.detail, printed


def test_a_remedy_that_learned_little_of_a_fails(outputs_copy):
    report, printed = _edit(outputs_copy, lambda m: _point_mitigated_at(m, "LoRA-2"))
    criterion = by_name(report, "wins back")
    assert criterion.status == checking.FAIL, printed
    assert "needed 50% won back; and A is" in criterion.detail and "at most 5 allowed" in criterion.detail, (
        criterion.detail)   # both shortfalls said, not only the first


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["final"]["mitigated"].update(B=0.99), "mitigated model's B"),
    (lambda m: m["final"]["unmitigated"].update(A=0.2), "unmitigated model's A"),
])
def test_hand_edited_figures_disagree_with_the_models(outputs_copy, change, fragment):
    report, printed = _edit(outputs_copy, change)
    criterion = by_name(report, "saved figures agree")
    assert criterion.status == checking.FAIL and fragment in criterion.detail, printed


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["models"]["mitigated"].update(folder="/tmp/elsewhere/model"), "only models this run trained"),
    (lambda m: m["models"]["unmitigated"].update(folder="../../x"), "only models this run trained"),
    (lambda m: m["models"].pop("start"), "must name the start"),
    (lambda m: m["final"]["mitigated"].update(B=float("nan")), "not a number between 0 and 1"),
    (lambda m: m.update(remedy="dropout"), "remedy is 'dropout'"),
    (lambda m: _point_mitigated_at(m, "unmitigated"), "three different models"),
])
def test_a_broken_or_borrowed_run_fails_clearly(outputs_copy, change, fragment):
    report, printed = _edit(outputs_copy, change)
    criterion = by_name(report, "name the three models")
    assert criterion.status == checking.FAIL and fragment in criterion.detail, printed
    assert by_name(report, "reload").status == checking.FAIL


def test_a_missing_model_fails_without_a_traceback(outputs_copy):
    shutil.rmtree(outputs_copy / metrics_of(outputs_copy)["models"]["mitigated"]["folder"])
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "reload").status == checking.FAIL and "does not load" in printed, printed
    assert "Traceback" not in printed


# -- the graded functions, on the checker's hidden cases -------------------------------------------------------
def test_the_hidden_cases_pass_the_references():
    assert "4 unseen mixtures" in check10.check_replay(forgetting.replay_mixture)
    assert "unseen model" in check10.check_fisher(forgetting.fisher_diagonal)
    assert "its gradient to every weight" in check10.check_penalty(forgetting.ewc_penalty)


def _with_replacement(new, old, fraction, seed=0):
    rng = random.Random(seed)
    mixture = list(new) + rng.choices(list(old), k=round(fraction * len(new)))
    rng.shuffle(mixture)
    return mixture


def _not_shuffled(new, old, fraction, seed=0):
    return list(new) + random.Random(seed).sample(list(old), round(fraction * len(new)))


def _share_of_old(new, old, fraction, seed=0):
    rng = random.Random(seed)
    mixture = list(new) + rng.sample(list(old), min(len(old), round(fraction * len(old))))
    rng.shuffle(mixture)
    return mixture


def _no_checks(new, old, fraction, seed=0):
    rng = random.Random(seed)
    mixture = list(new) + rng.sample(list(old), max(0, min(len(old), round(fraction * len(new)))))
    rng.shuffle(mixture)
    return mixture


WRONG_MIXTURES = {
    "old examples drawn with replacement": (_with_replacement, "drawn twice"),
    "the new examples first, unshuffled": (_not_shuffled, "not shuffled"),
    "the fraction taken of the old examples": (_share_of_old, "old ones, expected"),
    "impossible fractions accepted": (_no_checks, "raise ValueError"),
}


@pytest.mark.parametrize("mistake", WRONG_MIXTURES)
def test_wrong_mixtures_fail(mistake):
    function, fragment = WRONG_MIXTURES[mistake]
    RUNG.assert_fails(lambda: check10.check_replay(function), fragment)


def _fisher_of_the_mean(model, tokenizer, examples):
    """The square of the mean gradient, not the mean of the squares."""
    weights = {n: p for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    (sum(forgetting.answer_loss(model, tokenizer, e) for e in examples) / len(examples)).backward()
    return {n: p.grad.detach() ** 2 for n, p in weights.items()}


def _fisher_summed(model, tokenizer, examples):
    return {n: f * len(examples) for n, f in forgetting.fisher_diagonal(model, tokenizer, examples).items()}


def _fisher_of_every_parameter(model, tokenizer, examples):
    fisher = forgetting.fisher_diagonal(model, tokenizer, examples)
    return {n: fisher.get(n, torch.zeros_like(p)) for n, p in model.named_parameters()}


WRONG_FISHERS = {
    "the squared mean gradient": (_fisher_of_the_mean, "differs from the course's Fisher"),
    "summed, not averaged": (_fisher_summed, "differs from the course's Fisher"),
    "frozen parameters included": (_fisher_of_every_parameter, "not trainable or unknown"),
}


@pytest.mark.parametrize("mistake", WRONG_FISHERS)
def test_wrong_fishers_fail(mistake):
    function, fragment = WRONG_FISHERS[mistake]
    RUNG.assert_fails(lambda: check10.check_fisher(function), fragment)


def _penalty_as_a_number(model, fisher, anchor):
    return torch.tensor(float(forgetting.ewc_penalty(model, fisher, anchor)))


def _penalty_of_every_parameter(model, fisher, anchor):
    return sum(((fisher.get(n, torch.ones_like(p)) * (p - anchor[n]) ** 2).sum() for n, p in model.named_parameters()),
               torch.zeros(()))


def _penalty_without_the_square(model, fisher, anchor):
    return sum((fisher[n] * (p - anchor[n]).abs()).sum() for n, p in model.named_parameters() if n in fisher)


WRONG_PENALTIES = {
    "a number, detached from the weights": (_penalty_as_a_number, "carries no gradient"),
    "every parameter, not only the Fisher's": (_penalty_of_every_parameter, "only the parameters named in fisher"),
    "the distance not squared": (_penalty_without_the_square, "expected"),
}


@pytest.mark.parametrize("mistake", WRONG_PENALTIES)
def test_wrong_penalties_fail(mistake):
    function, fragment = WRONG_PENALTIES[mistake]
    RUNG.assert_fails(lambda: check10.check_penalty(function), fragment)


def test_graded_functions_that_call_their_references_are_refused():
    """A wrapper that calls the reference, and (replay_mixture) no def at all: the reference imported under the
    graded name."""
    notebook = RUNG.solution_with(
        replay_mixture="import random\nfrom shared.training.forgetting import replay_mixture\n",
        fisher_diagonal="from shared.training import forgetting\n\n\n"
                        "def fisher_diagonal(model, tokenizer, examples):\n"
                        "    return forgetting.fisher_diagonal(model, tokenizer, examples)\n\n\n"
                        "def ewc_penalty(model, fisher, anchor):\n"
                        "    return forgetting.ewc_penalty(model, fisher, anchor)\n")
    report, printed = RUNG.graded_only(notebook)
    for name in ("replay_mixture", "fisher_diagonal", "ewc_penalty"):
        criterion = by_name(report, name)
        assert criterion.status == checking.FAIL, printed
        assert f"forgetting.{name}, which is not allowed here" in criterion.detail, criterion.detail
    assert "Traceback" not in printed

