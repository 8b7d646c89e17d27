"""Batched generation: where it stops, that batching (left padding) does not change a greedy answer, and that
sampling is reproducible from its seed."""

from types import SimpleNamespace

import pytest

from shared.evaluation import generation
from shared.models import load_model, load_tokenizer

PROMPTS = ["Where does Mira Olsen live?", ("Extract the person's name, town and job from the text as JSON.\n\n"
                                          "Text: Ola Brint lives in Fenwick. Ola Brint works as a baker."),
           "Ada has 7 pears. Ada finds 5 more."]


@pytest.fixture(scope="module")
def tiny():
    return load_model(), load_tokenizer()


def _vocabulary_tokenizer(vocabulary: dict, eos: int, unk: int | None):
    """Just enough of a tokenizer for stop_token_ids: a vocabulary, an end-of-sequence and an unknown token."""
    return SimpleNamespace(eos_token_id=eos, unk_token_id=unk,
                           convert_tokens_to_ids=lambda token: vocabulary.get(token, unk))


def test_the_tiny_tokenizer_stops_at_its_end_of_turn_and_at_end_of_sequence():
    tokenizer = load_tokenizer()
    stops = generation.stop_token_ids(tokenizer)
    assert stops == sorted({tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|end|>")})


@pytest.mark.parametrize("end_of_turn", ["<|im_end|>", "<|eot_id|>", "<end_of_turn>"])
def test_hub_chat_templates_stop_at_their_own_end_of_turn(end_of_turn):
    tokenizer = _vocabulary_tokenizer({end_of_turn: 7, "<eos>": 2}, eos=2, unk=0)
    assert generation.stop_token_ids(tokenizer) == [2, 7]


def test_unknown_end_of_turn_tokens_are_not_stops():
    assert generation.stop_token_ids(_vocabulary_tokenizer({}, eos=2, unk=0)) == [2]  # never the unknown token
    assert generation.stop_token_ids(_vocabulary_tokenizer({}, eos=2, unk=None)) == [2]  # a vocabulary without unk


def test_a_batch_answers_as_each_prompt_alone(tiny):
    """Left padding lines the prompts up; the padded positions must not change any answer."""
    model, tokenizer = tiny
    together = generation.generate(model, tokenizer, PROMPTS, max_new_tokens=8)
    alone = [generation.generate(model, tokenizer, [prompt], max_new_tokens=8)[0] for prompt in PROMPTS]
    assert together == alone
    assert all(isinstance(answer, str) and answer == answer.strip() for answer in together)
    assert not any(token in answer for answer in together for token in ("<|end|>", "<pad>", "</s>"))


def test_sampling_gives_n_answers_per_prompt_the_same_for_the_same_seed(tiny):
    model, tokenizer = tiny
    first = generation.sample(model, tokenizer, PROMPTS, n=4, max_new_tokens=8, seed=0)
    assert [len(answers) for answers in first] == [4] * len(PROMPTS)
    assert all(isinstance(a, str) and a == a.strip() for answers in first for a in answers)
    assert generation.sample(model, tokenizer, PROMPTS, n=4, max_new_tokens=8, seed=0) == first
    assert generation.sample(model, tokenizer, PROMPTS, n=4, max_new_tokens=8, seed=1) != first
    assert any(len(set(answers)) > 1 for answers in first), "at temperature 1 the n answers should differ"


def test_sampling_leaves_the_callers_random_state_alone(tiny):
    import torch

    model, tokenizer = tiny
    torch.manual_seed(123)
    generation.sample(model, tokenizer, PROMPTS[:1], n=2, max_new_tokens=4, seed=0)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))


def test_sampling_from_the_top_token_alone_is_greedy(tiny):
    """top_p that keeps only the most likely token leaves no choice: every sample is the greedy answer."""
    model, tokenizer = tiny
    greedy = generation.generate(model, tokenizer, PROMPTS, max_new_tokens=8)
    sampled = generation.sample(model, tokenizer, PROMPTS, n=3, top_p=1e-6, max_new_tokens=8, seed=0)
    assert sampled == [[answer] * 3 for answer in greedy]


def test_sampling_reads_each_prompt_once_and_answers_as_if_it_read_it_n_times(tiny, monkeypatch):
    """The n answers share their prompt's attention cache; the answers must be those of n separate readings."""
    model, tokenizer = tiny
    calls = []
    real = generation._prompt_cache
    monkeypatch.setattr(generation, "_prompt_cache", lambda *args: calls.append(args[1].shape) or real(*args))
    shared = generation.sample(model, tokenizer, PROMPTS, n=5, max_new_tokens=12, seed=2)
    assert [shape[0] for shape in calls] == [len(PROMPTS)], "one prompt cache for the batch, each prompt once"
    monkeypatch.setattr(generation, "_prompt_cache", lambda *args: None)   # generate repeats each prompt n times
    assert generation.sample(model, tokenizer, PROMPTS, n=5, max_new_tokens=12, seed=2) == shared
