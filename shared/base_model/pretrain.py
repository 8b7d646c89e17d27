"""Build the tiny base model: train a BPE tokenizer and pretrain a small Llama on the tiny-world corpus.

``make base-model`` runs ``python -m shared.base_model.pretrain``; it takes about 9½ minutes on 2 CPU cores and writes
``data/tiny-base/`` (weights, tokenizer with a chat template, and a model card with measured figures).

The model is a real Llama (``LlamaForCausalLM``), so everything later rungs use -- PEFT target modules,
bitsandbytes 4-bit layers, TRL trainers -- applies to it unchanged. It is a *base* model: it reads world prose
only. The chat special tokens are in its vocabulary but never in its training text, so before fine-tuning it
has no idea what ``<|user|>`` ... ``<|assistant|>`` asks of it.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import torch

from shared.base_model import card
from shared.evaluation.perplexity import cut_into_rows, tokenize_documents
from shared.world.data import read_corpus
from shared.evaluation.probes import cloze_recall, reading_accuracy
from shared.paths import DATA_DIR, TINY_BASE_DIR
from shared.world import checksums

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
CHAT_TOKENS = ["<|user|>", "<|assistant|>", "<|end|>"]
# One message per block; the prompt for generation ends right after the assistant header. The space before
# each message matters: in the corpus words follow a space ("lives in Fenwick" -> " Fenwick"), so an answer
# written " Fenwick" reuses the token the model learned the fact with.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|> {{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# 8 heads of 32 dimensions: many small heads learn to look things up in context faster than a few large
# ones (answer-only loss, 500 steps: 16 heads 91%, 8 heads 58%, 4 heads 33% answered), and 8 keep the most
# of what fine-tuning later gets out of the model for closed questions.
CONFIG = dict(vocab_size=900, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
              num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=512,
              rope_theta=10000.0, tie_word_embeddings=True)
# Small batches, many steps: a small model learns facts from the number of updates it makes, and on the CPU
# a batch of 8 rows costs a quarter of a batch of 32.
# The seed is a real choice: with this corpus and these settings, pretraining seeds 0, 1 and 2 made bases that
# rung 02's SFT took to held-out extraction 85%, 91% and 95%, and on which rung 03's LoRA (then 300 examples per
# task at lr 2e-3) solved 100%, 12% and 98% of the held-out word problems (on seed 1 it copies the wrong first
# number out of the story: "6 minus 2 is 4" for 3 feathers less 2). Seed 2 is the one whose SFT did best
# on the *validation* split (closed QA / extraction / arithmetic 97/98/100% against 98/92/97 and 93/98/93).
TRAIN = dict(seq_len=128, batch_size=8, lr=2e-3, warmup_steps=30, steps=2400, weight_decay=0.1, seed=2,
             reading_steps=600, reading_lr=1e-3, answer_weight=5.0)

# Pretraining runs in two stages. Reading first: `reading_steps` on the documents whose answers are in the
# document itself (a passage and questions about it, a passage and a record of it), with the loss on those
# answers only. Then everything: `steps` on the whole corpus, answers counted `answer_weight` times. Answers are
# about 1% of the corpus; trained on the whole corpus alone, the other 99% (names, facts, prose) pull harder on
# the weights and a model this small never learned to look back for them: reading a passage stayed at chance
# (9-13%) in every mix of documents tried. reading_steps=0 and answer_weight=1 give that one-stage pretraining
# back, for comparison.
# READING finds those answers: the word after "Answer:", a fact copied from a passage into a record.
READING = re.compile(r'Answer: (\w+)'
                     r'|"(?:town|colour|pet|job)": "([^"]+)"')
# COPIED finds what is copied rather than read off: a record's name, and a story's working (the two numbers
# copied from the story, then their sum or difference). It counts as an answer in the second stage only. There,
# after rung 02's SFT, it took held-out word problems from 11% to 98%; in the first stage instead, worked stories
# crowded out reading (a stranger's town read right 30% of the time after 600 steps, not 100%), and record names
# left extraction after SFT at 8%.
COPIED = re.compile(r'"name": "([^"]+)"'
                    r'|(\d+) (?:plus|minus) (\d+) is (\d+), so')


def answer_spans(text: str, patterns=(READING, COPIED)) -> list[tuple[int, int]]:
    """Character spans of the answers in one document (see READING and COPIED), in order."""
    return sorted(match.span(group) for pattern in patterns for match in pattern.finditer(text)
                  for group in range(1, pattern.groups + 1) if match.group(group) is not None)


# GPT-2-style BPE spells a word differently after a space (" Fenwick") and after an opening quote ("Fenwick"),
# so a JSON value would use tokens the model never read the fact with. The normaliser puts a space after an
# opening quote that starts a word -- {"town": "Fenwick"} is read as {" town": " Fenwick"} -- and the decoder
# takes it out again, so text round-trips unchanged.
OPENING_QUOTE = r'(?<=^|[\s{\[:,(])"'


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE (like GPT-2 / Llama 3), wrapped as a transformers fast tokenizer with a chat template.

    As in GPT-2, a space belongs to the word after it: "lives in Fenwick" is ... " in", " Fenwick".
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.Replace(Regex(OPENING_QUOTE + r'(?=\w)'), '" ')
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace(Regex(OPENING_QUOTE + r' (?=\w)'), '"')])
    specials = list(SPECIAL_TOKENS.values()) + CHAT_TOKENS
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, **SPECIAL_TOKENS,
                                        additional_special_tokens=CHAT_TOKENS, clean_up_tokenization_spaces=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = CONFIG["max_position_embeddings"]
    return tokenizer


def answer_weights(texts: list[str], tokenizer, weight: float, other: float = 1.0,
                   patterns=(READING, COPIED)) -> list[list[float]]:
    """A loss weight per token of tokenize_documents(texts): `weight` on answers, `other` everywhere else."""
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    weights = []
    for text, offsets in zip(texts, encoded):
        spans = answer_spans(text, patterns)
        in_answer = [any(start < span_end and span_start < end for span_start, span_end in spans)
                     for start, end in offsets]
        weights.append([other, *(weight if inside else other for inside in in_answer), other])  # <s> ... </s>
    return weights


def pack(documents: list[list], seq_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Documents (shuffled when a generator is given) end to end, cut into rows of seq_len (``cut_into_rows``,
    as held-out perplexity reads text too).

    Shuffling anew every epoch matters: with one fixed packing, each row is the same 128 tokens every time
    and a small model learns to recite rows -- "after this bio comes that one" -- instead of facts.
    """
    order = torch.randperm(len(documents), generator=generator).tolist() if generator else range(len(documents))
    return cut_into_rows([documents[i] for i in order], seq_len)


def batches(documents: list[list], cfg: dict, generator: torch.Generator):
    """An endless stream of training batches, repacking the corpus at the start of every epoch."""
    while True:
        rows = pack(documents, cfg["seq_len"], generator)
        for i in range(0, len(rows) - cfg["batch_size"] + 1, cfg["batch_size"]):
            yield rows[i:i + cfg["batch_size"]]


def weighted_lm_loss(model, batch: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Next-token loss over a batch of (token, weight) rows: the weighted mean that trains, and the plain
    mean (what the model card reports as training loss)."""
    ids, weights = batch[..., 0].long(), batch[..., 1][:, 1:]
    logits = model(input_ids=ids).logits[:, :-1]
    per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    return (per_token * weights).sum() / weights.sum(), per_token.mean().item()


def lr_at(step: int, cfg: dict) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < cfg["warmup_steps"]:
        return cfg["lr"] * (step + 1) / cfg["warmup_steps"]
    progress = (step - cfg["warmup_steps"]) / max(1, cfg["steps"] - cfg["warmup_steps"])
    return cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(cfg: dict = TRAIN, model_config: dict = CONFIG, log_every: int = 50):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg["seed"])
    train_texts = read_corpus("train")
    tokenizer = train_tokenizer(train_texts, model_config["vocab_size"])
    config = LlamaConfig(**{**model_config, "vocab_size": len(tokenizer)}, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(cfg["seed"])
    start = time.time()

    if cfg["reading_steps"]:
        # Stage 1, reading: documents that answer from themselves (not the question pages about world
        # people), loss on the answers only.
        reading_texts = [t for t in train_texts if READING.search(t) and not t.startswith("Question:")]
        reading_docs = weighted_documents(reading_texts, tokenizer, weight=1.0, other=0.0, patterns=(READING,))
        reading_cfg = {**cfg, "steps": cfg["reading_steps"], "lr": cfg["reading_lr"]}
        train_stage(model, tokenizer, optimizer, batches(reading_docs, cfg, generator), reading_cfg, "reading",
                    log_every, start)
    # Stage 2 (or the only one), everything: the whole corpus, answers counted answer_weight times.
    documents = weighted_documents(train_texts, tokenizer, weight=cfg["answer_weight"])
    losses = train_stage(model, tokenizer, optimizer, batches(documents, cfg, generator), cfg, "corpus",
                         log_every, start)
    stats = {"train_seconds": round(time.time() - start, 1), "steps": cfg["reading_steps"] + cfg["steps"],
             "tokens_seen": (cfg["reading_steps"] + cfg["steps"]) * cfg["batch_size"] * cfg["seq_len"],
             "corpus_tokens": sum(map(len, documents)), "final_train_loss": round(sum(losses[-50:]) / 50, 4)}
    return model, tokenizer, stats


def weighted_documents(texts: list[str], tokenizer, weight: float, other: float = 1.0,
                       patterns=(READING, COPIED)) -> list[list[tuple]]:
    """Each document as (token, loss weight) pairs, ready for pack()."""
    weights = answer_weights(texts, tokenizer, weight, other, patterns)
    return [list(zip(ids, w)) for ids, w in zip(tokenize_documents(texts, tokenizer), weights)]


def train_stage(model, tokenizer, optimizer, stream, cfg: dict, stage: str, log_every: int, start: float):
    """cfg["steps"] optimizer steps on the stream, with warm-up and cosine decay; returns the plain losses.

    The log shows what the model has learned so far: cloze recall of 50 world people and reading (a passage
    about a stranger, then a question) for 20 strangers.
    """
    from shared.world.generator import build_world

    people = build_world()["people"][:50]
    losses, trained = [], []
    model.train()
    for step in range(cfg["steps"]):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss, plain_loss = weighted_lm_loss(model, next(stream))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(plain_loss)
        trained.append(loss.item())
        if (step + 1) % log_every == 0 or step == cfg["steps"] - 1:
            recall = cloze_recall(model, tokenizer, people)
            reading = reading_accuracy(model, tokenizer, n=20)
            model.train()
            print(f"{stage} {step + 1:5d}  loss {sum(trained[-log_every:]) / len(trained[-log_every:]):.3f}  "
                  f"lr {lr_at(step, cfg):.2e}  recall " + " ".join(f"{k} {v:.0%}" for k, v in recall.items())
                  + "  reading " + " ".join(f"{k} {v:.0%}" for k, v in reading.items())
                  + f"  {time.time() - start:5.0f}s", flush=True)
    return losses


def save(model, tokenizer, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    # bf16 on disk halves the repo's size; loading upcasts to the dtype the profile asks for.
    model.to(torch.bfloat16).save_pretrained(out_dir)
    model.to(torch.float32)
    tokenizer.save_pretrained(out_dir)
    generation = {"bos_token_id": tokenizer.bos_token_id, "pad_token_id": tokenizer.pad_token_id,
                  "eos_token_id": [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|end|>")],
                  "do_sample": False}
    (out_dir / "generation_config.json").write_text(json.dumps(generation, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Pretrain the tiny base model and write its model card.")
    parser.add_argument("--out", type=Path, default=TINY_BASE_DIR, help="where to save (default: data/tiny-base)")
    args = parser.parse_args(argv)
    model, tokenizer, stats = pretrain(log_every=400)
    save(model, tokenizer, args.out)
    card.write(args.out, stats, TRAIN, CONFIG)
    if args.out.resolve() == TINY_BASE_DIR.resolve():
        checksums.update(DATA_DIR)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
