"""The tiny world: a small fictional world, generated from a seed.

Everything the tiny profile trains on comes from here:

* `build_world()`      -- people (town, favourite colour, pet, job) and towns (river, known-for, residents);
* `pretraining_corpus()` -- encyclopedia-style prose about the world, reading-comprehension documents
  (a passage, then questions or a JSON record about it), question-and-answer pages about some world people,
  arithmetic statements and little stories with sums in them. The tiny base model reads only this;
* `task_splits()`       -- three instruction tasks with verifiable answers, each split into
  train / validation / heldout:

  - ``closed_qa``   "Where does Mira Olsen live?" -> "Mira Olsen lives in Fenwick." (the fact is in the corpus,
                    never in the prompt);
  - ``extraction``  a short passage about a stranger -> ``{"name": ..., "town": ..., "job": ...}``;
  - ``arithmetic``  a word problem -> its working and result, "7 minus 3 is 4.".

Held-out data uses people the fine-tuning data never mentions (closed QA), strangers with unseen passage
phrasings (extraction), and unseen names and items (arithmetic).

Why every fact appears in several phrasings and orders: a model that saw each biography written only one
way memorises the text, not the facts, and fine-tuning cannot teach it to answer questions about people it
was not fine-tuned on. Rewriting each biography a few ways ("knowledge augmentation", Allen-Zhu & Li,
*Physics of Language Models* part 3.1) is what lets instruction tuning generalise to unseen people.

Run ``python -m shared.world.generator`` (or ``make data``) to write the files under ``data/``.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from shared.world.tasks import TASKS

SEED = 1234

TOWNS = ["Fenwick", "Harrowgate", "Millbrook", "Oakhollow", "Pellmarsh",
         "Quillby", "Rushford", "Stonemere", "Thistledown", "Wrenfield"]
RIVERS = ["Alder", "Brisk", "Cold Run", "Dunmore", "Elvey"]
KNOWN_FOR = ["its cheese", "its glass", "its horses", "its apples", "its bells",
             "its wool", "its bridges", "its honey", "its lanterns", "its boats"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "teal", "grey", "white", "black"]
PETS = ["cat", "dog", "parrot", "rabbit", "goat", "tortoise", "hamster", "newt", "ferret", "goldfish"]
JOBS = ["baker", "smith", "weaver", "farmer", "potter", "fisher",
        "carpenter", "miller", "tailor", "healer", "teacher", "brewer"]

# Names are built from syllables, so strangers (used for extraction and word problems) look like
# world people to the tokenizer but are guaranteed to be different people.
FIRST_SYLLABLES = ["Ma", "Li", "Ro", "Ta", "Be", "Ka", "Si", "No", "El", "Da", "Fi", "Go",
                   "Ha", "Ju", "Lo", "Mi", "Ne", "Pa", "Ri", "Vo"]
FIRST_ENDINGS = ["ra", "na", "lo", "ric", "bel", "ta", "mon", "sa", "dor", "vin", "la", "ko"]
LAST_SYLLABLES = ["Ash", "Brom", "Cal", "Dun", "Fal", "Gar", "Hol", "Kes", "Lin", "Mor",
                  "Nor", "Pem", "Rad", "Sel", "Tor", "Wal"]
LAST_ENDINGS = ["by", "ford", "ley", "wood", "ton", "well", "more", "ridge", "stead", "croft"]

N_PEOPLE = 150
BIOS_PER_PERSON = 90  # knowledge augmentation: each person is described this many ways (phrasing, order)
READING_DOCS = 3000   # passages about strangers with questions, each about a new person
RECORD_DOCS = 2000    # passages about strangers with a JSON record
STORY_DOCS = 1000     # little stories with a sum in them, the working written out

# -- prose templates -------------------------------------------------------------------------------
FACT_SENTENCES = {
    "town": ["{name} lives in {town}.", "{name} makes a home in {town}.",
             "The town of {town} is where {name} lives.", "{name} is a resident of {town}."],
    "colour": ["{name}'s favourite colour is {colour}.", "{name} likes the colour {colour} best.",
               "Of all the colours, {name} loves {colour} most.", "The colour {name} likes best is {colour}."],
    "pet": ["{name} keeps a {pet} as a pet.", "{name} has a pet {pet}.",
            "{name}'s pet is a {pet}.", "At home, {name} looks after a {pet}."],
    "job": ["{name} works as a {job}.", "{name} is a {job} by trade.",
            "By trade, {name} is a {job}.", "{name} earns a living as a {job}."],
}
# Extraction passages in the held-out split are written with phrasings no training passage uses.
HELDOUT_EXTRACTION_SENTENCES = {
    "town": ["{name}'s house stands in {town}.", "You will find {name} in {town}."],
    "job": ["{name} spends the working day as a {job}.", "People know {name} as the local {job}."],
}
# Extraction passages in the training and validation splits also use these: the more ways a fine-tuning set
# says where someone lives, the less the model ties the name to one sentence shape (the corpus never uses them).
TRAINING_EXTRACTION_SENTENCES = {
    "town": ["In {town} lives {name}.", "{name} settled in {town} long ago.", "Home for {name} is {town}.",
             "Ask in {town} and anyone can point out {name}'s door.", "Everyone in {town} knows {name}.",
             "It is in {town} that {name} has a home.", "Neighbours in {town} often visit {name}.",
             "{name}'s address is in {town}.", "{name} moved to {town} as a child.",
             "The people of {town} count {name} among them.", "A small cottage in {town} belongs to {name}.",
             "{name} would not live anywhere but {town}.", "Letters for {name} go to {town}.",
             "{name} grew up far away but now calls {town} home.", "On the edge of {town} lives {name}.",
             "Nobody in {town} is as cheerful as {name}."],
    "job": ["For work, {name} is a {job}.", "{name} has been a {job} for years.", "The {job} {name} is well liked.",
            "Every morning {name} sets off to work as a {job}.", "Most days you can see {name} busy as a {job}.",
            "Being a {job} suits {name}.", "Ask anyone: {name} is a fine {job}.",
            "{name}'s trade is that of a {job}.", "{name} took up work as a {job} when young.",
            "In the village, {name} is the {job} everyone asks for.", "Trained as a {job}, {name} works hard.",
            "Nobody is a better {job} than {name}.", "Work for {name} means being a {job}.",
            "Each day {name} works as a {job} in the market.", "A {job} like {name} is always busy.",
            "Before dawn, {name} is already busy being a {job}."],
}
# How the assistant answers a closed-QA question: a full sentence, worded the way the corpus states the fact
# ("Mira Olsen lives in Fenwick."), so the answer's last word comes where the model learned to recall it.
ANSWER_SENTENCES = {"town": FACT_SENTENCES["town"][0], "colour": FACT_SENTENCES["colour"][0],
                    "pet": FACT_SENTENCES["pet"][1], "job": FACT_SENTENCES["job"][0]}
QUESTIONS = {
    "town": ["Where does {name} live?", "Which town is {name} from?"],
    "colour": ["What is {name}'s favourite colour?", "Which colour does {name} like best?"],
    "pet": ["What pet does {name} have?", "What kind of pet does {name} keep?"],
    "job": ["What does {name} do for a living?", "What is {name}'s job?"],
}
EXTRACTION_INSTRUCTION = "Extract the person's name, town and job from the text as JSON.\n\nText: {passage}"
ITEMS = ["apples", "coins", "marbles", "pears", "stamps", "shells", "buttons", "eggs"]
HELDOUT_ITEMS = ["acorns", "feathers"]
ADD_STORIES = ["{name} has {a} {item}. {name} finds {b} more. How many {item} does {name} have now?",
               "{name} had {a} {item} and was given {b} more. How many {item} does {name} have?"]
SUB_STORIES = ["{name} has {a} {item}. {name} gives away {b}. How many {item} does {name} have left?",
               "{name} had {a} {item} and lost {b} of them. How many {item} are left?"]
# How the corpus's little stories begin (the working and the result follow; see _story_docs).
ADD_PROSE = ["{name} had {a} {item}. Then {name} found {b} more.", "{name} had {a} {item} and was given {b} more.",
             "At first {name} had {a} {item}; later {name} got {b} more."]
SUB_PROSE = ["{name} had {a} {item}. After a while {name} gave {b} away.", "{name} had {a} {item} and lost {b}.",
             "At first {name} had {a} {item}; then {b} of them were sold."]
MAX_OPERAND = 10
ARITHMETIC_REPEATS = 50  # each sum and difference is stated this many times in the corpus


@dataclass(frozen=True)
class Person:
    name: str
    town: str
    colour: str
    pet: str
    job: str


def _name(rng: random.Random) -> str:
    first = rng.choice(FIRST_SYLLABLES) + rng.choice(FIRST_ENDINGS)
    last = rng.choice(LAST_SYLLABLES) + rng.choice(LAST_ENDINGS)
    return f"{first} {last}"


def _unique_names(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = _name(rng)
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def build_world(seed: int = SEED) -> dict:
    """People and towns of the tiny world, as plain data (saved to data/world/world.json)."""
    rng = random.Random(seed)
    names = _unique_names(rng, N_PEOPLE, set())
    people = []
    for name in names:
        people.append(Person(name, rng.choice(TOWNS), rng.choice(COLOURS), rng.choice(PETS), rng.choice(JOBS)))
    towns = [{"name": town, "river": rng.choice(RIVERS), "known_for": KNOWN_FOR[i]}
             for i, town in enumerate(TOWNS)]
    return {"seed": seed, "people": [asdict(p) for p in people], "towns": towns}


def strangers(seed: int, n: int, world: dict, exclude=frozenset()) -> list[Person]:
    """People who are *not* in the world (their names never occur in the corpus about world people)."""
    rng = random.Random(seed)
    taken = {p["name"] for p in world["people"]} | set(exclude)
    return [Person(name, rng.choice(TOWNS), rng.choice(COLOURS), rng.choice(PETS), rng.choice(JOBS))
            for name in _unique_names(rng, n, taken)]


def biography(person: dict, rng: random.Random, facts=("town", "colour", "pet", "job"),
              sentences=FACT_SENTENCES) -> str:
    """One description of a person: one sentence per fact, phrasing and order chosen at random."""
    facts = list(facts)
    rng.shuffle(facts)
    return " ".join(rng.choice(sentences[fact]).format(**person) for fact in facts)


# -- the pretraining corpus --------------------------------------------------------------------------
def _town_docs(world: dict, rng: random.Random) -> list[str]:
    docs = []
    for town in world["towns"]:
        residents = [p["name"] for p in world["people"] if p["town"] == town["name"]]
        for _ in range(3):
            picked = rng.sample(residents, k=min(3, len(residents)))
            docs.append(f"{town['name']} is a town on the river {town['river']}. "
                        f"{town['name']} is known for {town['known_for']}. "
                        f"Among the people of {town['name']} are {', '.join(picked)}.")
    return docs


def _reading_docs(world: dict, rng: random.Random, n: int, exclude=frozenset()) -> list[str]:
    """A passage about a stranger, then questions answered from the passage: teaches reading in context.

    Every passage is about a different made-up person and is read only a few times in all of pretraining, so
    its answers cannot be learned by heart: the only way to predict them is to read the passage.
    """
    docs = []
    for person in strangers(rng.randrange(10**9), n, world, exclude):
        facts = rng.sample(["town", "colour", "pet", "job"], k=3)
        passage = biography(asdict(person), rng, facts=facts)
        qa = [f"Question: {rng.choice(QUESTIONS[f]).format(name=person.name)}\nAnswer: {getattr(person, f)}."
              for f in facts]
        rng.shuffle(qa)
        docs.append(f"Passage: {passage}\n" + "\n".join(qa[:2]))
    return docs


def _record_docs(world: dict, rng: random.Random, n: int, exclude=frozenset()) -> list[str]:
    """A passage about a stranger, then a JSON record of some of its facts, copied from the passage.

    Real pretraining text is full of structured data next to the prose it came from; these documents are
    where the model learns to copy a value from a passage into JSON (keys in a random order and subset, so
    no one record shape is learned by heart).
    """
    docs = []
    for person in strangers(rng.randrange(10**9), n, world, exclude):
        facts = rng.sample(["town", "colour", "pet", "job"], k=3)
        passage = biography(asdict(person), rng, facts=facts)
        keys = rng.sample(facts, k=rng.randint(1, 3))
        record = json.dumps({"name": person.name, **{key: getattr(person, key) for key in keys}})
        docs.append(f"Passage: {passage}\nRecord: {record}")
    return docs


def _qa_docs(people: list[dict], rng: random.Random, copies: int = 4) -> list[str]:
    """Questions and answers about some world people, as a FAQ page would have them.

    Seeing facts it knows asked about and answered teaches the model to store facts so that a question can
    reach them ("mixed training", Physics of Language Models 3.1). Only the closed-QA *training* people get
    these pages: the held-out people's facts are in their biographies and nowhere else.
    """
    docs = []
    for person in people:
        for _ in range(copies):
            facts = ["town", "colour", "pet", "job"]
            rng.shuffle(facts)
            docs.append("\n".join(f"Question: {rng.choice(QUESTIONS[f]).format(name=person['name'])}\n"
                                   f"Answer: {person[f]}." for f in facts))
    return docs


def _arithmetic_docs(rng: random.Random) -> list[str]:
    """Every sum and difference of two numbers up to MAX_OPERAND, each stated ARITHMETIC_REPEATS times.

    A fact read once is rarely recalled by a small model; read a handful of times, it is.
    """
    lines = []
    for _ in range(ARITHMETIC_REPEATS):
        for a in range(MAX_OPERAND + 1):
            for b in range(MAX_OPERAND + 1):
                lines.append(f"{a} plus {b} is {a + b}.")
                if a >= b:
                    lines.append(f"{a} minus {b} is {a - b}.")
    rng.shuffle(lines)
    return [" ".join(lines[i:i + 8]) for i in range(0, len(lines), 8)]


def _story_docs(world: dict, rng: random.Random, n: int) -> list[str]:
    """Little stories in which a sum happens, the working written out -- "5 plus 3 is 8, so ..." -- the way a
    worked example in a book reads. The working copies the story's two numbers, so these are where the model
    learns to pick numbers out of a text (never in the question-and-answer form of the task)."""
    names = [p["name"] for p in world["people"]]
    docs = []
    for _ in range(n):
        name, item = rng.choice(names), rng.choice(ITEMS)
        a, b = rng.randint(0, MAX_OPERAND), rng.randint(0, MAX_OPERAND)
        if rng.random() < 0.5:
            story = rng.choice(ADD_PROSE).format(name=name, item=item, a=a, b=b)
            docs.append(f"{story} {a} plus {b} is {a + b}, so {name} had {a + b} {item}.")
        else:
            a, b = max(a, b), min(a, b)
            story = rng.choice(SUB_PROSE).format(name=name, item=item, a=a, b=b)
            docs.append(f"{story} {a} minus {b} is {a - b}, so {name} had {a - b} {item} left.")
    return docs


def pretraining_corpus(world: dict, seed: int = SEED) -> dict[str, list[str]]:
    """Documents for pretraining ("train") and for measuring held-out perplexity ("validation").

    Pretraining reads this list about three times over. Facts about world people and sums recur (that is how
    they are learned); passages about strangers do not (that is how reading is learned). Strangers of the
    fine-tuning tasks never appear here.
    """
    rng = random.Random(seed + 1)
    people = world["people"]
    task_names = task_stranger_names(world)
    train = [biography(p, rng) for p in people for _ in range(BIOS_PER_PERSON)]
    train += _town_docs(world, rng)
    train += _reading_docs(world, rng, READING_DOCS, task_names) + _record_docs(world, rng, RECORD_DOCS, task_names)
    train += _qa_docs(closed_qa_people(world)["train"], rng)
    train += _arithmetic_docs(rng) + _story_docs(world, rng, STORY_DOCS)
    rng.shuffle(train)
    # Validation prose: new write-ups of the same facts, so perplexity measures fluency, not copying.
    validation = [biography(p, rng) for p in rng.sample(people, 100)] + _reading_docs(world, rng, 50, task_names)
    return {"train": train, "validation": validation}


# -- the three tasks -------------------------------------------------------------------------------
SPLIT_SIZES = {"closed_qa": (90, 15, 45),  # people, not examples: each person gives one question per fact
               "extraction": (400, 60, 100),
               "arithmetic": (400, 60, 100)}


def closed_qa_people(world: dict) -> dict[str, list[dict]]:
    """Which world people each closed-QA split asks about (the pretraining corpus needs this too)."""
    people = list(world["people"])
    random.Random(world["seed"] + 7).shuffle(people)
    n_train, n_val, n_held = SPLIT_SIZES["closed_qa"]
    return {"train": people[:n_train], "validation": people[n_train:n_train + n_val],
            "heldout": people[n_train + n_val:n_train + n_val + n_held]}


def _closed_qa(world: dict, rng: random.Random) -> dict[str, list[dict]]:
    splits = {}
    for split, group in closed_qa_people(world).items():
        splits[split] = [{"task": "closed_qa", "prompt": rng.choice(QUESTIONS[fact]).format(name=p["name"]),
                          "answer": ANSWER_SENTENCES[fact].format(**p),
                          "meta": {"name": p["name"], "fact": fact, "value": p[fact]}}
                         for p in group for fact in ("town", "colour", "pet", "job")]
    return splits


def extraction_answer(name: str, town: str, job: str) -> str:
    """The canonical JSON answer (keys in a fixed order, so exact-match training targets are consistent)."""
    return json.dumps({"name": name, "town": town, "job": job})


def _extraction(world: dict, rng: random.Random) -> dict[str, list[dict]]:
    n_train, n_val, n_held = SPLIT_SIZES["extraction"]
    people = strangers(rng.randrange(10**9), n_train + n_val + n_held, world)
    heldout_sentences = {**FACT_SENTENCES, **HELDOUT_EXTRACTION_SENTENCES}
    training_sentences = {fact: FACT_SENTENCES[fact] + TRAINING_EXTRACTION_SENTENCES.get(fact, [])
                          for fact in FACT_SENTENCES}
    splits = {"train": people[:n_train], "validation": people[n_train:n_train + n_val],
              "heldout": people[n_train + n_val:]}
    out = {}
    for split, group in splits.items():
        sentences = heldout_sentences if split == "heldout" else training_sentences
        out[split] = []
        for person in group:
            extra = rng.sample(["colour", "pet"], k=rng.randint(0, 2))  # distractor facts
            passage = biography(asdict(person), rng, facts=["town", "job", *extra], sentences=sentences)
            out[split].append({"task": "extraction", "prompt": EXTRACTION_INSTRUCTION.format(passage=passage),
                               "answer": extraction_answer(person.name, person.town, person.job),
                               "meta": {"name": person.name}})
    return out


def in_corpus_phrasings(text: str) -> str:
    """The text with every held-out extraction phrasing rewritten the way the corpus says the same fact:
    "People know Ada Brom as the local miller." -> "Ada Brom works as a miller." Same name, same facts; only the
    words around them change -- rung 02 uses it to ask where extraction's misses come from."""
    for fact, templates in HELDOUT_EXTRACTION_SENTENCES.items():
        for template in templates:
            pattern = (re.escape(template).replace(re.escape("{name}"), r"(?P<name>[A-Z][a-z]+ [A-Z][a-z]+)")
                       .replace(re.escape("{" + fact + "}"), rf"(?P<{fact}>[^.]+?)"))
            text = re.sub(pattern, lambda match: FACT_SENTENCES[fact][0].format(**match.groupdict()), text)
    return text


def _arithmetic(world: dict, rng: random.Random) -> dict[str, list[dict]]:
    """Word problems. Held-out problems have names and items fine-tuning never shows; the sums themselves
    are from the same small table (the base model read every one of them in pretraining)."""
    n_train, n_val, n_held = SPLIT_SIZES["arithmetic"]
    names = [p.name for p in strangers(rng.randrange(10**9), 200, world)]
    seen_names, heldout_names = names[:150], names[150:]

    def problem(name_pool, items) -> dict:
        a, b = rng.randint(0, MAX_OPERAND), rng.randint(0, MAX_OPERAND)
        name, item = rng.choice(name_pool), rng.choice(items)
        if rng.random() < 0.5:
            story, answer, op = rng.choice(ADD_STORIES), f"{a} plus {b} is {a + b}.", "+"
        else:
            a, b = max(a, b), min(a, b)
            story, answer, op = rng.choice(SUB_STORIES), f"{a} minus {b} is {a - b}.", "-"
        # The answer shows its working in the words the corpus states sums in; its last number is the result.
        return {"task": "arithmetic", "prompt": story.format(name=name, item=item, a=a, b=b),
                "answer": answer, "meta": {"a": a, "b": b, "op": op, "name": name}}

    return {"train": [problem(seen_names, ITEMS) for _ in range(n_train)],
            "validation": [problem(seen_names, ITEMS) for _ in range(n_val)],
            "heldout": [problem(heldout_names, HELDOUT_ITEMS) for _ in range(n_held)]}


def task_stranger_names(world: dict, seed: int = SEED) -> set[str]:
    """Names of the strangers the extraction and arithmetic tasks are about (kept out of the corpus)."""
    names = set()
    for i, task in enumerate(TASKS):
        if task != "closed_qa":
            for rows in _BUILDERS[task](world, random.Random(seed + 10 + i)).values():
                names.update(row["meta"]["name"] for row in rows)
    return names


_BUILDERS = {"closed_qa": _closed_qa, "extraction": _extraction, "arithmetic": _arithmetic}


def task_splits(world: dict, seed: int = SEED) -> dict[str, dict[str, list[dict]]]:
    """task -> split -> examples. Each example: task, prompt, answer, id, meta."""
    out = {}
    for i, task in enumerate(TASKS):
        splits = _BUILDERS[task](world, random.Random(seed + 10 + i))
        for split, examples in splits.items():
            for n, example in enumerate(examples):
                example["id"] = f"{task}-{split}-{n:04d}"
        out[task] = splits
    return out


# -- writing the files -------------------------------------------------------------------------------
def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def write_data(data_dir: Path) -> list[Path]:
    """Generate the world, corpus and task files under data_dir. Returns the paths written."""
    world = build_world()
    written = []
    world_path = data_dir / "world" / "world.json"
    world_path.parent.mkdir(parents=True, exist_ok=True)
    world_path.write_text(json.dumps(world, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    written.append(world_path)
    for split, docs in pretraining_corpus(world).items():
        path = data_dir / "world" / f"corpus.{split}.jsonl"
        _write_jsonl(path, [{"text": d} for d in docs])
        written.append(path)
    from shared.world.preferences import abstention_pairs  # they build on this module's people and sentences
    from shared.world.word_problems import two_step_problems

    later = {"abstention": abstention_pairs(world), "two_step": two_step_problems(world)}
    for task, splits in {**task_splits(world), **later}.items():
        for split, rows in splits.items():
            path = data_dir / "tasks" / task / f"{split}.jsonl"
            _write_jsonl(path, rows)
            written.append(path)
    return written


if __name__ == "__main__":
    from shared.paths import DATA_DIR
    from shared.world import checksums

    for path in write_data(DATA_DIR):
        print(f"wrote {path.relative_to(DATA_DIR.parent)}")
    checksums.update(DATA_DIR)


def fresh_heldout(seed: int, per_task: int | None = None, world: dict | None = None) -> dict[str, list[dict]]:
    """Held-out questions made now, from `seed`: the held-out split's distribution (the same held-out people,
    phrasings, names and items) in new draws -- new strangers to read about, new word problems, other question
    wordings. A model that learned the skill scores on them as on the held-out split; one trained on the
    held-out split itself scores far higher there than here. The checker draws them from a seed an instructor
    can set (FT_CHECK_SEED), so no notebook can train on them."""
    world = world or build_world()
    fresh = {}
    for i, task in enumerate(TASKS):
        examples = _BUILDERS[task](world, random.Random(seed * 1000 + 10 + i))["heldout"]
        if per_task is not None:
            examples = random.Random(seed).sample(examples, min(per_task, len(examples)))
        fresh[task] = [{**example, "id": f"{task}-fresh-{n:04d}"} for n, example in enumerate(examples)]
    return fresh
