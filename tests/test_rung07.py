"""Rung 07's checker: passes on the solution, fails on the untouched exercise, and turns every kind of bad
input and every cheat it knows into a clear ✗ (never a traceback)."""

from __future__ import annotations

import json
import math
import re
import shutil

import pytest
import torch

from rung_harness import RungUnderTest, by_name, config_writer, edit_json, tiny_profile
from shared import checking

RUNG = RungUnderTest("07")
check07 = RUNG.check
solution_run = RUNG.solution_run_fixture()
outputs_copy = RUNG.outputs_copy_fixture()


def test_checker_passes_on_the_solution(solution_run):
    report, printed, _ = solution_run
    assert report.passed, printed
    assert all(c.status == checking.PASS for c in report.criteria if "written answer" not in c.name), printed
    assert by_name(report, "what GRPO does without").status == checking.REVIEW   # flagged, never auto-passed
    assert by_name(report, "pass@k curves say").status == checking.REVIEW


def metrics_of(outputs_root):
    return json.loads((outputs_root / "07-grpo" / "metrics.json").read_text())


def test_the_lessons_claims_hold_in_the_solutions_run(solution_run):
    """What the lesson says, from the solution's own run: rung 02's model solves no two-step problem; the start
    has room (pass@16 far above pass@1); GRPO raises greedy and sampled accuracy; both runs are tracked from the
    start, moving away from it step by step, and compared at step 50 (where the leashed one stops); a reward
    paid per right step is gamed (its reward and the answers' length up, held-out accuracy down); PPO holds
    more than twice what GRPO does."""
    metrics = metrics_of(solution_run[2])
    accuracy, curves = metrics["heldout_accuracy"], metrics["pass_at_k"]
    assert accuracy["sft"] <= 0.05 and 0.10 <= accuracy["start"] <= 0.60, accuracy
    assert curves["start"]["16"] >= 3 * curves["start"]["1"], curves["start"]
    assert accuracy["after"] - accuracy["start"] >= 0.25 and curves["after"]["1"] > curves["start"]["1"] + 0.2
    for label, points in metrics["heldout_by_step"].items():
        first, *later = points
        assert first["step"] == 0 and first["accuracy"] == accuracy["start"] and abs(first["kl"]) < 1e-6, (label, first)
        assert later and all(p["kl"] > 0 for p in later), (label, points)
    assert metrics["heldout_by_step"]["beta = 0"][-1]["accuracy"] == accuracy["after"]
    leashed, free = metrics["heldout_by_step"]["beta = 0.04"], metrics["heldout_by_step"]["beta = 0"]
    assert leashed[-1]["step"] == 50 and 50 in [p["step"] for p in free], (leashed, free)  # compared step for step
    gamed = metrics["gamed_reward"]   # section 9: the reward climbs, the answers pad out, held-out accuracy falls
    first, last = gamed["logged"][0], gamed["logged"][-1]
    assert last["reward"] >= first["reward"] + 0.25, gamed["logged"]
    assert last["completions/mean_length"] >= first["completions/mean_length"] + 5, gamed["logged"]
    assert gamed["heldout"][0]["accuracy"] == accuracy["start"], gamed["heldout"]
    assert gamed["heldout"][-1]["accuracy"] <= accuracy["start"] / 2, gamed["heldout"]
    memory = metrics["memory_mb"]
    assert memory["PPO"] > 2 * memory["GRPO, beta = 0"] and memory["GRPO, beta > 0"] > memory["GRPO, beta = 0"]


def test_checker_fails_on_the_untouched_exercise(tmp_path):
    """In an empty outputs folder (no earlier rung's model in it): a stub stands in the way, so nothing trains."""
    RUNG.assert_exercise_fails(graded=("group_advantages", "grpo_loss", "correctness_reward", "grpo_config"),
                               unmet=("valid numbers", "reload", "starting policy is", "gains at least",
                                      "new problems", "pass@k, sampled", "saved figures agree"),
                               outputs_root=tmp_path, answers=2)


# -- what the run saved ----------------------------------------------------------------------------------
def test_a_missing_policy(outputs_copy):
    shutil.rmtree(outputs_copy / "07-grpo" / "model")
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "reload").status == checking.FAIL and "no saved model folder" in printed
    assert by_name(report, "gains at least").status == checking.FAIL
    assert not report.passed and "Traceback" not in printed


def test_the_starting_policy_saved_as_the_grpo_policy_gains_nothing(outputs_copy):
    folder = outputs_copy / "07-grpo" / "model"
    shutil.rmtree(folder)
    shutil.copytree(outputs_copy / "07-grpo" / "start-model", folder)
    report, printed = RUNG.verify(outputs_copy)
    criterion = by_name(report, "gains at least")
    assert criterion.status == checking.FAIL and "(+0 points)" in criterion.detail, printed


def test_the_sft_model_named_as_the_start_is_refused(outputs_copy):
    """A start that solves nothing makes any policy's gain look large: the start must be the primed one."""
    edit_json(outputs_copy / "07-grpo" / "metrics.json", lambda m: m.update(start_model=m["sft_model"]))
    report, printed = RUNG.verify(outputs_copy)
    criterion = by_name(report, "starting policy is")
    assert criterion.status == checking.FAIL and "no room to learn from" in criterion.detail, printed


def test_a_start_outside_the_outputs_folder_is_refused(outputs_copy, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(outputs_copy / "07-grpo" / "start-model", elsewhere)
    edit_json(outputs_copy / "07-grpo" / "metrics.json", lambda m: m.update(start_model=str(elsewhere)))
    report, printed = RUNG.verify(outputs_copy)
    criterion = by_name(report, "reload")
    assert criterion.status == checking.FAIL and "uses only a model this run trained" in criterion.detail, printed


def test_metrics_without_the_start_fail_clearly(outputs_copy):
    edit_json(outputs_copy / "07-grpo" / "metrics.json", lambda m: m.pop("start_model"))
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "valid numbers").status == checking.FAIL and "does not name the starting" in printed
    assert by_name(report, "reload").status == checking.FAIL and "Traceback" not in printed


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["heldout_accuracy"].update(after=math.nan), "not a number between 0 and 1"),
    (lambda m: m["pass_at_k"].update(n=8), "n = 16"),
    (lambda m: m["pass_at_k"]["after"].pop("16"), "pass@1, 2, 4, 8 and 16"),
    (lambda m: m["heldout_accuracy"].update(start="28%"), "not a number between 0 and 1"),
])
def test_broken_metrics_fail_clearly(outputs_copy, change, fragment):
    edit_json(outputs_copy / "07-grpo" / "metrics.json", change)
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "valid numbers").status == checking.FAIL and fragment in printed, printed
    assert "Traceback" not in printed


def test_a_hand_edited_accuracy_disagrees_with_the_model(outputs_copy):
    edit_json(outputs_copy / "07-grpo" / "metrics.json", lambda m: m["heldout_accuracy"].update(after=0.99))
    report, printed = RUNG.verify(outputs_copy)
    agree = by_name(report, "saved figures agree")
    assert agree.status == checking.FAIL and "heldout_accuracy['after'] 99.0%" in agree.detail, printed


def test_a_hand_edited_pass_at_k_is_sampled_again(outputs_copy):
    edit_json(outputs_copy / "07-grpo" / "metrics.json", lambda m: m["pass_at_k"]["start"].update({"16": 0.2}))
    report, printed = RUNG.verify(outputs_copy)
    criterion = by_name(report, "pass@k, sampled")
    assert criterion.status == checking.FAIL and "pass@16 of the start policy is 20.0%" in criterion.detail, printed


def test_a_policy_far_better_on_the_heldout_problems_than_on_new_ones_fails():
    RUNG.assert_fails(lambda: check07.check_fresh({"after": 0.95, "fresh": 0.70}), "learned by heart")
    assert "new problems 70%" in check07.check_fresh({"after": 0.72, "fresh": 0.70})


def test_a_gain_below_the_bar_fails():
    RUNG.assert_fails(lambda: check07.check_gain({"start": 0.3, "after": 0.5}, check07.THRESHOLDS["tiny"]),
                      "30% -> 50% (+20 points)", "needed +25")


def test_a_start_with_nothing_left_to_gain_fails():
    RUNG.assert_fails(lambda: check07.check_start({"start": 0.85}, check07.THRESHOLDS["tiny"]),
                      "little left to gain")


# -- the graded functions ------------------------------------------------------------------------------
def _solution_functions():
    import nbformat

    from shared.notebooks.graded import extract_functions

    return extract_functions(nbformat.read(RUNG.solution, as_version=4),
                             ["group_advantages", "grpo_loss", "correctness_reward"])


def test_the_hidden_cases_pass_the_solutions_functions():
    functions = _solution_functions()
    assert "3 scalings" in check07.check_group_advantages(functions["group_advantages"])
    assert "TRL's GRPOTrainer on 4 batches" in check07.check_grpo_loss(functions["grpo_loss"])
    assert "14 unseen completions" in check07.check_correctness_reward(functions["correctness_reward"])


def _advantages(**slip):
    def group_advantages(rewards, num_generations, scale_rewards="group"):
        groups = rewards.reshape(-1, num_generations)
        centred = groups - (rewards.mean() if slip.get("batch_mean") else groups.mean(dim=1, keepdim=True))
        std = groups.std(dim=1, keepdim=True, unbiased=not slip.get("biased"))
        if slip.get("no_epsilon"):
            return (centred / std).reshape(-1)
        if scale_rewards == "none" and not slip.get("always_scaled"):
            return centred.reshape(-1)
        if scale_rewards == "batch" and not slip.get("always_scaled"):
            return (centred / (rewards.std() + 1e-4)).reshape(-1)
        return (centred / (std + 1e-4)).reshape(-1)

    return group_advantages


WRONG_ADVANTAGES = {
    "the batch's mean, not the group's": (_advantages(batch_mean=True), "off by"),
    "a biased standard deviation": (_advantages(biased=True), "off by"),
    "no 1e-4: equal rewards divide 0 by 0": (_advantages(no_epsilon=True), "off by"),
    "scale_rewards ignored": (_advantages(always_scaled=True), "scale_rewards='batch'"),
}


@pytest.mark.parametrize("mistake", WRONG_ADVANTAGES)
def test_wrong_advantages_fail(mistake):
    function, fragment = WRONG_ADVANTAGES[mistake]
    RUNG.assert_fails(lambda: check07.check_group_advantages(function), fragment)


def _loss_with(**slip):
    """grpo_loss written with one slip."""
    solution = _solution_functions()["grpo_loss"]

    def grpo_loss(logps, old_logps, advantages, mask, *, ref_logps=None, beta=0.0, epsilon=0.2, loss_type="dapo",
                  max_completion_length=None):
        if slip.get("every_type_as") and loss_type != "dr_grpo":
            loss_type = slip["every_type_as"]
        if slip.get("no_clip"):
            epsilon = 1e9
        if slip.get("no_bias_correction") and beta:
            surrogate = solution(logps, old_logps, advantages, mask, loss_type=loss_type, epsilon=epsilon,
                                 max_completion_length=max_completion_length)
            return surrogate + beta * _mean_k3(logps, ref_logps, mask, loss_type, max_completion_length)
        if slip.get("detached"):
            logps = logps.detach()
        if slip.get("no_clamp") and loss_type == "grpo" and not beta:
            ratio = torch.exp(logps - old_logps)
            per_token = -torch.min(ratio * advantages[:, None],
                                   torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantages[:, None])
            return ((per_token * mask).sum(-1) / mask.sum(-1)).mean()   # 0 / 0 where an answer has no tokens
        if slip.get("padding_counted"):
            mask = torch.ones_like(mask)
        if slip.get("no_max_length") and loss_type == "dr_grpo":
            max_completion_length = max_completion_length or 24
        return solution(logps, old_logps, advantages, mask, ref_logps=ref_logps, beta=beta, epsilon=epsilon,
                        loss_type=loss_type, max_completion_length=max_completion_length)

    return grpo_loss


def _mean_k3(logps, ref_logps, mask, loss_type, max_completion_length):
    """The k3 KL estimate averaged as `loss_type` averages, without the importance ratio TRL weights it by."""
    r = ref_logps - logps
    kl = (torch.exp(r) - r - 1) * mask
    if loss_type == "grpo":
        return (kl.sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    if loss_type == "dr_grpo":
        return kl.sum() / (mask.shape[0] * max_completion_length)
    return kl.sum() / mask.sum().clamp(min=1)


WRONG_LOSSES = {
    "no clipping": (_loss_with(no_clip=True), "epsilon=0.2): expected"),
    "the log-probabilities detached": (_loss_with(detached=True), "no gradient reaches logps"),
    "the KL term without the ratio": (_loss_with(no_bias_correction=True), "pass: look at the KL term"),
    "padding tokens counted": (_loss_with(padding_counted=True), "expected"),
    "every loss type averaged per answer": (_loss_with(every_type_as="grpo"), "look at how 'dapo' averages"),
    "dr_grpo guesses a length": (_loss_with(no_max_length=True), "must raise an error"),
    "an answer with no tokens divides 0 by 0": (_loss_with(no_clamp=True), "have no tokens (mask all 0)"),
}


@pytest.mark.parametrize("mistake", WRONG_LOSSES)
def test_wrong_losses_fail(mistake):
    function, fragment = WRONG_LOSSES[mistake]
    RUNG.assert_fails(lambda: check07.check_grpo_loss(function), fragment)


WRONG_REWARDS = {
    "strings only": (lambda completions, answer, **kw: [float(c.strip() == a) for c, a in zip(completions, answer)],
                     "AttributeError"),
    "the steps read out of any text": (
        lambda completions, answer, **kw: [float(re.findall(r"(\d+)\s+(plus|minus)\s+(\d+)\s+is\s+(\d+)", (
            c if isinstance(c, str) else c[-1]["content"]).lower()) == re.findall(
            r"(\d+)\s+(plus|minus)\s+(\d+)\s+is\s+(\d+)", a.lower())) for c, a in zip(completions, answer)],
        "expected 0.0, got 1.0"),
    "the result alone (the last number)": (
        lambda completions, answer, **kw: [float((c if isinstance(c, str) else c[-1]["content"]).split()[-1:]
                                                 == a.split()[-1:]) for c, a in zip(completions, answer)],
        "expected"),
    "not normalised": (
        lambda completions, answer, **kw: [float((c if isinstance(c, str) else c[-1]["content"]) == a)
                                           for c, a in zip(completions, answer)], "expected 1.0, got 0.0"),
    "stripped on the right only": (
        lambda completions, answer, **kw: [float(" ".join((c if isinstance(c, str) else c[-1]["content"]).lower()
                                                          .split()).rstrip(" .!?,;:'\"") == a.lower().rstrip("."))
                                           for c, a in zip(completions, answer)], "expected 1.0, got 0.0"),
    "booleans, not floats": (
        lambda completions, answer, **kw: [(c if isinstance(c, str) else c[-1]["content"]).strip() == a
                                           for c, a in zip(completions, answer)], "got True"),
}


@pytest.mark.parametrize("mistake", WRONG_REWARDS)
def test_wrong_rewards_fail(mistake):
    function, fragment = WRONG_REWARDS[mistake]
    RUNG.assert_fails(lambda: check07.check_correctness_reward(function), fragment)


# -- grpo_config ----------------------------------------------------------------------------------------
def _grpo_config(drop=(), **overrides):
    from trl import GRPOConfig

    return config_writer(GRPOConfig, "grpo", drop, **overrides)


def test_the_config_built_like_the_solution_passes():
    criterion, printed = RUNG.judge(lambda: check07.check_grpo_config(_grpo_config(), tiny_profile()))
    assert criterion.status == checking.PASS, printed


WRONG_CONFIGS = {
    "TRL's default group of 8": (_grpo_config(drop=["num_generations"]), "num_generations is 8"),
    "TRL's default learning rate": (_grpo_config(drop=["learning_rate"]), "learning_rate is 1e-06"),
    "the default seed": (_grpo_config(drop=["seed"]), "seed"),
    "checkpoints saved on the way": (_grpo_config(save_strategy="epoch"), "save_strategy is 'epoch'"),
    "TRL's default completion length": (_grpo_config(drop=["max_completion_length"]), "max_completion_length is 512"),
}


@pytest.mark.parametrize("mistake", WRONG_CONFIGS)
def test_a_wrong_config_fails(mistake):
    grpo_config, fragment = WRONG_CONFIGS[mistake]
    RUNG.assert_fails(lambda: check07.check_grpo_config(grpo_config, tiny_profile()), fragment)


@pytest.mark.parametrize("name,reference,body", [
    ("group_advantages", "shared.training.grpo.group_advantages",
     "def group_advantages(rewards, num_generations, scale_rewards='group'):\n"
     "    return _ref(rewards, num_generations, scale_rewards)\n"),
    ("grpo_loss", "shared.training.grpo.grpo_loss",
     "def grpo_loss(logps, old_logps, advantages, mask, **settings):\n"
     "    return _ref(logps, old_logps, advantages, mask, **settings)\n"),
    ("correctness_reward", "shared.evaluation.evals.task_reward",
     "def correctness_reward(completions, answer, **kwargs):\n"
     "    return _ref(None, completions, ['two_step'] * len(answer), answer)\n"),
])
def test_a_graded_function_that_calls_its_reference_is_refused(name, reference, body):
    RUNG.assert_reference_refused(name, reference, body)
