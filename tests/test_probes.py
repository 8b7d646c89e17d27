"""Knowledge probes and perplexity on the committed tiny base: they reproduce the model card's figures, and they
tell a model that learned the world from one with the same weights shuffled."""

import copy
import json
import math

import pytest
import torch

from shared.evaluation import perplexity, probes
from shared.models import load_model, load_tokenizer
from shared.paths import TINY_BASE_DIR
from shared.world import data
from shared.world.generator import build_world

CARD = json.loads((TINY_BASE_DIR / "card.json").read_text())
FACTS = {"town", "colour", "pet", "job"}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def committed():
    return load_model()


@pytest.fixture(scope="module")
def shuffled(committed):
    """The committed model's own weights, each tensor's entries in a random order: same sizes and values,
    nothing learned left."""
    model = copy.deepcopy(committed)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            flat = parameter.view(-1)
            flat.copy_(flat[torch.randperm(flat.numel(), generator=generator)])
    return model


def test_snapshot_of_the_cards_sum_recall_and_heldout_perplexity(committed, tokenizer):
    """A snapshot of committed figures: the probes, moved out of the card, measure what data/tiny-base/card.json
    says (the card rounds to 4 and 3 decimals)."""
    sums = probes.sum_recall(committed, tokenizer)
    assert {k: round(v, 4) for k, v in sums.items()} == CARD["sum_recall"]
    ppl = perplexity.text_perplexity(committed, tokenizer, data.read_corpus("validation"),
                                     seq_len=CARD["train_config"]["seq_len"])
    assert round(ppl, 3) == CARD["heldout_perplexity"]


def test_probes_score_the_committed_model_high_and_its_shuffled_weights_near_zero(committed, shuffled, tokenizer):
    people = build_world()["people"][:12]
    recall, recall_shuffled = (probes.cloze_recall(m, tokenizer, people) for m in (committed, shuffled))
    assert set(recall) == FACTS and min(recall.values()) >= 0.9 and max(recall_shuffled.values()) <= 0.1
    sums, sums_shuffled = (probes.sum_recall(m, tokenizer) for m in (committed, shuffled))
    assert set(sums) == {"plus", "minus"} and min(sums.values()) >= 0.7 and max(sums_shuffled.values()) <= 0.05
    reading, reading_shuffled = (probes.reading_accuracy(m, tokenizer, n=8) for m in (committed, shuffled))
    assert set(reading) == FACTS and max(reading_shuffled.values()) <= 0.1
    assert min(reading[fact] for fact in ("town", "pet", "job")) >= 0.9  # colour it guesses (6% on the card)


def test_perplexity_is_exp_of_the_mean_next_token_loss(committed, tokenizer):
    texts = data.read_corpus("validation")[:5]
    rows = perplexity.cut_into_rows(perplexity.tokenize_documents(texts, tokenizer), seq_len=32)
    with torch.no_grad():
        logits = committed(input_ids=rows).logits[:, :-1]
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, rows[:, 1:, None])
    expected = math.exp(-token_logps.double().mean().item())
    assert perplexity.text_perplexity(committed, tokenizer, texts, seq_len=32, batch_size=len(rows)) \
        == pytest.approx(expected, rel=1e-5)


def test_a_model_that_forgot_the_prose_reads_it_far_worse(committed, shuffled, tokenizer):
    texts = data.read_corpus("validation")[:20]
    assert perplexity.text_perplexity(committed, tokenizer, texts) < 2.5
    assert perplexity.text_perplexity(shuffled, tokenizer, texts) > 50
