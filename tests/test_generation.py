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
    caches = []
    real = generation.shared_prompt_cache
    monkeypatch.setattr(generation, "shared_prompt_cache", lambda *args: caches.append(real(*args)) or caches[-1])
    shared = generation.sample(model, tokenizer, PROMPTS, n=5, max_new_tokens=12, seed=2)
    assert len(caches) == 1 and caches[0] is not None, "one cache for the batch, shared by each prompt's 5 rows"
    monkeypatch.setattr(generation, "shared_prompt_cache", lambda *args: None)   # every row read by generate
    assert generation.sample(model, tokenizer, PROMPTS, n=5, max_new_tokens=12, seed=2) == shared


def test_a_cache_is_shared_only_between_rows_that_repeat_a_prompt(tiny):
    import torch

    model, _ = tiny
    ids = torch.tensor([[2, 5, 6, 7], [9, 5, 6, 8], [2, 5, 6, 7], [9, 5, 6, 8]])
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]])
    cache = generation.shared_prompt_cache(model, ids, mask)
    keys = cache.layers[0].keys
    assert keys.shape[0] == 4 and keys.shape[2] == 3          # every row, all but the last token
    assert torch.equal(keys[0], keys[2]) and torch.equal(keys[1], keys[3]) and not torch.equal(keys[0], keys[1])
    assert generation.shared_prompt_cache(model, ids[:2], mask[:2]) is None   # nothing repeats: nothing to share
    assert generation.shared_prompt_cache(model, ids[:, -1:], mask[:, -1:]) is None


def test_a_model_made_to_read_prompts_once_generates_what_it_did(tiny, monkeypatch):
    """GRPOTrainer asks for a group of answers by repeating its prompt; read_prompts_once must not change them."""
    import torch

    model, tokenizer = tiny
    rows = [generation.chat_prompt_ids(tokenizer, prompt) for prompt in PROMPTS[::2] for _ in range(4)]
    width = max(map(len, rows))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = (ids != tokenizer.pad_token_id).long()

    def answers(m):
        torch.manual_seed(5)
        return m.generate(input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=True, top_k=0,
                          pad_token_id=tokenizer.pad_token_id)

    plain = answers(model)
    reads = []
    real = generation.shared_prompt_cache
    monkeypatch.setattr(generation, "shared_prompt_cache", lambda *args: reads.append(args[1].shape) or real(*args))
    monkeypatch.setattr(model, "generate", model.generate)   # the patch below is undone after the test
    assert torch.equal(answers(generation.read_prompts_once(model)), plain)
    assert reads == [ids.shape]
