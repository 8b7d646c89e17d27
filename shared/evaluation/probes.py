"""Knowledge probes: what a model knows of the tiny world, asked in plain prose (no chat format).

* ``cloze_recall`` -- "Mira Olsen lives in" -> her town: the world's facts, stored in the weights;
* ``sum_recall`` -- "7 plus 5 is" -> 12: the sums and differences the corpus spells out;
* ``reading_accuracy`` -- a passage about a stranger, then a question: answering from what it has just read.

The base model card reports all three; pretraining logs the first and the last as it trains; after fine-tuning
they show whether the knowledge survived (a fine-tune can teach a format and erase facts).
"""

from __future__ import annotations

import torch

CLOZE_PROMPTS = {"town": "{name} lives in", "colour": "{name}'s favourite colour is",
                 "pet": "{name} has a pet", "job": "{name} works as a"}


@torch.no_grad()
def continuations(model, tokenizer, prompts: list[str], max_new_tokens: int = 3) -> list[str]:
    """What the model writes next after each prose prompt, greedy, stripped of surrounding spaces."""
    model.eval()
    device = next(model.parameters()).device
    encoded = [[tokenizer.bos_token_id, *tokenizer(p, add_special_tokens=False)["input_ids"]] for p in prompts]
    width = max(map(len, encoded))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(e)) + e for e in encoded], device=device)  # left
    mask = (ids != tokenizer.pad_token_id).long()
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    return [text.strip() for text in tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]


def cloze_hits(model, tokenizer, people: list[dict]) -> dict[str, list[int]]:
    """For each fact, one verdict per person: 1 when the model writes the person's fact next after a plain prose
    prompt, else 0."""
    hits = {}
    for fact, template in CLOZE_PROMPTS.items():
        texts = continuations(model, tokenizer, [template.format(**p) for p in people])
        hits[fact] = [int(t.startswith(p[fact])) for t, p in zip(texts, people)]
    return hits


def cloze_recall(model, tokenizer, people: list[dict]) -> dict[str, float]:
    """Share of people whose fact the model writes next after a plain prose prompt."""
    return {fact: sum(found) / len(found) for fact, found in cloze_hits(model, tokenizer, people).items()}


def sum_recall(model, tokenizer) -> dict[str, float]:
    """Share of the sums and differences in the corpus ("7 plus 5 is") that the model completes right."""
    from shared.world.generator import MAX_OPERAND

    pairs = [(a, b) for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)]
    recall = {}
    for word, op, usable in (("plus", int.__add__, pairs), ("minus", int.__sub__, [p for p in pairs if p[0] >= p[1]])):
        texts = continuations(model, tokenizer, [f"{a} {word} {b} is" for a, b in usable])
        recall[word] = sum(t.split(".")[0] == str(op(a, b)) for t, (a, b) in zip(texts, usable)) / len(usable)
    return recall


def reading_accuracy(model, tokenizer, n: int = 100) -> dict[str, float]:
    """Passages about people the model never read about, then a question: share answered from the passage."""
    import random
    from dataclasses import asdict

    from shared.world.generator import QUESTIONS, biography, build_world, strangers

    rng = random.Random(5)
    people = strangers(99, n, build_world())
    passages = [biography(asdict(p), rng) for p in people]
    accuracy = {}
    for fact in CLOZE_PROMPTS:
        prompts = [f"Passage: {text}\nQuestion: {QUESTIONS[fact][0].format(name=p.name)}\nAnswer:"
                   for text, p in zip(passages, people)]
        texts = continuations(model, tokenizer, prompts)
        accuracy[fact] = sum(t.startswith(getattr(p, fact)) for t, p in zip(texts, people)) / n
    return accuracy
