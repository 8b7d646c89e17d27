"""Build the tiny base model: train a BPE tokenizer and pretrain a small Llama on the tiny-world corpus.

``make base-model`` runs ``python -m shared.pretrain``; it takes about 9½ minutes on 2 CPU cores and writes
``data/tiny-base/`` (weights, tokenizer with a chat template, and a model card with measured figures).

The model is a real Llama (``LlamaForCausalLM``), so everything later rungs use -- PEFT target modules,
bitsandbytes 4-bit layers, TRL trainers -- applies to it unchanged. It is a *base* model: it reads world prose
only. The chat special tokens are in its vocabulary but never in its training text, so before fine-tuning it
has no idea what ``<|user|>`` ... ``<|assistant|>`` asks of it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from shared import checksums
from shared.paths import DATA_DIR, TINY_BASE_DIR

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

CONFIG = dict(vocab_size=900, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
              rope_theta=10000.0, tie_word_embeddings=True)
# Small batches, many steps: a small model learns facts from the number of updates it makes, and on the CPU
# a batch of 8 rows costs a quarter of a batch of 32.
TRAIN = dict(seq_len=128, batch_size=8, lr=2e-3, warmup_steps=30, steps=3000, weight_decay=0.1, seed=0)


def read_corpus(split: str) -> list[str]:
    path = DATA_DIR / "world" / f"corpus.{split}.jsonl"
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


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


def tokenize_documents(texts: list[str], tokenizer) -> list[list[int]]:
    """Each document as <s> tokens </s>."""
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [[tokenizer.bos_token_id, *ids, tokenizer.eos_token_id] for ids in encoded]


def pack(documents: list[list[int]], seq_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Concatenate documents (shuffled when a generator is given) and cut the stream into rows of seq_len.

    Shuffling anew every epoch matters: with one fixed packing, each row is the same 128 tokens every time
    and a small model learns to recite rows -- "after this bio comes that one" -- instead of facts.
    """
    order = torch.randperm(len(documents), generator=generator).tolist() if generator else range(len(documents))
    stream = [token for i in order for token in documents[i]]
    n_rows = len(stream) // seq_len
    return torch.tensor(stream[: n_rows * seq_len]).view(n_rows, seq_len)


def batches(documents: list[list[int]], cfg: dict, generator: torch.Generator):
    """An endless stream of training batches, repacking the corpus at the start of every epoch."""
    while True:
        rows = pack(documents, cfg["seq_len"], generator)
        for i in range(0, len(rows) - cfg["batch_size"] + 1, cfg["batch_size"]):
            yield rows[i:i + cfg["batch_size"]]


def lr_at(step: int, cfg: dict) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < cfg["warmup_steps"]:
        return cfg["lr"] * (step + 1) / cfg["warmup_steps"]
    progress = (step - cfg["warmup_steps"]) / max(1, cfg["steps"] - cfg["warmup_steps"])
    return cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def perplexity(model, rows: torch.Tensor, batch_size: int = 32) -> float:
    model.eval()
    losses = [model(input_ids=rows[i:i + batch_size], labels=rows[i:i + batch_size]).loss.item()
              for i in range(0, len(rows), batch_size)]
    return math.exp(sum(losses) / len(losses))


def pretrain(cfg: dict = TRAIN, model_config: dict = CONFIG, log_every: int = 50):
    from transformers import LlamaConfig, LlamaForCausalLM

    from shared.basecard import cloze_recall
    from shared.world import build_world

    torch.manual_seed(cfg["seed"])
    train_texts = read_corpus("train")
    tokenizer = train_tokenizer(train_texts, model_config["vocab_size"])
    documents = tokenize_documents(train_texts, tokenizer)
    config = LlamaConfig(**{**model_config, "vocab_size": len(tokenizer)}, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.95))
    people = build_world()["people"][:50]  # a quick look at what the model knows, logged as it trains
    stream = batches(documents, cfg, torch.Generator().manual_seed(cfg["seed"]))
    losses, start = [], time.time()
    model.train()
    for step in range(cfg["steps"]):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = next(stream)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % log_every == 0 or step == cfg["steps"] - 1:
            recall = cloze_recall(model, tokenizer, people)
            model.train()
            print(f"step {step + 1:5d}  loss {sum(losses[-log_every:]) / len(losses[-log_every:]):.3f}  "
                  f"lr {lr_at(step, cfg):.2e}  recall " + " ".join(f"{k} {v:.0%}" for k, v in recall.items())
                  + f"  {time.time() - start:5.0f}s", flush=True)
    stats = {"train_seconds": round(time.time() - start, 1), "steps": cfg["steps"],
             "tokens_seen": cfg["steps"] * cfg["batch_size"] * cfg["seq_len"],
             "corpus_tokens": sum(map(len, documents)), "final_train_loss": round(sum(losses[-50:]) / 50, 4)}
    return model, tokenizer, stats


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

    from shared import basecard

    parser = argparse.ArgumentParser(description="Pretrain the tiny base model and write its model card.")
    parser.add_argument("--out", type=Path, default=TINY_BASE_DIR, help="where to save (default: data/tiny-base)")
    args = parser.parse_args(argv)
    model, tokenizer, stats = pretrain(log_every=100)
    save(model, tokenizer, args.out)
    basecard.write(args.out, stats, TRAIN, CONFIG)
    if args.out.resolve() == TINY_BASE_DIR.resolve():
        checksums.update(DATA_DIR)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
