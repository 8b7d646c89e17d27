"""A dirty instruction set made from the tiny world's clean tasks, with what is wrong with every example.

Real instruction sets collected from many sources hold the same flaws in the same places: the same example
twice (once with other spacing or quotes), again with a word changed, again in other words, answers in the
wrong shape, answers that are wrong, questions copied from a benchmark, and far more of one task than of the
others. ``dirty_instructions`` makes such a set from rung 02's clean examples and labels each row with its
``flaw`` (one of ``FLAWS``) -- the ground truth a curation pipeline is measured against:

* ``duplicate`` -- a clean example again, changed only in ways ``normalise`` undoes (case, spacing, quotes);
* ``near_duplicate`` -- a clean example with one small edit (a word dropped or added, two letters swapped):
  character 5-gram Jaccard similarity to it at least ``NEAR_JACCARD``, the range MinHash finds;
* ``paraphrase`` -- a clean example asked in other words with the same answer: Jaccard below
  ``PARAPHRASE_JACCARD``, found only by meaning (sentence embeddings);
* ``off_format`` -- an answer in the wrong shape: empty, cut short, not the task's format, broken JSON;
* ``wrong_answer`` -- well formed, and wrong about the world (another town, another sum);
* ``leaked`` -- a held-out eval example copied into the training set (``LEAKS``: some many times over);
* ``clean`` -- the rest; the set's task mix is skewed (``MIX``).

Every copy comes after the example it copies, so "keep the first of each group" keeps the clean one. The
``source`` field names the example a copy was made from. A pipeline under test must see neither field:
``without_labels`` strips them.

    rows = dirty_instructions(seed=0)          # the notebook's set; a checker makes its own from another seed
"""

from __future__ import annotations

import json
import random
import re
import unicodedata

from shared.evaluation.contamination import example_text   # what dedup compares: prompt and answer together
from shared.world.tasks import FLAWS                         # the registry's labels for a dirty example

LABELS = ("flaw", "source")               # the ground truth: what a pipeline under test must not see
MIX = {"closed_qa": 120, "extraction": 120, "arithmetic": 360}   # clean examples per task: a skewed mix
# How many flawed examples per clean one, for each flaw but leaks. A quarter of the answers wrong: enough to
# cost the raw set's model accuracy (arithmetic 81-89% against 92-98% curated, seeds 0/1/2).
SHARES = {"duplicate": 0.08, "near_duplicate": 0.08, "paraphrase": 0.08, "off_format": 0.05, "wrong_answer": 0.25}
# Leaked eval examples: task -> (how many held-out examples, copies of each). A few of the clean tasks' own, and
# a benchmark the set's sources copied many times over -- 30 two-step problems (rung 07's task, which no clean
# example teaches), 5 copies each: enough for a model to learn those 30 answers (80-100% right) and none of the
# skill (6-14% of the other 70).
LEAKS = {"closed_qa": (10, 1), "extraction": (10, 1), "arithmetic": (10, 1), "two_step": (30, 5)}
NEAR_JACCARD = 0.85     # a near duplicate is at least this similar to its original (character 5-grams)
PARAPHRASE_JACCARD = 0.5  # a paraphrase is less similar than this: no n-gram method finds it
SHINGLE = 5               # characters per shingle

# Other words for the same questions: none of these is a wording the clean tasks use.
CLOSED_QA_PARAPHRASES = {
    "town": ["In which town does {name} live?", "Tell me the town that {name} calls home.",
             "Name the town {name} lives in."],
    "colour": ["Which colour is {name} fondest of?", "Tell me the colour {name} prefers.",
               "Name {name}'s best-loved colour."],
    "pet": ["Which animal does {name} keep as a pet?", "Tell me what animal lives with {name}.",
            "Name the pet that {name} owns."],
    "job": ["How does {name} earn a living?", "Tell me the work {name} does.", "Name {name}'s trade."],
}
ARITHMETIC_PARAPHRASES = {
    "+": ["Start with {a} {item} belonging to {name}, then add {b} more. What is the total number of {item}?",
          "If {name} owned {a} {item} and then received {b} extra, how many {item} would {name} own?"],
    "-": ["Start with {a} {item} belonging to {name}, then take {b} away. What number of {item} remains?",
          "If {name} owned {a} {item} and then handed over {b}, how many {item} would {name} still own?"],
}
FILLERS = ["please", "now", "quickly", "exactly", "just"]


# -- normalisation: what an exact duplicate differs in -------------------------------------------------------
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def normalise(text: str) -> str:
    """Unicode NFKC, typographic quotes made plain, case folded, every run of whitespace one space, stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold().split())


def shingles(text: str, size: int = SHINGLE) -> set[str]:
    """The text's character `size`-grams, after ``normalise`` (a text shorter than that is its own shingle)."""
    text = normalise(text)
    return {text[i:i + size] for i in range(max(1, len(text) - size + 1))}


def jaccard(a: str, b: str, size: int = SHINGLE) -> float:
    """Exact Jaccard similarity of two texts' shingle sets -- what MinHash estimates."""
    first, second = shingles(a, size), shingles(b, size)
    return len(first & second) / len(first | second)


# -- making each flaw ----------------------------------------------------------------------------------------
def _respaced(text: str, rng: random.Random) -> str:
    """The same text in a form normalise() undoes: other case, doubled spaces, curly quotes, a trailing space."""
    words = text.split(" ")
    for i in rng.sample(range(len(words)), k=max(1, len(words) // 4)):
        words[i] = words[i] + " "
    text = " ".join(words).replace("'", "\u2019")
    text = rng.choice([str.upper, str.lower, str])(text)
    return text + rng.choice([" ", "\n", "  "])


def duplicate(example: dict, rng: random.Random) -> dict:
    return {**example, "prompt": _respaced(example["prompt"], rng), "answer": example["answer"] + " "}


def _one_edit(prompt: str, rng: random.Random) -> str:
    words = prompt.split(" ")
    edit = rng.choice(["drop", "add", "swap"])
    i = rng.randrange(len(words))
    if edit == "drop" and len(words) > 4:
        del words[i]
    elif edit == "add":
        words.insert(i, rng.choice(FILLERS))
    else:   # two neighbouring letters of a longer word swapped: a typo
        long = [j for j, word in enumerate(words) if len(word) >= 5 and word.isalpha()] or [i]
        j = rng.choice(long)
        word = words[j]
        k = rng.randrange(1, max(2, len(word) - 2))
        words[j] = word[:k] + word[k + 1] + word[k] + word[k + 2:] if len(word) > k + 1 else word + "s"
    return " ".join(words)


def near_duplicate(example: dict, rng: random.Random) -> dict | None:
    """One small edit of the prompt, kept only when it is still at least NEAR_JACCARD like the original and is
    not an exact duplicate of it (None when ten tries found no such edit)."""
    for _ in range(10):
        edited = {**example, "prompt": _one_edit(example["prompt"], rng)}
        text, original = example_text(edited), example_text(example)
        if normalise(text) != normalise(original) and jaccard(text, original) >= NEAR_JACCARD:
            return edited
    return None


def paraphrase(example: dict, rng: random.Random) -> dict | None:
    """The same question in other words, the same answer (None when the task has no other words for it, or
    every wording tried was still too like the original)."""
    from shared.world.generator import EXTRACTION_INSTRUCTION, FACT_SENTENCES, ITEMS, biography

    meta = example.get("meta", {})
    for _ in range(10):
        if example["task"] == "closed_qa":
            prompt = rng.choice(CLOSED_QA_PARAPHRASES[meta["fact"]]).format(name=meta["name"])
        elif example["task"] == "arithmetic":
            item = next(word for word in ITEMS + ["acorns", "feathers"] if word in example["prompt"].split())
            prompt = rng.choice(ARITHMETIC_PARAPHRASES[meta["op"]]).format(name=meta["name"], item=item,
                                                                            a=meta["a"], b=meta["b"])
        elif example["task"] == "extraction":
            person = json.loads(example["answer"])
            passage = biography(person, rng, facts=["town", "job"], sentences=FACT_SENTENCES)
            prompt = EXTRACTION_INSTRUCTION.format(passage=passage)
        else:
            return None
        rewritten = {**example, "prompt": prompt}
        if jaccard(example_text(rewritten), example_text(example)) < PARAPHRASE_JACCARD:
            return rewritten
    return None


def off_format(example: dict, rng: random.Random) -> dict:
    """The answer in a shape the task never uses: empty, cut off mid-way, or (per task) the bare value,
    broken JSON, a sum without its result."""
    answer = example["answer"]
    shapes = [lambda: "", lambda: answer[:max(1, len(answer) // 2)]]
    if example["task"] == "closed_qa":
        shapes.append(lambda: example["meta"]["value"])                      # the bare value, no sentence
    elif example["task"] == "extraction":
        shapes.append(lambda: answer.rstrip("}"))                            # JSON left open
        shapes.append(lambda: answer.replace('"job"', '"occupation"'))       # a key the task does not use
    elif example["task"] == "arithmetic":
        shapes.append(lambda: re.sub(r" is \d+\.$", ".", answer))           # the working without the result
    return {**example, "answer": rng.choice(shapes)()}


def wrong_answer(example: dict, rng: random.Random) -> dict:
    """Well formed and wrong: another value of the same fact, another town or job in the JSON, a sum off by
    one to three."""
    from shared.world.generator import COLOURS, JOBS, PETS, TOWNS

    values = {"town": TOWNS, "colour": COLOURS, "pet": PETS, "job": JOBS}
    if example["task"] == "closed_qa":
        fact, value = example["meta"]["fact"], example["meta"]["value"]
        other = rng.choice([v for v in values[fact] if v != value])
        answer = re.sub(rf"\b{re.escape(value)}\b", other, example["answer"])
    elif example["task"] == "extraction":
        record = json.loads(example["answer"])
        field = rng.choice(["town", "job"])
        record[field] = rng.choice([v for v in values[field] if v != record[field]])
        answer = json.dumps(record)
    else:
        result = int(re.search(r"is (\d+)\.$", example["answer"]).group(1))
        wrong = result + rng.choice([d for d in (-3, -2, -1, 1, 2, 3) if result + d >= 0])
        answer = re.sub(r"is \d+\.$", f"is {wrong}.", example["answer"])
    return {**example, "answer": answer}


# -- the set -------------------------------------------------------------------------------------------------
def dirty_instructions(seed: int = 0, mix: dict[str, int] | None = None, shares: dict[str, float] | None = None,
                       leaks: dict[str, tuple[int, int]] | None = None, source_split: str = "train",
                       leak_split: str = "heldout") -> list[dict]:
    """A dirty instruction set drawn with `seed`: `mix` clean examples per task from `source_split`, for each
    flaw round(share x the clean count) flawed ones, and `leaks` (task -> examples, copies) from `leak_split`.
    Rows: id, task, prompt, answer, meta, flaw, source (for a leak, the eval example's own id)."""
    from shared.world import data

    rng = random.Random(seed)
    mix, shares = dict(mix or MIX), dict(shares or SHARES)
    clean = []
    for task, count in mix.items():
        clean += rng.sample(data.load_task(task, source_split), count)
    rng.shuffle(clean)
    rows = [{**example, "flaw": "clean", "source": None} for example in clean]

    def copies_of(flaw: str, make) -> list[dict]:
        made = []
        for original in rng.sample(clean, len(clean)):
            if len(made) == round(shares.get(flaw, 0) * len(clean)):
                break
            copy = make(original, rng)
            if copy is not None:
                made.append({**copy, "flaw": flaw, "source": original["id"]})
        return made

    flawed = (copies_of("duplicate", duplicate) + copies_of("near_duplicate", near_duplicate)
              + copies_of("paraphrase", paraphrase))
    # Off-format and wrong answers replace the clean example they were made from: the set holds the bad one.
    for flaw, make in (("off_format", off_format), ("wrong_answer", wrong_answer)):
        copied = {row["source"] for row in flawed}
        untouched = [i for i, row in enumerate(rows) if row["flaw"] == "clean" and row["id"] not in copied]
        for i in rng.sample(untouched, round(shares.get(flaw, 0) * len(clean))):
            rows[i] = {**make(rows[i], rng), "flaw": flaw, "source": rows[i]["id"]}
    for task, (count, copies) in (LEAKS if leaks is None else leaks).items():
        flawed += [{**example, "flaw": "leaked", "source": example["id"]}
                   for example in rng.sample(data.load_task(task, leak_split), count) for _ in range(copies)]
    for row in flawed:   # each copy somewhere after the example it copies (a leak anywhere)
        after = 0 if row["flaw"] == "leaked" else 1 + next(i for i, r in enumerate(rows) if r["id"] == row["source"])
        rows.insert(rng.randint(after, len(rows)), row)
    originals = ("clean", "off_format", "wrong_answer")   # what a copy's source names (copies share its id)
    new_ids = {row["id"]: f"dirty-{seed}-{n:04d}" for n, row in enumerate(rows) if row["flaw"] in originals}
    return [{**row, "id": f"dirty-{seed}-{n:04d}",
             "source": row["source"] if row["flaw"] == "leaked" else new_ids.get(row["source"])}
            for n, row in enumerate(rows)]


def without_labels(rows: list[dict]) -> list[dict]:
    """The rows as a pipeline under test sees them: no flaw, no source, no meta (which would give answers away)."""
    return [{key: value for key, value in row.items() if key not in (*LABELS, "meta")} for row in rows]
