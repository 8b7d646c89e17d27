"""The DPO loss the course writes down (the reference rung 06's learner is checked against): TRL's own loss on
the same pairs, log 2 where policy and reference agree, and a gradient that raises the chosen answer and lowers
the rejected one."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from shared.evaluation.logprobs import sequence_logprobs
from shared.models import load_model, load_tokenizer
from shared.training import preference
from shared.world import data


@pytest.fixture(scope="module")
def models():
    """The tiny base as the reference, and a policy that differs from it (every weight nudged, fixed seed)."""
    reference = load_model()
    return preference.nudged_copy(reference, seed=0), reference, load_tokenizer()


@pytest.fixture(scope="module")
def pairs():
    rows = data.load_task("abstention", "validation")
    recorded = [r for r in rows if r["meta"]["recorded"]][:3]
    unrecorded = [r for r in rows if not r["meta"]["recorded"]][:3]
    return recorded + unrecorded


def sums(model, pair: preference.TRLPair) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=pair.input_ids, attention_mask=pair.attention_mask).logits
    return sequence_logprobs(logits, pair.input_ids, pair.completion_mask)


def test_the_course_loss_is_trls_loss_on_the_same_pairs(models, pairs):
    policy, reference, tokenizer = models
    for beta in (0.1, 0.5):
        found = preference.trl_dpo_losses(policy, reference, tokenizer, pairs, beta=beta)
        assert len(found) == len(pairs)
        for pair in found:
            assert pair.input_ids.shape[0] == 2 and pair.completion_mask.sum() > 0
            mine, ref = sums(policy, pair), sums(reference, pair)
            ours = preference.dpo_loss(mine[:1], mine[1:], ref[:1], ref[1:], beta=beta)
            assert float(ours) == pytest.approx(pair.loss, rel=1e-5, abs=1e-6)
        assert len({round(p.loss, 6) for p in found}) > 1  # the pairs differ: a constant would not pass


def test_trls_loss_is_log_2_while_the_policy_is_the_reference(models, pairs):
    _, reference, tokenizer = models
    found = preference.trl_dpo_losses(reference, copy.deepcopy(reference), tokenizer, pairs[:2])
    assert [p.loss for p in found] == pytest.approx([math.log(2)] * 2, abs=1e-6)


def test_the_loss_is_log_2_at_the_start_and_its_gradient_raises_chosen_and_lowers_rejected():
    generator = torch.Generator().manual_seed(1)
    policy_chosen, policy_rejected = (-20 * torch.rand(8, generator=generator, dtype=torch.float64)
                                      for _ in range(2))
    same = preference.dpo_loss(policy_chosen, policy_rejected, policy_chosen, policy_rejected, beta=0.1)
    assert same.dtype == torch.float64 and same.shape == (8,)
    assert same.tolist() == pytest.approx([math.log(2)] * 8, abs=1e-12)

    chosen = policy_chosen.clone().requires_grad_(True)
    rejected = policy_rejected.clone().requires_grad_(True)
    ref_chosen, ref_rejected = policy_chosen - 1.0, policy_rejected + 2.0
    preference.dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1).sum().backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()   # gradient descent: chosen up, rejected down
    assert torch.allclose(chosen.grad, -rejected.grad)             # only the difference of the two counts


def test_a_larger_beta_punishes_the_same_wrong_way_margin_more():
    args = (torch.tensor([-5.0]), torch.tensor([-3.0]), torch.tensor([-4.0]), torch.tensor([-4.0]))
    assert float(preference.dpo_loss(*args, beta=0.5)) > float(preference.dpo_loss(*args, beta=0.1)) > math.log(2)
