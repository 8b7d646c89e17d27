"""Perplexity: how surprised a model is by text, exp(mean next-token loss). Lower is more fluent.

On the tiny world's held-out prose (new write-ups of facts the base model read) it is the base model card's
fluency figure, and after fine-tuning the check for forgetting: a model that lost its prose reads it worse.

    text_perplexity(model, tokenizer, data.read_corpus("validation"))   # 1.75 for the committed tiny base
"""

from __future__ import annotations

import math

import torch


def tokenize_documents(texts: list[str], tokenizer) -> list[list[int]]:
    """Each document as <s> tokens </s>."""
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [[tokenizer.bos_token_id, *ids, tokenizer.eos_token_id] for ids in encoded]


def cut_into_rows(documents: list[list], seq_len: int) -> torch.Tensor:
    """Documents end to end, cut into rows of seq_len tokens (the ragged end dropped): every row is full, so
    no padding is needed. A document may be a list of tokens or of (token, weight) pairs; rows then have a
    last dimension of 2."""
    stream = [token for document in documents for token in document]
    n_rows = len(stream) // seq_len
    packed = torch.tensor(stream[: n_rows * seq_len])
    return packed.view(n_rows, seq_len, *packed.shape[1:])


@torch.no_grad()
def perplexity(model, rows: torch.Tensor, batch_size: int = 32) -> float:
    """exp of the mean next-token loss over rows of token ids (batch means averaged, as the model card has it)."""
    model.eval()
    device = next(model.parameters()).device
    losses = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size].to(device)
        losses.append(model(input_ids=batch, labels=batch).loss.item())
    return math.exp(sum(losses) / len(losses))


@torch.no_grad()
def row_losses(model, rows: torch.Tensor, batch_size: int = 32) -> list[float]:
    """The mean next-token loss of each row on its own: exp of their mean is the perplexity, and a bootstrap over
    rows gives its interval (``shared.evaluation.harness``)."""
    model.eval()
    device = next(model.parameters()).device
    losses = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size].to(device)
        logits = model(input_ids=batch).logits[:, :-1].float()
        per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")
        losses.extend(per_token.mean(dim=1).tolist())
    return losses


def text_perplexity(model, tokenizer, texts: list[str], seq_len: int = 128, batch_size: int = 32) -> float:
    """Perplexity on raw texts, read as pretraining reads its corpus: each text <s> ... </s>, end to end, in
    rows of seq_len tokens (the tiny base's pretraining length)."""
    return perplexity(model, cut_into_rows(tokenize_documents(texts, tokenizer), seq_len), batch_size)
