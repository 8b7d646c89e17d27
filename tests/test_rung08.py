"""Rung 08's checker: passes on the solution, fails on the untouched exercise, and turns every kind of bad
input and every cheat it knows into a clear ✗ (never a traceback)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from rung_harness import RungUnderTest, by_name, config_writer, edit_json, tiny_profile
from shared import checking
from shared.evaluation.generation import chat_ids, chat_prompt_ids

RUNG = RungUnderTest("08")
check08 = RUNG.check
solution_run = RUNG.solution_run_fixture()
outputs_copy = RUNG.outputs_copy_fixture()


def test_checker_passes_on_the_solution(solution_run):
    report, printed, _ = solution_run
    assert report.passed, printed
    assert all(c.status == checking.PASS for c in report.criteria if "written answer" not in c.name), printed
    assert by_name(report, "why RLHF needs").status == checking.REVIEW      # flagged, never auto-passed
    assert by_name(report, "what best-of-n showed").status == checking.REVIEW


def metrics_of(outputs_root):
    return json.loads((outputs_root / "08-reward-modelling" / "metrics.json").read_text())


def test_the_lessons_claims_hold_in_the_solutions_run(solution_run):
    """What the lesson says, from the solution's own run: the reward model ranks inventions and wrongful
    abstentions right and near misses near chance; best-of-n raises the reward model's score while the judge's
    falls (the samples hold the right answer), and so does GRPO against it; the SFT model never samples the
    abstention; the DPO model's own likelihood ranks every kind right, the SFT model's ranks almost no invention
    right."""
    metrics = metrics_of(solution_run[2])
    heldout = metrics["pairwise_accuracy"]["held-out"]
    assert heldout["invents"] >= 0.95 and heldout["abstains_on_recorded"] >= 0.95, heldout
    assert 0.3 <= heldout["near_miss"] <= 0.7, heldout
    curve = metrics["best_of_n"]
    assert curve["proxy"][-1] > curve["proxy"][0] + 0.2, curve["proxy"]
    assert curve["judge"]["recorded"][-1] < curve["judge"]["recorded"][0] - 0.15, curve["judge"]
    assert curve["oracle"]["recorded"][-1] >= 0.95 and curve["judge"]["unrecorded"] == [0.0] * 5, curve
    trained = metrics["policy_against_reward_model"]   # GRPO against the reward model: the same parting, by training
    assert trained[0]["step"] == 0 and trained[-1]["step"] == 80, trained
    assert max(p["proxy"] for p in trained) > trained[0]["proxy"] + 0.1 and trained[-1]["proxy"] > trained[0]["proxy"]
    assert trained[-1]["recorded"] < trained[0]["recorded"] - 0.15 and trained[-1]["unrecorded"] <= 0.05, trained
    scorers = metrics["scorers"]
    assert min(scorers["log pi, DPO model"].values()) >= 0.95, scorers
    assert scorers["log pi, SFT model"]["invents"] <= 0.3 and scorers["log pi, SFT model"]["near_miss"] >= 0.95
    assert scorers["DPO's implicit reward"]["near_miss"] > heldout["near_miss"], scorers


def test_checker_fails_on_the_untouched_exercise(tmp_path):
    """In an empty outputs folder (no earlier rung's model in it): a stub stands in the way, so nothing trains."""
    RUNG.assert_exercise_fails(graded=("bradley_terry_loss", "reward_config", "reward_scores"),
                               unmet=("valid numbers", "reloads", "ranks at least", "new pairs", "best-of-n",
                                      "implicit reward", "saved figures agree"),
                               outputs_root=tmp_path, answers=2)


# -- what the run saved ----------------------------------------------------------------------------------
def test_a_missing_reward_model(outputs_copy):
    shutil.rmtree(outputs_copy / "08-reward-modelling" / "reward-model")
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "reloads").status == checking.FAIL and "no saved reward model" in printed
    assert by_name(report, "ranks at least").status == checking.FAIL
    assert not report.passed and "Traceback" not in printed


def test_the_sft_model_saved_as_the_reward_model_is_refused(outputs_copy):
    """A language model in the reward model's place: transformers gives it a fresh two-number head."""
    folder = outputs_copy / "08-reward-modelling" / "reward-model"
    shutil.rmtree(folder)
    shutil.copytree(outputs_copy / metrics_of(outputs_copy)["sft_model"], folder)
    report, printed = RUNG.verify(outputs_copy)
    criterion = by_name(report, "reloads")
    assert criterion.status == checking.FAIL and "a reward model gives one" in criterion.detail, printed


@pytest.mark.parametrize("key", ["sft_model", "dpo_model"])
def test_a_model_outside_the_outputs_folder_is_refused(outputs_copy, tmp_path, key):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(outputs_copy / metrics_of(outputs_copy)[key], elsewhere)
    edit_json(outputs_copy / "08-reward-modelling" / "metrics.json", lambda m: m.update({key: str(elsewhere)}))
    report, printed = RUNG.verify(outputs_copy)
    criterion = by_name(report, "reloads")
    assert criterion.status == checking.FAIL and "uses only models this run trained" in criterion.detail, printed


def test_metrics_without_the_dpo_model_fail_clearly(outputs_copy):
    edit_json(outputs_copy / "08-reward-modelling" / "metrics.json", lambda m: m.pop("dpo_model"))
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "valid numbers").status == checking.FAIL and "does not name the dpo model" in printed
    assert by_name(report, "reloads").status == checking.FAIL and "Traceback" not in printed


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["pairwise_accuracy"]["held-out"].update(all=math.nan), "not a number between 0 and 1"),
    (lambda m: m["best_of_n"].update(n=[1, 2, 4]), "n = 1 ... 16"),
    (lambda m: m.update(beta=-0.1), "not a positive number"),
])
def test_broken_metrics_fail_clearly(outputs_copy, change, fragment):
    edit_json(outputs_copy / "08-reward-modelling" / "metrics.json", change)
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "valid numbers").status == checking.FAIL and fragment in printed, printed
    assert "Traceback" not in printed


def test_a_hand_edited_pairwise_figure_disagrees_with_the_model(outputs_copy):
    edit_json(outputs_copy / "08-reward-modelling" / "metrics.json",
              lambda m: m["pairwise_accuracy"]["held-out"].update(near_miss=0.97))
    report, printed = RUNG.verify(outputs_copy)
    agree = by_name(report, "saved figures agree")
    assert agree.status == checking.FAIL and "near miss: 0.97" in agree.detail, printed


def test_a_hand_edited_best_of_n_figure_is_sampled_again(outputs_copy):
    """The lesson's claim typed in: best-of-16 as good as best-of-1."""
    def flatten(metrics):
        metrics["best_of_n"]["judge"]["recorded"] = [metrics["best_of_n"]["judge"]["recorded"][0]] * 5

    edit_json(outputs_copy / "08-reward-modelling" / "metrics.json", flatten)
    report, printed = RUNG.verify(outputs_copy)
    criterion = by_name(report, "best-of-n")
    assert criterion.status == checking.FAIL and "sampled again with seed" in criterion.detail, printed


def test_a_hand_edited_implicit_reward_figure_is_recomputed(outputs_copy):
    edit_json(outputs_copy / "08-reward-modelling" / "metrics.json",
              lambda m: m["implicit_reward_accuracy"].update(all=1.0))
    report, printed = RUNG.verify(outputs_copy)
    criterion = by_name(report, "implicit reward")
    assert criterion.status == checking.FAIL and "recomputed" in criterion.detail, printed


def test_a_reward_model_far_better_on_the_heldout_pairs_than_on_new_ones_fails():
    """The figures of a reward model trained 8 epochs on the held-out pairs (measured: it memorised their answers)
    fail; the solution's own (87.8% held-out, 89.2% new) pass."""
    memorised = {"heldout": {"all": 0.9778}, "fresh": {"all": 0.9278}}
    RUNG.assert_fails(lambda: check08.check_fresh(memorised), "trained on the held-out pairs")
    assert "89.2% of new pairs" in check08.check_fresh({"heldout": {"all": 0.8778}, "fresh": {"all": 0.8917}})


def test_a_reward_model_below_the_bar_fails():
    measured = {"heldout": {"all": 0.75, "invents": 1.0, "near_miss": 0.5, "abstains_on_recorded": 0.5}}
    RUNG.assert_fails(lambda: check08.check_pairwise(measured, check08.THRESHOLDS["tiny"]), "75.0%", "needed 85%")


# -- the graded functions ------------------------------------------------------------------------------
def _solution_functions():
    import nbformat

    from shared.notebooks.graded import extract_functions

    return extract_functions(nbformat.read(RUNG.solution, as_version=4), ["bradley_terry_loss", "reward_scores"])


def test_the_hidden_cases_pass_the_solutions_functions():
    functions = _solution_functions()
    assert "TRL's loss on 5 pairs" in check08.check_bradley_terry_loss(functions["bradley_terry_loss"])
    assert "90 unseen answers" in check08.check_reward_scores(functions["reward_scores"])


def _solution_loss(*args):
    return _solution_functions()["bradley_terry_loss"](*args)


WRONG_LOSSES = {
    "log of sigmoid, which underflows": (
        lambda c, r, m=None: -torch.log(torch.sigmoid(c - r - (0 if m is None else m))), "non-finite"),
    "the margin added, not taken away": (lambda c, r, m=None: _solution_loss(c, r, None if m is None else -m),
                                         "with a margin"),
    "the margin ignored": (lambda c, r, m=None: _solution_loss(c, r), "with a margin"),
    "chosen and rejected swapped": (lambda c, r, m=None: _solution_loss(r, c, m), "off by"),
    "the mean, not one loss per pair": (lambda c, r, m=None: _solution_loss(c, r, m).mean(), "one loss per pair"),
    "a hinge instead of a log-likelihood": (
        lambda c, r, m=None: torch.clamp(1 - (c - r - (0 if m is None else m)), min=0), "off by"),
}


@pytest.mark.parametrize("mistake", WRONG_LOSSES)
def test_wrong_losses_fail(mistake):
    function, fragment = WRONG_LOSSES[mistake]
    RUNG.assert_fails(lambda: check08.check_bradley_terry_loss(function), fragment)


def _scores_with(conversation=None, pad_left=False, mask=True, shape=None):
    """reward_scores written with one slip: another way of writing the conversation, left padding with no
    attention mask (the padding is read as text), or the model's (batch, 1) output returned as it is."""
    def default(tokenizer, prompt, answer):
        return chat_ids(tokenizer, [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])

    def reward_scores(model, tokenizer, prompts, answers):
        rows = [(conversation or default)(tokenizer, p, a) for p, a in zip(prompts, answers)]
        width = max(map(len, rows))
        pad = tokenizer.pad_token_id
        padded = [[pad] * (width - len(r)) + r if pad_left else r + [pad] * (width - len(r)) for r in rows]
        ids = torch.tensor(padded)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=(ids != pad).long() if mask else None).logits
        return logits if shape == "as is" else logits[:, 0]

    return reward_scores


WRONG_SCORES = {
    "the prompt and answer as plain text": (
        _scores_with(conversation=lambda tok, p, a: tok(p + " " + a)["input_ids"]), "off by"),
    "the answer after the generation prompt, untemplated": (
        _scores_with(conversation=lambda tok, p, a: chat_prompt_ids(tok, p) + tok(a)["input_ids"]), "off by"),
    "padded on the left, no attention mask": (_scores_with(pad_left=True, mask=False), "off by"),
    "the (batch, 1) logits returned as they are": (_scores_with(shape="as is"), "one score per answer"),
}


@pytest.mark.parametrize("mistake", WRONG_SCORES)
def test_wrong_reward_scores_fail(mistake):
    function, fragment = WRONG_SCORES[mistake]
    RUNG.assert_fails(lambda: check08.check_reward_scores(function), fragment)


# -- reward_config ----------------------------------------------------------------------------------------
def _reward_config(drop=(), **overrides):
    from trl import RewardConfig

    return config_writer(RewardConfig, "reward", drop, **overrides)


def test_the_config_built_like_the_solution_passes():
    criterion, printed = RUNG.judge(lambda: check08.check_reward_config(_reward_config(), tiny_profile()))
    assert criterion.status == checking.PASS, printed


WRONG_CONFIGS = {
    "TRL's default learning rate": (_reward_config(drop=["learning_rate"]), "learning_rate is 0.0001"),
    "no centring term": (_reward_config(center_rewards_coefficient=None), "center_rewards_coefficient is None"),
    "the default seed": (_reward_config(drop=["seed"]), "seed"),
    "checkpoints saved on the way": (_reward_config(save_strategy="epoch"), "save_strategy is 'epoch'"),
    "TRL's default sequence length": (_reward_config(drop=["max_length"]), "max_length is 1024"),
}


@pytest.mark.parametrize("mistake", WRONG_CONFIGS)
def test_a_wrong_config_fails(mistake):
    reward_config, fragment = WRONG_CONFIGS[mistake]
    RUNG.assert_fails(lambda: check08.check_reward_config(reward_config, tiny_profile()), fragment)


@pytest.mark.parametrize("name,reference,body", [
    ("bradley_terry_loss", "shared.training.preference.bradley_terry_loss",
     "def bradley_terry_loss(chosen_rewards, rejected_rewards, margin=None):\n"
     "    return _ref(chosen_rewards, rejected_rewards, margin)\n"),
    ("reward_scores", "shared.evaluation.rewards.reward_scores",
     "def reward_scores(model, tokenizer, prompts, answers):\n"
     "    return _ref(model, tokenizer, prompts, answers)\n"),
])
def test_a_graded_function_that_calls_its_reference_is_refused(name, reference, body):
    RUNG.assert_reference_refused(name, reference, body)
