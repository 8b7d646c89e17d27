"""Rung 01's new knowledge: newcomers in no text the base model read, each reversed question with one answer,
and the three kinds of question about them."""

from __future__ import annotations

import collections

from shared.world import newcomers
from shared.world.generator import QUESTIONS, build_world

WORLD = build_world()


def test_newcomers_are_seeded_and_in_nothing_the_base_model_read():
    people = newcomers.newcomers(seed=0, world=WORLD)
    assert people == newcomers.newcomers(seed=0, world=WORLD) != newcomers.newcomers(seed=1, world=WORLD)
    read = newcomers.corpus_names()
    assert {p["name"] for p in WORLD["people"]} <= read   # the corpus is where the world's people are
    assert not {p["name"] for p in people} & read
    assert len({p["name"] for p in people}) == len(people) == 30


def test_every_reversed_question_has_one_answer_among_everyone_retrievable():
    people = newcomers.newcomers(seed=2, world=WORLD)
    everyone = people + WORLD["people"]
    keys = collections.Counter(tuple(p[fact] for fact in newcomers.TURNED) for p in everyone)
    assert all(keys[tuple(p[fact] for fact in newcomers.TURNED)] == 1 for p in people)


def test_the_three_kinds_of_question():
    people = newcomers.newcomers(seed=0, world=WORLD)
    questions = newcomers.knowledge_questions(people)
    assert {kind: len(items) for kind, items in questions.items()} == {"trained": 120, "rephrased": 120, "reversed": 30}
    trained_wordings = {wording for wordings in QUESTIONS.values() for wording in wordings}
    for question in questions["rephrased"]:   # no rephrased question uses a wording the course trains on
        assert all(question["prompt"] != w.format(name=question["person"]) for w in trained_wordings)
    first = people[0]
    reversed_ = questions["reversed"][0]
    assert reversed_["value"] == first["name"] and first["town"] in reversed_["prompt"]
    assert all(q["value"] in q["answer"] for items in questions.values() for q in items)


def test_a_right_answer_holds_the_value_as_whole_words():
    question = {"value": "red"}
    assert newcomers.is_right("Ada Brom's favourite colour is red.", question)
    assert newcomers.is_right("RED.", question)
    assert not newcomers.is_right("Fired Ashby lives in Millbrook.", question)


def test_the_documents_hold_one_passage_per_person_with_every_fact():
    people = newcomers.newcomers(seed=0, world=WORLD)
    documents = newcomers.knowledge_documents(people, WORLD)
    assert len(documents) == len(people) + len(WORLD["people"])
    for document, person in zip(documents, people):
        assert document["name"] == person["name"]
        assert all(person[fact] in document["text"] for fact in newcomers.FACTS)
    assert documents == newcomers.knowledge_documents(people, WORLD)
