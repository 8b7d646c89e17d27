"""Build the tiny base model: train a BPE tokenizer and pretrain a small Llama on the tiny-world corpus.

``make base-model`` runs ``python -m shared.pretrain``; it takes about 6 minutes on 2 CPU cores and writes
``data/tiny-base/`` (weights, tokenizer with a chat template, and a model card with measured figures).

The model is a real Llama (``LlamaForCausalLM``), so everything later rungs use -- PEFT target modules,
bitsandbytes 4-bit layers, TRL trainers -- applies to it unchanged. It is a *base* model: it reads world prose
only. The chat special tokens are in its vocabulary but never in its training text, so before fine-tuning it
has no idea what ``<|user|>`` ... ``<|assistant|>`` asks of it.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import torch

from shared import checksums
from shared.paths import DATA_DIR, TINY_BASE_DIR

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
CHAT_TOKENS = ["<|user|>", "<|assistant|>", "<|end|>"]
# One message per block; the prompt for generation ends right after the assistant header. The space before
# each message matters: in the corpus words follow a space ("lives in Fenwick" -> " Fenwick"), so an answer
# written " Fenwick" reuses the token the model learned the fact with, where "Fenwick" would be a new token.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|> {{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

CONFIG = dict(vocab_size=3072, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
              rope_theta=10000.0, tie_word_embeddings=True)
TRAIN = dict(seq_len=128, batch_size=32, lr=2e-3, warmup_steps=30, steps=700, weight_decay=0.1, seed=0)


def read_corpus(split: str) -> list[str]:
    path = DATA_DIR / "world" / f"corpus.{split}.jsonl"
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE (like GPT-2 / Llama 3), wrapped as a transformers fast tokenizer with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = list(SPECIAL_TOKENS.values()) + CHAT_TOKENS
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, **SPECIAL_TOKENS,
                                        additional_special_tokens=CHAT_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = CONFIG["max_position_embeddings"]
    return tokenizer


def pack(texts: list[str], tokenizer, seq_len: int) -> torch.Tensor:
    """Concatenate <s> doc </s> <s> doc </s> ... and cut into rows of seq_len tokens."""
    ids: list[int] = []
    for text in texts:
        ids += [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"],
                tokenizer.eos_token_id]
    n_rows = len(ids) // seq_len
    return torch.tensor(ids[: n_rows * seq_len]).view(n_rows, seq_len)


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


def pretrain(cfg: dict = TRAIN, log_every: int = 50):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg["seed"])
    random.seed(cfg["seed"])
    train_texts = read_corpus("train")
    tokenizer = train_tokenizer(train_texts, CONFIG["vocab_size"])
    rows = pack(train_texts, tokenizer, cfg["seq_len"])
    config = LlamaConfig(**{**CONFIG, "vocab_size": len(tokenizer)}, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(cfg["seed"])
    order = torch.randperm(len(rows), generator=generator)
    cursor, losses, start = 0, [], time.time()
    model.train()
    for step in range(cfg["steps"]):
        if cursor + cfg["batch_size"] > len(order):
            order, cursor = torch.randperm(len(rows), generator=generator), 0
        batch = rows[order[cursor:cursor + cfg["batch_size"]]]
        cursor += cfg["batch_size"]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % log_every == 0 or step == cfg["steps"] - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  lr {lr_at(step, cfg):.2e}  {time.time() - start:5.0f}s",
                  flush=True)
    stats = {"train_seconds": round(time.time() - start, 1), "steps": cfg["steps"],
             "tokens_seen": cfg["steps"] * cfg["batch_size"] * cfg["seq_len"],
             "corpus_tokens": int(rows.numel()), "final_train_loss": round(sum(losses[-50:]) / 50, 4)}
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


def main() -> None:
    from shared import basecard

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tokenizer, stats = pretrain()
    save(model, tokenizer, TINY_BASE_DIR)
    basecard.write(TINY_BASE_DIR, stats, TRAIN, CONFIG)
    checksums.update(DATA_DIR)
    print(f"saved {TINY_BASE_DIR}")


if __name__ == "__main__":
    main()
