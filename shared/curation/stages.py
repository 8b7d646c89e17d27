"""The course's reference for each stage of a curation pipeline (rung 05). Every stage takes a list of examples
(id, task, prompt, answer) and returns the ones it keeps, in order; a dedup stage keeps the first of each group.

    kept = exact_dedup(rows)                                   # normalise(), then one of each
    kept = minhash_dedup(kept, threshold=0.8)                  # datasketch MinHash + LSH over character 5-grams
    kept = semantic_dedup(kept, embed([e["prompt"] for e in kept]), threshold=0.8)   # same answer, same meaning
    kept = [e for e in kept if problem(e, world) is None]      # the format, and the answer against the world
    kept = decontaminate(kept, eval_examples)                  # no training example the eval splits cover
    kept = rebalance(kept, seed=0)                             # as many of each task as the rarest has
"""

from __future__ import annotations

import json
import random
import re

from shared.curation.dirty import SHINGLE, normalise, shingles
from shared.evaluation.contamination import example_text
from shared.retrieval import embed  # noqa: F401  (a stage of the pipeline: the prompts' sentence embeddings)

NEAR = 0.8       # character 5-gram Jaccard at or above which two examples are near duplicates
SAME_MEANING = 0.8   # cosine of prompt embeddings at or above which two examples with one answer are one
NUM_PERM = 128   # MinHash permutations: the estimate's standard error is about 1 / sqrt(128) = 0.09


def exact_dedup(examples: list[dict]) -> list[dict]:
    """The first example of each group whose prompt and answer are equal after ``normalise``."""
    seen, kept = set(), []
    for example in examples:
        key = (normalise(example["prompt"]), normalise(example["answer"]))
        if key not in seen:
            seen.add(key)
            kept.append(example)
    return kept


def minhash(text: str, num_perm: int = NUM_PERM, size: int = SHINGLE):
    """A datasketch MinHash of the text's character shingles (seeded: the same text, the same signature)."""
    from datasketch import MinHash

    signature = MinHash(num_perm=num_perm, seed=1)
    for shingle in sorted(shingles(text, size)):
        signature.update(shingle.encode("utf-8"))
    return signature


def minhash_dedup(examples: list[dict], threshold: float = NEAR, num_perm: int = NUM_PERM) -> list[dict]:
    """Drop an example whose estimated Jaccard similarity (prompt and answer, character 5-grams) with one
    already kept is at least `threshold`. LSH finds the candidates without comparing every pair; the estimate
    then decides (LSH alone lets through some pairs below the threshold)."""
    from datasketch import MinHashLSH

    index = MinHashLSH(threshold=threshold, num_perm=num_perm)
    signatures, kept = {}, []
    for example in examples:
        signature = minhash(example_text(example), num_perm)
        if any(signature.jaccard(signatures[key]) >= threshold for key in index.query(signature)):
            continue
        key = str(len(kept))
        index.insert(key, signature)
        signatures[key] = signature
        kept.append(example)
    return kept


def semantic_dedup(examples: list[dict], embeddings, threshold: float = SAME_MEANING) -> list[dict]:
    """Drop an example whose answer equals (after ``normalise``) the answer of one already kept and whose prompt
    embedding (row i of `embeddings`, unit length) has cosine similarity at least `threshold` with that one's.
    The answer must match because a sentence embedding hardly sees names and numbers: two different sums told
    as stories, or two people's towns, embed almost alike."""
    kept, kept_rows = [], []
    for i, example in enumerate(examples):
        answer = normalise(example["answer"])
        if any(normalise(examples[j]["answer"]) == answer and float(embeddings[i] @ embeddings[j]) >= threshold
               for j in kept_rows):
            continue
        kept_rows.append(i)
        kept.append(example)
    return kept


# -- quality: the answer's shape, and the answer against the world ----------------------------------------------
_SUM = re.compile(r"^(\d+) (plus|minus) (\d+) is (\d+)\.$")


def problem(example: dict, world: dict) -> str | None:
    """What is wrong with an example's answer, or None: "off format: ..." when it is not in the task's shape,
    "wrong: ..." when it is and says something the world (or the prompt) contradicts."""
    answer, prompt, task = example["answer"].strip(), example["prompt"], example["task"]
    if not answer:
        return "off format: empty answer"
    if task == "closed_qa":
        return _closed_qa_problem(answer, prompt, world)
    if task == "extraction":
        return _extraction_problem(answer, prompt)
    if task == "arithmetic":
        return _arithmetic_problem(answer, prompt)
    return f"off format: unknown task {task!r}"


def _closed_qa_problem(answer: str, prompt: str, world: dict) -> str | None:
    from shared.world.generator import ANSWER_SENTENCES

    person = next((p for p in world["people"] if p["name"] in prompt), None)
    if person is None:
        return "wrong: the question names no one in the world"
    for fact, sentence in ANSWER_SENTENCES.items():
        pattern = re.escape(sentence).replace(re.escape("{name}"), re.escape(person["name"]))
        found = re.fullmatch(pattern.replace(re.escape("{" + fact + "}"), r"(?P<value>[\w ]+)"), answer)
        if found:
            return None if found["value"] == person[fact] else (
                f"wrong: {person['name']}'s {fact} is {person[fact]}, not {found['value']}")
    return "off format: not one of the answer sentences"


def _extraction_problem(answer: str, prompt: str) -> str | None:
    try:
        record = json.loads(answer)
    except json.JSONDecodeError:
        return "off format: not JSON"
    if not isinstance(record, dict) or list(record) != ["name", "town", "job"]:
        return "off format: the keys are not name, town, job"
    passage = prompt.split("Text:", 1)[-1]
    missing = [field for field, value in record.items() if not isinstance(value, str) or value not in passage]
    return f"wrong: {', '.join(missing)} not in the text" if missing else None


def _arithmetic_problem(answer: str, prompt: str) -> str | None:
    found = _SUM.fullmatch(answer)
    if not found:
        return "off format: not 'a plus/minus b is c.'"
    a, op, b, result = int(found[1]), found[2], int(found[3]), int(found[4])
    if [a, b] != [int(n) for n in re.findall(r"\d+", prompt)][:2]:
        return "wrong: not the prompt's numbers"
    right = a + b if op == "plus" else a - b
    return None if result == right else f"wrong: {a} {op} {b} is {right}, not {result}"


# -- decontamination and the task mix ---------------------------------------------------------------------------
def decontaminate(examples: list[dict], eval_examples: list[dict], n: int | None = None,
                  dirty: float | None = None) -> list[dict]:
    """The examples whose text (prompt and answer) the eval examples' word n-grams cover less than `dirty`
    (rung 09's measure, turned round: here the training example is the one looked for in the eval split)."""
    from shared.evaluation import contamination

    eval_texts = [example_text(e) for e in eval_examples]
    n = n or contamination.ngram_size(eval_texts)
    dirty = contamination.DIRTY if dirty is None else dirty
    seen = contamination.training_ngrams(eval_texts, n)
    return [e for e in examples if contamination.covered_share(example_text(e), seen, n) < dirty]


def rebalance(examples: list[dict], seed: int = 0, per_task: int | None = None) -> list[dict]:
    """At most `per_task` examples of each task (default: as many as the rarest task has), drawn with
    random.Random(seed) and kept in their order."""
    tasks = sorted({e["task"] for e in examples})
    counts = {task: sum(e["task"] == task for e in examples) for task in tasks}
    limit = min(counts.values()) if per_task is None else per_task
    rng = random.Random(seed)
    chosen = set()
    for task in tasks:
        indices = [i for i, e in enumerate(examples) if e["task"] == task]
        chosen.update(rng.sample(indices, min(limit, len(indices))))
    return [e for i, e in enumerate(examples) if i in chosen]
