"""Log-probabilities of completions: the values a naive loop gives, batching that changes none of them, and the
tokens TRL trains on."""

import math

import pytest
import torch

from shared.evaluation import logprobs
from shared.models import load_model, load_tokenizer

# Different lengths, so a batch has padding; one answer is a JSON object, one ends in a number.
PAIRS = [("Where does Mira Olsen live?", "Fenwick."),
         ("What is Ola Brint's job?", "Ola Brint works as a baker."),
         ("Extract the person's name, town and job from the text as JSON.\n\nText: Ola Brint lives in Fenwick.",
          '{"name": "Ola Brint", "town": "Fenwick", "job": "baker"}'),
         ("Ada has 7 pears. Ada finds 5 more. How many pears does Ada have now?", "7 plus 5 is 12.")]


@pytest.fixture(scope="module")
def tiny():
    return load_model(), load_tokenizer()


def naive_logprob(model, prompt_ids: list[int], completion_ids: list[int]) -> float:
    """One pair alone, token by token: log_softmax of the logits before each completion token, at that token."""
    ids = prompt_ids + completion_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return sum(torch.log_softmax(logits[t - 1], dim=-1)[ids[t]].item() for t in range(len(prompt_ids), len(ids)))


def test_completion_logprobs_are_what_a_per_token_loop_gives(tiny):
    model, tokenizer = tiny
    result = logprobs.completion_logprobs(model, tokenizer, *zip(*PAIRS))
    pairs = [logprobs.prompt_completion_ids(tokenizer, p, c) for p, c in PAIRS]
    expected = [naive_logprob(model, p, c) for p, c in pairs]
    assert result.sums.dtype == torch.float64 and result.sums.shape == (len(PAIRS),)
    assert result.sums.tolist() == pytest.approx(expected, abs=1e-4)
    assert result.n_tokens.tolist() == [len(c) for _, c in pairs]
    assert all(s < 0 for s in expected)


def test_a_batch_scores_as_each_pair_alone(tiny):
    """Right padding: the padded positions change no pair's value (to float32 rounding: 1e-5, plus a millionth
    of a sum of a hundred tokens' log-probabilities)."""
    model, tokenizer = tiny
    together = logprobs.completion_logprobs(model, tokenizer, *zip(*PAIRS), batch_size=len(PAIRS))
    alone = logprobs.completion_logprobs(model, tokenizer, *zip(*PAIRS), batch_size=1)
    assert torch.allclose(together.sums, alone.sums, rtol=1e-6, atol=1e-5)
    assert together.n_tokens.tolist() == alone.n_tokens.tolist()


def test_the_tokens_are_the_ones_trl_trains_on(tiny):
    """TRL's SFTTrainer on the same pairs: the same input ids, and its loss on exactly the completion tokens --
    the answer, the end-of-turn token and the template's newline after it."""
    from shared.training.sft import trl_tokenized

    model, tokenizer = tiny
    trl = trl_tokenized([{"prompt": p, "answer": c} for p, c in PAIRS], model, tokenizer)
    for (prompt, completion), row in zip(PAIRS, trl):
        prompt_ids, completion_ids = logprobs.prompt_completion_ids(tokenizer, prompt, completion)
        assert prompt_ids + completion_ids == row["input_ids"]
        assert [label != -100 for label in row["labels"]] == [False] * len(prompt_ids) + [True] * len(completion_ids)
        assert tokenizer.decode(completion_ids) == f" {completion}<|end|>\n"


def test_sequence_logprobs_counts_only_the_masked_tokens():
    vocab = 8
    logits = torch.zeros(2, 5, vocab)  # uniform: every token has log p = -log 8
    logits[1, 2, 3] = 100.0  # row 1, position 2 is sure of token 3 (its next token): log p = 0 there
    labels = torch.tensor([[1, 2, 3, 4, 5], [1, 2, 6, 3, -100]])  # -100 (TRL's "no loss") where the mask is 0
    completion_mask = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 1, 0]])
    sums = logprobs.sequence_logprobs(logits, labels, completion_mask)
    assert sums.dtype == torch.float64
    assert sums.tolist() == pytest.approx([-3 * math.log(vocab), 0.0], abs=1e-6)
