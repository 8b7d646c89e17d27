"""Newcomers: people the tiny base never read about -- rung 01's new knowledge -- and what is asked about them.

The world's people are in the pretraining corpus, described ninety ways each; a newcomer is in none of it. To
teach a model a newcomer's facts you can fine-tune on them, or put a passage about them in front of the question
(retrieval). The questions come in three kinds, so that the two can be told apart:

* ``trained`` -- the wording a fine-tuning set about the newcomers uses ("Where does Ada Brom live?");
* ``rephrased`` -- the same facts asked in words that set never uses ("In which town does Ada Brom live?");
* ``reversed`` -- the fact turned round, the person asked for ("Who lives in Fenwick, keeps a newt and works as a baker?"): a
  model trained on "A lives in B" does not learn "B is where A lives" (the reversal curse, Berglund et al. 2023).

    people = newcomers(seed=0)
    documents = knowledge_documents(people, world)     # one passage per newcomer, among world people's
    questions = knowledge_questions(people)            # kind -> [{id, prompt, answer, value, person, kind}]
"""

from __future__ import annotations

import random
from dataclasses import asdict

from shared.world.generator import ANSWER_SENTENCES, FACT_SENTENCES, QUESTIONS, biography, strangers

FACTS = ("town", "colour", "pet", "job")
KINDS = ("trained", "rephrased", "reversed")
# Other words for the same questions (none of them a wording the course's tasks or corpus use).
REPHRASED = {
    "town": "In which town does {name} live?",
    "colour": "Which colour is {name} fondest of?",
    "pet": "Which animal does {name} keep as a pet?",
    "job": "How does {name} earn a living?",
}
REVERSED = "Who lives in {town}, keeps a {pet} and works as a {job}?"
TURNED = ("town", "pet", "job")   # the facts a reversed question gives: no two people share all three
SEED_OFFSET = 10_101   # newcomers are drawn apart from the strangers of the corpus and the tasks


def newcomers(seed: int = 0, n: int = 30, world: dict | None = None) -> list[dict]:
    """`n` people in no text the base model read, seeded; no two of them -- and none of them and a world
    person -- share a town, a pet and a job, so every reversed question has one answer."""
    from shared.world.generator import build_world, task_stranger_names

    world = world or build_world()
    taken = {tuple(p[fact] for fact in TURNED) for p in world["people"]}
    chosen = []
    read = corpus_names() | task_stranger_names(world)
    for person in strangers(SEED_OFFSET + seed, 20 * n, world, exclude=read):
        person = asdict(person)
        if tuple(person[fact] for fact in TURNED) not in taken:
            taken.add(tuple(person[fact] for fact in TURNED))
            chosen.append(person)
        if len(chosen) == n:
            return chosen
    raise ValueError(f"only {len(chosen)} newcomers with a town, pet and job of their own; ask for fewer than {n}")


def corpus_names() -> set[str]:
    """Every two-word name in the pretraining corpus (world people and the strangers of its reading passages)."""
    import re

    from shared.world import data

    name = re.compile(r"\b[A-Z][a-z]+ [A-Z][a-z]+\b")
    return {found for split in ("train", "validation") for text in data.read_corpus(split)
            for found in name.findall(text)}


def passage(person: dict, seed: int = 0) -> str:
    """One biography of `person`: a sentence per fact, phrasing and order drawn with `seed`."""
    return biography(person, random.Random(f"{person['name']}/{seed}"), facts=FACTS, sentences=FACT_SENTENCES)


def knowledge_documents(people: list[dict], world: dict) -> list[dict]:
    """A retrieval corpus: one passage per newcomer and one per world person (the distractors), each
    {id, text, name}, in a fixed order."""
    everyone = [(f"newcomer-{i:03d}", p) for i, p in enumerate(people)]
    everyone += [(f"world-{i:03d}", p) for i, p in enumerate(world["people"])]
    return [{"id": doc_id, "text": passage(person), "name": person["name"]} for doc_id, person in everyone]


def knowledge_questions(people: list[dict]) -> dict[str, list[dict]]:
    """The questions of each kind about `people`: {id, kind, prompt, answer, value, person}. `value` is what a
    right answer must contain (the fact, or the person's name); `answer` is the sentence a model is trained to
    give (rung 02's answer sentences, or "<name>.")."""
    questions = {kind: [] for kind in KINDS}
    for i, person in enumerate(people):
        for fact in FACTS:
            for kind, wording in (("trained", QUESTIONS[fact][0]), ("rephrased", REPHRASED[fact])):
                questions[kind].append({
                    "id": f"{kind}-{i:03d}-{fact}", "kind": kind, "prompt": wording.format(name=person["name"]),
                    "answer": ANSWER_SENTENCES[fact].format(**person), "value": person[fact],
                    "person": person["name"]})
        questions["reversed"].append({
            "id": f"reversed-{i:03d}", "kind": "reversed", "prompt": REVERSED.format(**person),
            "answer": f"{person['name']}.", "value": person["name"], "person": person["name"]})
    return questions


def is_right(prediction: str, question: dict) -> bool:
    """A prediction answers the question when it contains the value asked for (the fact, or the name) as whole
    words: "red" is not found in "Fired Ashby"."""
    import re

    return re.search(rf"\b{re.escape(question['value'])}\b", prediction, flags=re.IGNORECASE) is not None


# -- what a model is trained and asked on: plain text, the base model's own format ----------------------------
def question_prompt(question: str) -> str:
    """Closed book: the question as the corpus's question-and-answer pages put it."""
    return f"Question: {question}\nAnswer:"


def reading_prompt(passage_text: str, question: str) -> str:
    """Open book: a passage, then the question, as the corpus's reading passages put them."""
    return f"Passage: {passage_text}\nQuestion: {question}\nAnswer:"


def knowledge_texts(people: list[dict], biographies: int = 40, qa_pages: int = 4, seed: int = 0) -> list[str]:
    """What a fine-tune that adds the newcomers' facts trains on, shuffled: `biographies` descriptions of each
    (phrasing and order varied: a fact stated one way only is learned for that wording alone) and `qa_pages`
    question-and-answer pages each, in the trained wording -- how the base model learned the world's people."""
    rng = random.Random(seed)
    texts = [passage(person, seed=1 + k) for person in people for k in range(biographies)]
    for person in people:
        for _ in range(qa_pages):
            facts = rng.sample(FACTS, len(FACTS))
            texts.append("\n".join(f"Question: {QUESTIONS[fact][0].format(name=person['name'])}\n"
                                   f"Answer: {person[fact]}." for fact in facts))
    rng.shuffle(texts)
    return texts


def who_reading_texts(n: int, seed: int, world: dict, exclude=frozenset()) -> list[str]:
    """Reading passages about `n` strangers (never the newcomers: pass their names in `exclude`), each followed
    by a question that asks who -- a skill, not a fact: nothing here is about anyone the questions ask about."""
    rng = random.Random(seed)
    texts = []
    for person in strangers(SEED_OFFSET + 5_000 + seed, n, world, exclude=set(exclude)):
        person = asdict(person)
        texts.append(reading_prompt(biography(person, rng), REVERSED.format(**person)) + f" {person['name']}.")
    return texts
