"""Contamination: how much of an eval example a training set already holds, by word n-gram overlap.

An eval example's *coverage* is the share of its words that lie inside some n-word sequence also found in the
training texts (the measure Llama 2's contamination analysis used, on tokens). A leaked example is covered
whole (1.0); a new one about the same world shares only its template. GPT-3's analysis used 13-grams. The
choice of n cuts both ways: an example shorter than n words holds no n-word run and is never found (most
closed-QA examples here are 10 words), while short runs flag formulaic text that no one leaked ("7 plus 2 is 9.
9 minus 4 is 5."). ``ngram_size`` picks n from the eval split's own lengths.

    n = ngram_size(eval_texts)                       # 13, or less for a split of short examples
    coverage(eval_texts, train_texts, n)             # one share in [0, 1] per eval text
    contamination_report({"SFT mix": texts}, {"closed QA held-out": texts})   # rows: training set x eval split
"""

from __future__ import annotations

import re

NGRAM = 13
DIRTY = 0.8   # coverage at or above this counts as contaminated ("dirty", as Llama 2's analysis had it)
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-case words and numbers, punctuation and spacing dropped: "Mira's  town." -> ["mira", "s", "town"]."""
    return _WORD.findall(text.lower())


def ngram_size(eval_texts, longest: int = NGRAM, shortest: int = 5) -> int:
    """The n for an eval split: `longest` (13), or the length in words of its shortest examples (the 5th
    percentile) when that is less, so that nearly every example is long enough to be found -- but never under
    `shortest`, where runs of common words would match everywhere."""
    lengths = sorted(len(words(text)) for text in eval_texts)
    if not lengths:
        return longest
    fifth_percentile = lengths[int(0.05 * (len(lengths) - 1))]
    return max(shortest, min(longest, fifth_percentile))


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def training_ngrams(train_texts, n: int = NGRAM) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for text in train_texts:
        found |= ngrams(text, n)
    return found


def covered_share(text: str, seen: set[tuple[str, ...]], n: int = NGRAM) -> float:
    """Share of the text's words inside an n-gram that `seen` holds (0.0 for a text with no words)."""
    tokens = words(text)
    covered = [False] * len(tokens)
    for start in range(len(tokens) - n + 1):
        if tuple(tokens[start:start + n]) in seen:
            covered[start:start + n] = [True] * n
    return sum(covered) / len(tokens) if tokens else 0.0


def coverage(eval_texts, train_texts, n: int = NGRAM) -> list[float]:
    seen = training_ngrams(train_texts, n)
    return [covered_share(text, seen, n) for text in eval_texts]


def example_text(example: dict) -> str:
    """What an answer-task example says, prompt and reference answer together (a leak may copy either)."""
    return f"{example['prompt']} {example['answer']}"


def contamination_report(training_sets: dict[str, list[str]], eval_splits: dict[str, list[str]],
                         n: int | None = None, dirty: float = DIRTY):
    """A table, one row per (training set, eval split): n (``ngram_size`` of the split unless given), examples,
    mean coverage and how many are dirty."""
    import pandas as pd

    rows = []
    for train_name, train_texts in training_sets.items():
        for split_name, texts in eval_splits.items():
            size = n or ngram_size(texts)
            seen = training_ngrams(train_texts, size)
            shares = [covered_share(text, seen, size) for text in texts]
            rows.append({"training set": train_name, "eval split": split_name, "n": size, "examples": len(shares),
                         "mean coverage": round(sum(shares) / len(shares), 3) if shares else 0.0,
                         f"dirty (≥ {dirty:.0%})": sum(share >= dirty for share in shares)})
    return pd.DataFrame(rows)
