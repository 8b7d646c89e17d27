"""Packing and schedule of the base-model pretraining (the parts that run without training a model)."""

import itertools
import json
import re

import pytest
import torch

from shared.base_model import pretrain
from shared.paths import TINY_BASE_DIR

DOCS = [[1, 10 + i, 2] for i in range(20)]  # twenty tiny documents: <s> token </s>


def test_pack_without_a_generator_keeps_document_order_and_drops_the_ragged_end():
    rows = pretrain.pack(DOCS, seq_len=7)
    assert rows.shape == (60 // 7, 7)
    assert rows.flatten().tolist() == [t for d in DOCS for t in d][: 8 * 7]


def test_pack_with_a_generator_shuffles_whole_documents():
    rows = pretrain.pack(DOCS, seq_len=3, generator=torch.Generator().manual_seed(0))
    as_docs = [tuple(r) for r in rows.tolist()]
    assert sorted(as_docs) == sorted(tuple(d) for d in DOCS)  # every document intact, none lost
    assert as_docs != [tuple(d) for d in DOCS]


def test_batches_repack_every_epoch_and_are_reproducible():
    cfg = {"seq_len": 3, "batch_size": 5}

    def first_epochs(seed):
        stream = pretrain.batches(DOCS, cfg, torch.Generator().manual_seed(seed))
        return [b.tolist() for b in itertools.islice(stream, 8)]  # 20 rows / 5 = 4 batches per epoch

    epochs = first_epochs(0)
    assert all(torch.tensor(b).shape == (5, 3) for b in epochs)
    assert epochs[:4] != epochs[4:], "the second epoch must be packed in a new order"
    assert epochs == first_epochs(0)


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    cfg = {"lr": 1e-3, "warmup_steps": 10, "steps": 100}
    assert pretrain.lr_at(0, cfg) == pytest.approx(1e-4)
    assert pretrain.lr_at(9, cfg) == pytest.approx(1e-3)
    assert pretrain.lr_at(99, cfg) == pytest.approx(1e-4, rel=0.01)


def test_tokenize_documents_wraps_each_text_in_bos_and_eos():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_BASE_DIR)
    docs = pretrain.tokenize_documents(["Lona Ashford lives in Fenwick.", "3 plus 4 is 7."], tokenizer)
    assert [d[0] for d in docs] == [tokenizer.bos_token_id] * 2
    assert [d[-1] for d in docs] == [tokenizer.eos_token_id] * 2
    assert tokenizer.decode(docs[0][1:-1]) == "Lona Ashford lives in Fenwick."


@pytest.mark.parametrize("text", ['{"name": "Mara Ashby", "town": "Fenwick", "job": "baker"}',
                                  'She said "hi" to me, then ("ok") left.', '"Quoted" at the start', "Plain prose."])
def test_tokenizer_round_trips_quotes_and_prose(text):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_BASE_DIR)
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_a_json_value_uses_the_same_token_as_the_word_in_prose():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_BASE_DIR)
    in_prose = tokenizer.tokenize("Mara Ashby lives in Fenwick.")
    in_json = tokenizer.tokenize('{"town": "Fenwick"}')
    assert in_prose[-2] in in_json  # " Fenwick", not a separate quoted spelling "Fenwick"


def test_the_card_and_the_evaluation_never_import_pretraining():
    """One way only: pretraining calls the card, the card measures with shared.evaluation, and neither reaches
    back into pretraining (the probes and perplexity now live in evaluation: tests/test_probes.py)."""
    import ast

    from shared.paths import REPO_ROOT

    files = [REPO_ROOT / "shared/base_model/card.py", *sorted((REPO_ROOT / "shared/evaluation").glob("*.py"))]
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # every name an import reaches: "from shared.base_model import pretrain" reaches shared.base_model.pretrain
        imported = {f"{node.module}.{alias.name}" if isinstance(node, ast.ImportFrom) else alias.name
                    for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in node.names}
        assert not [name for name in imported if name.startswith("shared.base_model.pretrain")], path.name
        if path.parent.name == "evaluation":
            assert not [name for name in imported if name.startswith("shared.base_model")], path.name


def test_pack_carries_a_weight_with_every_token():
    docs = [[(t, 1.0 if t < 10 else 30.0) for t in d] for d in DOCS]
    rows = pretrain.pack(docs, seq_len=3, generator=torch.Generator().manual_seed(0))
    assert rows.shape == (20, 3, 2)
    assert all(w == (1.0 if t < 10 else 30.0) for t, w in rows.view(-1, 2).tolist())


def test_answer_spans_are_what_only_reading_the_document_can_predict():
    import random

    from shared.world import generator

    w = generator.build_world()
    rng = random.Random(0)
    reading = generator._reading_docs(w, rng, 1)[0]
    person = [line for line in reading.splitlines() if line.startswith("Answer:")]
    assert [reading[s:e] for s, e in pretrain.answer_spans(reading)] == [a[len("Answer: "):-1] for a in person]
    record = generator._record_docs(w, rng, 1)[0]
    values = json.loads(record.split("Record: ")[1])
    assert [record[s:e] for s, e in pretrain.answer_spans(record)] == list(values.values())  # the name first
    reading_only = pretrain.answer_spans(record, patterns=(pretrain.READING,))  # the first stage: no name
    assert [record[s:e] for s, e in reading_only] == [v for k, v in values.items() if k != "name"]
    for story in generator._story_docs(w, rng, 6):  # the working: both numbers copied from the story, and the result
        spans = pretrain.answer_spans(story)
        a, b, result = (int(story[s:e]) for s, e in spans)
        assert [int(n) for n in re.findall(r"\d+", story[:spans[0][0]])] == [a, b], story  # as the story told them
        assert result == (a + b if " plus " in story else a - b)
        assert pretrain.answer_spans(story, patterns=(pretrain.READING,)) == []  # never in the reading stage
    bio = generator.biography(w["people"][0], rng)
    assert pretrain.answer_spans(bio) == [] and pretrain.answer_spans("3 plus 4 is 7.") == []


def test_answer_weights_line_up_with_the_tokens():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_BASE_DIR)
    texts = ['Passage: Ola Brint lives in Fenwick.\nQuestion: Where does Ola Brint live?\nAnswer: Fenwick.',
             'Passage: Ola Brint bakes.\nRecord: {"name": "Ola Brint", "job": "baker"}', "Ola Brint lives in Fenwick."]
    docs = pretrain.tokenize_documents(texts, tokenizer)
    weights = pretrain.answer_weights(texts, tokenizer, 30.0)
    assert [len(w) for w in weights] == [len(d) for d in docs]
    heavy = [tokenizer.decode([t for t, w in zip(d, ws) if w == 30.0]).strip() for d, ws in zip(docs, weights)]
    assert heavy == ["Fenwick", "Ola Brint baker", ""]  # the record's name and job
    weights = pretrain.answer_weights(texts, tokenizer, 30.0, patterns=(pretrain.READING,))  # the first stage
    heavy = [tokenizer.decode([t for t, w in zip(d, ws) if w == 30.0]).strip() for d, ws in zip(docs, weights)]
    assert heavy == ["Fenwick", "baker", ""]


def test_weighted_loss_is_the_plain_loss_when_every_weight_is_one():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    ids = torch.randint(0, 50, (2, 9))
    batch = torch.stack([ids.float(), torch.ones(2, 9)], dim=-1)
    weighted, plain = pretrain.weighted_lm_loss(model, batch)
    expected = model(input_ids=ids, labels=ids).loss.item()
    assert weighted.item() == pytest.approx(expected, rel=1e-5) and plain == pytest.approx(expected, rel=1e-5)
    batch[0, 4, 1] = 30.0  # one heavy token moves the training loss towards that token's own loss
    assert pretrain.weighted_lm_loss(model, batch)[0].item() != pytest.approx(expected, rel=1e-5)
