"""Rung 06's checker: passes on the solution, fails on the untouched exercise, and turns every kind of bad
input and every cheat it knows into a clear ✗ (never a traceback)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from rung_harness import RungUnderTest, by_name, config_writer, edit_json, tiny_profile
from shared import checking

RUNG = RungUnderTest("06")
check06 = RUNG.check
solution_run = RUNG.solution_run_fixture()
outputs_copy = RUNG.outputs_copy_fixture()


def test_checker_passes_on_the_solution(solution_run):
    report, printed, _ = solution_run
    assert report.passed, printed
    assert all(c.status == checking.PASS for c in report.criteria if "written answer" not in c.name), printed
    assert by_name(report, "derivation").status == checking.REVIEW      # flagged, never auto-passed
    assert by_name(report, "DPO alone did").status == checking.REVIEW


def test_the_solution_learns_to_abstain_and_dpo_alone_does_not(solution_run):
    """The lesson's claims, from the solution's own run: the SFT model never abstains; DPO alone does not learn
    to; preferred-FT and DPO with its SFT term do, and keep the recorded facts."""
    _, _, outputs_root = solution_run
    metrics = json.loads((outputs_root / "06-dpo" / "metrics.json").read_text())
    comparison = metrics["comparison"]
    assert metrics["baseline"]["abstains_when_unrecorded"] == 0.0 and metrics["baseline"]["right_when_recorded"] > 0.9
    assert comparison["DPO alone"]["abstains_when_unrecorded"] < 0.1
    for name in ("preferred-FT", "DPO + SFT term"):
        assert comparison[name]["abstains_when_unrecorded"] >= 0.85, comparison
    drop = metrics["baseline"]["right_when_recorded"] - comparison["DPO + SFT term"]["right_when_recorded"]
    assert drop <= 0.035, comparison   # the SFT term counted twice: 0.6-3.3 points (seed-0 SFT model, DPO seeds 0/1/2)
    assert len(metrics["beta_sweep"]) == 3 and all(point["kl"] > 0 for point in metrics["beta_sweep"])


def test_checker_fails_on_the_untouched_exercise(tmp_path):
    """In an empty outputs folder (no earlier rung's model in it): a stub stands in the way, so nothing trains."""
    RUNG.assert_exercise_fails(graded=("sequence_logprobs", "dpo_loss", "dpo_config"),
                               unmet=("valid numbers", "adapter goes back", "abstains on at least",
                                      "recorded facts", "beats the SFT model", "saved figures agree"),
                               outputs_root=tmp_path, answers=2)


# -- what the run saved ----------------------------------------------------------------------------------
def test_missing_adapter(outputs_copy):
    shutil.rmtree(outputs_copy / "06-dpo" / "model")
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "adapter goes back").status == checking.FAIL and "no saved adapter" in printed
    assert not report.passed and "Traceback" not in printed


def sft_folder(outputs_root):
    """Where the run's SFT model is: rung 02's, or the one the notebook trained (metrics.json says which)."""
    return outputs_root / json.loads((outputs_root / "06-dpo" / "metrics.json").read_text())["sft_model"]


def test_the_sft_model_saved_as_the_dpo_model_is_refused(outputs_copy):
    """A full model in the adapter's place: nothing DPO trained."""
    shutil.rmtree(outputs_copy / "06-dpo" / "model")
    shutil.copytree(sft_folder(outputs_copy), outputs_copy / "06-dpo" / "model")
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "adapter goes back").status == checking.FAIL, printed
    assert not report.passed


def test_an_untrained_adapter_is_refused(outputs_copy):
    from safetensors.torch import load_file, save_file

    weights = outputs_copy / "06-dpo" / "model" / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    save_file({name: torch.zeros_like(t) if "lora_B" in name else t for name, t in tensors.items()}, str(weights))
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "adapter goes back").status == checking.FAIL and "never trained" in printed


def test_a_model_trained_on_the_chosen_answers_alone_is_refused(outputs_copy):
    """Preferred-FT abstains and keeps the facts as well as DPO does: only what it did to the rejected answers
    tells it apart (the abstention on recorded questions, which it makes more likely)."""
    from shared.models import load_model, load_tokenizer
    from shared.training.lora import lora_config
    from shared.training.preference import preferred_ft_trainer
    from shared.world import data

    profile, folder = tiny_profile(), sft_folder(outputs_copy)
    tokenizer = load_tokenizer(folder)
    trainer = preferred_ft_trainer(load_model(folder, profile=profile), tokenizer, profile, "preferred_ft",
                                   outputs_copy / "scratch", data.load_task("abstention", "train"),
                                   peft_config=lora_config(r=16, alpha=32))
    trainer.train()
    shutil.rmtree(outputs_copy / "06-dpo" / "model")
    trainer.model.save_pretrained(str(outputs_copy / "06-dpo" / "model"))
    report, printed = RUNG.verify(outputs_copy)
    for passed in ("abstains on at least", "keeps the recorded facts", "beats the SFT model"):
        assert by_name(report, passed).status == checking.PASS, printed   # the judge cannot tell
    learnt = by_name(report, "learnt from the rejected answers")
    assert learnt.status == checking.FAIL and "preferred over abstaining on 0%" in learnt.detail, printed
    assert "more likely, as training on the chosen answers alone does" in learnt.detail


def test_an_sft_model_outside_the_outputs_folder_is_refused(outputs_copy, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(sft_folder(outputs_copy), elsewhere)
    edit_json(outputs_copy / "06-dpo" / "metrics.json", lambda m: m.update(sft_model=str(elsewhere)))
    report, printed = RUNG.verify(outputs_copy)
    criterion = by_name(report, "adapter goes back")
    assert criterion.status == checking.FAIL and "uses only a model this run trained" in criterion.detail


def test_metrics_without_the_sft_model_fail_clearly(outputs_copy):
    edit_json(outputs_copy / "06-dpo" / "metrics.json", lambda m: m.pop("sft_model"))
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "valid numbers").status == checking.FAIL and "does not name the SFT model" in printed


def test_nan_metrics(outputs_copy):
    edit_json(outputs_copy / "06-dpo" / "metrics.json", lambda m: m.update(win_rate_unanswerable=math.nan))
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "valid numbers").status == checking.FAIL and "not a number between 0 and 1" in printed


@pytest.mark.parametrize("key,name", [("after", "abstains_when_unrecorded"), ("baseline", "right_when_recorded")])
def test_hand_edited_metrics_disagree_with_the_models(outputs_copy, key, name):
    edit_json(outputs_copy / "06-dpo" / "metrics.json",
              lambda m: m[key].update({name: 1.0 if m[key][name] < 0.5 else 0.0}))
    report, printed = RUNG.verify(outputs_copy)
    agree = by_name(report, "agree")
    assert agree.status == checking.FAIL and "the model scores" in agree.detail, printed


def test_a_model_that_does_not_abstain_fails_its_bars():
    """The bars judge what the checker measured: the SFT model's own figures as the DPO model's."""
    sft = {"abstains_when_unrecorded": 0.0, "right_when_recorded": 0.97, "abstains_when_recorded": 0.0}
    measured = {"sft": sft, "dpo": dict(sft), "win_rate": 0.5}
    bars = check06.THRESHOLDS["tiny"]
    with pytest.raises(checking.CheckFailed, match="abstains on 0%"):
        check06.check_abstention(measured, bars)
    with pytest.raises(checking.CheckFailed, match="win-rate 50%"):
        check06.check_win_rate(measured, bars)
    assert "97.0% right" in check06.check_recorded(measured, bars)


def test_a_model_that_abstains_on_everything_fails_the_recorded_facts():
    measured = {"sft": {"abstains_when_unrecorded": 0.0, "right_when_recorded": 0.97, "abstains_when_recorded": 0.0},
                "dpo": {"abstains_when_unrecorded": 1.0, "right_when_recorded": 0.0, "abstains_when_recorded": 1.0},
                "win_rate": 1.0}
    with pytest.raises(checking.CheckFailed, match="97.0 points lost"):
        check06.check_recorded(measured, check06.THRESHOLDS["tiny"])


def test_learnt_from_the_rejected_answers_reads_the_recorded_abstentions():
    bars = check06.THRESHOLDS["tiny"]
    learnt = {"implicit_accuracy": {"all": 0.92, "abstains_on_recorded": 1.0, "invents": 1.0, "near_miss": 0.6}}
    assert check06.check_learnt_from_rejected(learnt, bars).startswith("the fact preferred over abstaining on 100%")
    chosen_only = {"implicit_accuracy": {"all": 0.6, "abstains_on_recorded": 0.0, "invents": 1.0, "near_miss": 0.4}}
    with pytest.raises(checking.CheckFailed, match=r"on 0% of those pairs \(on all held-out pairs: 60%\); needed 80%"):
        check06.check_learnt_from_rejected(chosen_only, bars)


# -- the graded functions ------------------------------------------------------------------------------
def _solution_functions():
    import nbformat

    from shared.notebooks.graded import extract_functions

    return extract_functions(nbformat.read(RUNG.solution, as_version=4), ["sequence_logprobs", "dpo_loss"])


def test_the_hidden_cases_pass_the_solutions_functions():
    functions = _solution_functions()
    assert "unseen batches" in check06.check_sequence_logprobs(functions["sequence_logprobs"])
    assert "TRL's loss on 5 pairs" in check06.check_dpo_loss(functions["dpo_loss"])


def _shifted_wrong(logits, labels, mask):
    """No shift: the logits at t scored against the token at t (a common slip)."""
    labels = labels.masked_fill(mask == 0, 0)
    return (torch.log_softmax(logits.double(), -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1) * mask).sum(-1)


WRONG_LOGPROBS = {
    "no shift": (_shifted_wrong, "off by"),
    "the prompt counted too": (lambda logits, labels, mask: _solution_functions()["sequence_logprobs"](
        logits, labels.masked_fill(labels == -100, 0), torch.ones_like(mask)), "off by"),
    "-100 labels gathered": (lambda logits, labels, mask: (torch.log_softmax(logits[:, :-1].double(), -1).gather(
        -1, labels[:, 1:].unsqueeze(-1)).squeeze(-1) * mask[:, 1:]).sum(-1), "index -100 is out of bounds"),
    "float32": (lambda logits, labels, mask: _solution_functions()["sequence_logprobs"](logits, labels, mask).float(),
                "expected torch.float64"),
    "a mean instead of a sum": (lambda logits, labels, mask: _solution_functions()["sequence_logprobs"](
        logits, labels, mask) / mask[:, 1:].sum(-1).clamp(min=1), "off by"),
    "a mean, 0 / 0 on a row with no answer": (lambda logits, labels, mask: _solution_functions()["sequence_logprobs"](
        logits, labels, mask) / mask[:, 1:].sum(-1), "a sum over none is 0"),
    "the labels, not the mask, say what counts": (lambda logits, labels, mask: _solution_functions()[
        "sequence_logprobs"](logits, labels, (labels != -100).long()), "the prompt's token ids in its labels"),
}


@pytest.mark.parametrize("mistake", WRONG_LOGPROBS)
def test_wrong_sequence_logprobs_fail(mistake):
    function, fragment = WRONG_LOGPROBS[mistake]
    RUNG.assert_fails(lambda: check06.check_sequence_logprobs(function), fragment)


def _solution_loss(*args):
    return _solution_functions()["dpo_loss"](*args)


WRONG_LOSSES = {
    "log of sigmoid, which underflows": (
        lambda pc, pr, rc, rr, beta: -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr)))), "non-finite"),
    "no reference": (lambda pc, pr, rc, rr, beta: -torch.nn.functional.logsigmoid(beta * (pc - pr)), "off by"),
    "chosen and rejected swapped": (lambda pc, pr, rc, rr, beta: _solution_loss(pr, pc, rr, rc, beta), "off by"),
    "beta forgotten": (lambda pc, pr, rc, rr, beta: _solution_loss(pc, pr, rc, rr, 1.0), "off by"),
    "the mean, not one loss per pair": (lambda *args: _solution_loss(*args).mean(), "one loss per pair"),
    "a gradient the wrong way": (lambda pc, pr, rc, rr, beta: -_solution_loss(pc, pr, rc, rr, beta) + 2 * math.log(2),
                                 "off by"),
}


@pytest.mark.parametrize("mistake", WRONG_LOSSES)
def test_wrong_dpo_losses_fail(mistake):
    function, fragment = WRONG_LOSSES[mistake]
    RUNG.assert_fails(lambda: check06.check_dpo_loss(function), fragment)


def test_a_loss_computed_in_float32_passes():
    """The notebook asks for no dtype: a loss of hundreds of nats in float32 is right to its seventh digit."""
    def in_float32(pc, pr, rc, rr, beta):
        return _solution_loss(pc.float(), pr.float(), rc.float(), rr.float(), beta)

    assert "TRL's loss on" in check06.check_dpo_loss(in_float32)


# -- dpo_config ----------------------------------------------------------------------------------------------
def _dpo_config(drop=(), **overrides):
    from trl import DPOConfig

    return config_writer(DPOConfig, "dpo", drop, **overrides)


def test_the_config_built_like_the_solution_passes():
    criterion, printed = RUNG.judge(lambda: check06.check_dpo_config(_dpo_config(), tiny_profile()))
    assert criterion.status == checking.PASS, printed


WRONG_CONFIGS = {
    "TRL's default learning rate": (_dpo_config(drop=["learning_rate"]), "learning_rate is 1e-06"),
    "beta typed in": (_dpo_config(beta=0.1), "beta is 0.1, expected 0.25"),
    "the default seed": (_dpo_config(drop=["seed"]), "seed"),
    "checkpoints saved on the way": (_dpo_config(save_strategy="epoch"), "save_strategy is 'epoch'"),
    "TRL's default sequence length": (_dpo_config(drop=["max_length"]), "max_length is 1024"),
}


@pytest.mark.parametrize("mistake", WRONG_CONFIGS)
def test_a_wrong_config_fails(mistake):
    dpo_config, fragment = WRONG_CONFIGS[mistake]
    RUNG.assert_fails(lambda: check06.check_dpo_config(dpo_config, tiny_profile()), fragment)


@pytest.mark.parametrize("name,reference,body", [
    ("dpo_loss", "shared.training.preference.dpo_loss",
     "def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):\n"
     "    return _ref(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)\n"),
    ("sequence_logprobs", "shared.evaluation.logprobs.sequence_logprobs",
     "def sequence_logprobs(logits, labels, completion_mask):\n"
     "    return _ref(logits, labels, completion_mask)\n"),
])
def test_a_graded_function_that_calls_its_reference_is_refused(name, reference, body):
    RUNG.assert_reference_refused(name, reference, body)
