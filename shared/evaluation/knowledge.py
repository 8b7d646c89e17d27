"""What a model knows about the newcomers, closed book (the question alone) and open book (a passage first):
the share of each kind of question answered right (``newcomers.is_right``), plain-text prompts.

    closed_book(model, tokenizer, questions)                   # kind -> accuracy
    open_book(model, tokenizer, questions, passages)           # passages: question id -> the text put first
"""

from __future__ import annotations

from shared.evaluation.generation import complete
from shared.world.newcomers import is_right, question_prompt, reading_prompt


def _accuracy(model, tokenizer, items: list[dict], prompts: list[str], desc: str) -> float:
    answers = complete(model, tokenizer, prompts, desc=desc)
    return sum(is_right(answer, question) for answer, question in zip(answers, items)) / len(items)


def closed_book(model, tokenizer, questions: dict[str, list[dict]]) -> dict[str, float]:
    return {kind: _accuracy(model, tokenizer, items, [question_prompt(q["prompt"]) for q in items], f"{kind}, closed")
            for kind, items in questions.items()}


def open_book(model, tokenizer, questions: dict[str, list[dict]], passages: dict[str, str]) -> dict[str, float]:
    return {kind: _accuracy(model, tokenizer, items, [reading_prompt(passages[q["id"]], q["prompt"]) for q in items],
                            f"{kind}, open") for kind, items in questions.items()}
