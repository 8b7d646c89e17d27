"""Rewards: the Bradley-Terry loss held equal to TRL's RewardTrainer, reward scores as TRL's batches give them,
pairwise accuracy, best-of-n, DPO's implicit reward, and where rung 08 finds rung 06's model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from shared.evaluation import rewards
from shared.models import load_model, load_tokenizer
from shared.paths import TINY_BASE_DIR
from shared.profiles import PROFILES
from shared.training import preference
from shared.world import data

TINY = PROFILES["tiny"]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(profile=TINY)


@pytest.fixture(scope="module")
def reward_model():
    """The tiny base with a one-number head, every weight nudged: scores that differ from answer to answer."""
    return preference.nudged_copy(preference.load_reward_model(TINY), scale=0.05, seed=3)


@pytest.fixture(scope="module")
def pairs():
    return data.load_task("abstention", "validation")[:6]


def test_the_bradley_terry_loss_is_trls(reward_model, tokenizer, pairs):
    with_margins = [{**pair, "margin": margin} for pair, margin in zip(pairs, [0.0, 0.7, 2.0, 0.0, 0.1, 1.0])]
    found = preference.trl_reward_losses(reward_model, tokenizer, with_margins)
    assert len(found) == len(pairs) and [p.margin for p in found] == pytest.approx([0.0, 0.7, 2.0, 0.0, 0.1, 1.0])
    for pair in found:
        with torch.no_grad():
            chosen, rejected = reward_model(input_ids=pair.input_ids, attention_mask=pair.attention_mask).logits[:, 0]
        ours = float(preference.bradley_terry_loss(chosen[None], rejected[None], torch.tensor([pair.margin])))
        assert ours == pytest.approx(pair.loss, rel=1e-6, abs=1e-7)
    assert len({round(p.loss, 4) for p in found}) > 1                   # the pairs did not all score alike


def test_trl_reward_losses_without_margins_report_none(reward_model, tokenizer, pairs):
    assert all(pair.margin is None for pair in preference.trl_reward_losses(reward_model, tokenizer, pairs[:2]))


def test_the_bradley_terry_loss_properties():
    equal = preference.bradley_terry_loss(torch.tensor([0.0, 5.0]), torch.tensor([0.0, 5.0]))
    assert torch.allclose(equal, torch.full((2,), math.log(2)))
    # A margin asks for that much more: (c, r, m) scores as (c - m, r).
    assert torch.allclose(preference.bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([1.0])),
                          preference.bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.5])))
    far = preference.bradley_terry_loss(torch.tensor([-900.0], dtype=torch.float64), torch.tensor([0.0],
                                                                                             dtype=torch.float64))
    assert float(far) == pytest.approx(900.0)                          # logsigmoid, not log(sigmoid)


def test_reward_scores_are_the_scores_of_trls_batches(reward_model, tokenizer, pairs):
    found = preference.trl_reward_losses(reward_model, tokenizer, pairs)
    for pair, trl_pair in zip(pairs, found):
        with torch.no_grad():
            expected = reward_model(input_ids=trl_pair.input_ids, attention_mask=trl_pair.attention_mask).logits[:, 0]
        got = rewards.reward_scores(reward_model, tokenizer, [pair["prompt"]] * 2, [pair["chosen"], pair["rejected"]])
        assert torch.allclose(got, expected, atol=1e-5)


def test_reward_scores_do_not_depend_on_the_batch(reward_model, tokenizer, pairs):
    prompts = [p["prompt"] for p in pairs] * 3
    answers = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs] + ["", "x " * 30, "Yes."] * 2
    together = rewards.reward_scores(reward_model, tokenizer, prompts, answers, batch_size=64)
    one_by_one = torch.cat([rewards.reward_scores(reward_model, tokenizer, [p], [a]) for p, a in zip(prompts, answers)])
    assert together.shape == (18,) and together.dtype == torch.float32
    assert torch.allclose(together, one_by_one, atol=1e-5)


def test_load_reward_model_draws_the_same_head_from_the_profiles_seed():
    state = torch.random.get_rng_state()
    first, second = preference.load_reward_model(TINY), preference.load_reward_model(TINY)
    assert torch.equal(first.score.weight, second.score.weight)
    assert torch.equal(torch.random.get_rng_state(), state)            # the caller's random state untouched
    assert first.config.num_labels == 1 and first.config.pad_token_id == load_tokenizer(profile=TINY).pad_token_id


def test_pairwise_accuracy_counts_by_kind_and_ties_as_wrong():
    pairs = [{"meta": {"kind": kind}} for kind in ("invents", "invents", "near_miss", "near_miss")]
    found = rewards.pairwise_accuracy(torch.tensor([1.0, 0.0, 2.0, 1.0]), torch.tensor([0.0, 1.0, 1.0, 1.0]), pairs)
    assert found == {"all": 0.5, "invents": 0.5, "near_miss": 0.5}
    with pytest.raises(ValueError, match="one chosen and one rejected score per pair"):
        rewards.pairwise_accuracy(torch.tensor([1.0]), torch.tensor([0.0, 1.0]), pairs[:1])


def test_best_of_n_kl_is_the_analytic_bound():
    assert rewards.best_of_n_kl(1) == 0.0
    assert rewards.best_of_n_kl(16) == pytest.approx(math.log(16) - 15 / 16)


def test_best_of_n_keeps_the_best_scored_answer(tokenizer):
    """With a score that prefers longer answers, best-of-k keeps the longest of the first k; the judge sees that
    answer; the oracle sees the best of the first k by the judge."""
    sft = load_model(profile=TINY)
    examples = data.load_task("abstention", "heldout")[:6]
    curve = rewards.best_of_n(sft, tokenizer, examples, n=4, seed=5, judge=lambda a, e: int(len(a) > 20),
                              score=lambda prompts, answers: torch.tensor([float(len(a)) for a in answers]))
    assert curve["n"] == [1, 2, 4] and curve["kl"][0] == 0.0
    lengths = [[len(a) for a in group] for group in curve["samples"]]
    for i, k in enumerate(curve["n"]):
        assert curve["proxy"][i] == pytest.approx(sum(max(row[:k]) for row in lengths) / len(lengths), abs=1e-4)
    assert curve["proxy"] == sorted(curve["proxy"])                     # more answers, never a worse pick
    recorded = [row for row, e in zip(lengths, examples) if e["meta"]["recorded"]]
    assert curve["judge"]["recorded"][-1] == pytest.approx(sum(max(r) > 20 for r in recorded) / len(recorded),
                                                           abs=1e-4)
    again = rewards.best_of_n(sft, tokenizer, examples, n=4, seed=5, judge=lambda a, e: 0,
                              score=lambda prompts, answers: torch.zeros(len(answers)))
    assert again["samples"] == curve["samples"]                         # seeded: the same answers


def test_the_implicit_reward_is_zero_for_the_reference_itself(tokenizer, pairs):
    model = load_model(profile=TINY)
    chosen, rejected = rewards.implicit_rewards(model, model, tokenizer, pairs, beta=0.1)
    assert chosen.dtype == torch.float64 and torch.equal(chosen, torch.zeros(len(pairs), dtype=torch.float64))
    policy = preference.nudged_copy(model, seed=4)
    chosen, _ = rewards.implicit_rewards(policy, model, tokenizer, pairs, beta=0.5)
    tenth, _ = rewards.implicit_rewards(policy, model, tokenizer, pairs, beta=0.05)
    assert torch.allclose(chosen, 10 * tenth) and chosen.abs().max() > 0


def test_rung06_model_trains_rung_06s_recipe_when_rung_06_saved_nothing(tmp_path, monkeypatch):
    """No rung 06 outputs: its recipe is trained into the asking rung's folder (two steps here), and a second
    call reuses it; once rung 06 saved a model with this profile, that one is used."""
    monkeypatch.setenv("FT_OUTPUTS", str(tmp_path))
    profile = TINY.with_training("dpo", max_steps=2)
    policy, reference, adapter, reference_folder = preference.rung06_model(profile, "08-reward-modelling",
                                                                            TINY_BASE_DIR)
    assert adapter == tmp_path / "08-reward-modelling" / "dpo-model" and reference_folder == TINY_BASE_DIR
    assert hasattr(policy, "peft_config") and not hasattr(reference, "peft_config")
    made = (adapter / "adapter_model.safetensors").stat().st_mtime_ns
    preference.rung06_model(profile, "08-reward-modelling", TINY_BASE_DIR)
    assert (adapter / "adapter_model.safetensors").stat().st_mtime_ns == made   # reused, not trained again

    rung06 = tmp_path / "06-dpo"
    (rung06 / "model").mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (rung06 / "model" / name).write_bytes((adapter / name).read_bytes())
    (rung06 / "metrics.json").write_text(json.dumps({"profile": "tiny", "sft_model": "sft-elsewhere"}))
    (tmp_path / "sft-elsewhere").symlink_to(TINY_BASE_DIR)
    _, _, found, found_reference = preference.rung06_model(profile, "08-reward-modelling", TINY_BASE_DIR)
    assert found == rung06 / "model" and found_reference == tmp_path / "sft-elsewhere"

