"""The tiny world generator: deterministic, leak-free splits, correct answers, and `make data` reproduces data/."""

from __future__ import annotations

import json
import re

import pytest

from shared import world
from shared.paths import DATA_DIR

CHAT_TOKENS = ("<|user|>", "<|assistant|>", "<|end|>", "<s>", "</s>")


@pytest.fixture(scope="module")
def the_world():
    return world.build_world()


@pytest.fixture(scope="module")
def corpus(the_world):
    return world.pretraining_corpus(the_world)


@pytest.fixture(scope="module")
def splits(the_world):
    return world.task_splits(the_world)


def names_of(rows):
    return {row["meta"]["name"] for row in rows}


# -- determinism ------------------------------------------------------------------------------------
def test_build_world_is_deterministic(the_world):
    assert world.build_world() == the_world
    assert world.build_world(seed=7) == world.build_world(seed=7)
    assert world.build_world(seed=7) != the_world  # the seed matters


def test_corpus_and_tasks_are_deterministic(the_world, corpus, splits):
    assert world.pretraining_corpus(the_world) == corpus
    assert world.task_splits(the_world) == splits


def test_world_has_unique_people_and_all_towns(the_world):
    names = [p["name"] for p in the_world["people"]]
    assert len(names) == world.N_PEOPLE == len(set(names))
    assert [t["name"] for t in the_world["towns"]] == world.TOWNS


# -- splits ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", world.TASKS)
def test_every_task_has_three_nonempty_splits_with_unique_ids(splits, task):
    assert set(splits[task]) == set(world.SPLITS)
    ids = [row["id"] for split in world.SPLITS for row in splits[task][split]]
    assert len(ids) == len(set(ids))
    for split in world.SPLITS:
        assert splits[task][split], f"{task}/{split} is empty"
        for row in splits[task][split]:
            assert row["task"] == task
            assert row["id"].startswith(f"{task}-{split}-")
            assert row["prompt"] and row["answer"]


@pytest.mark.parametrize("task", world.TASKS)
def test_splits_are_disjoint(splits, task):
    prompts = {split: {(r["prompt"], r["answer"]) for r in splits[task][split]} for split in world.SPLITS}
    assert not prompts["train"] & prompts["heldout"]
    assert not prompts["train"] & prompts["validation"]
    assert not prompts["validation"] & prompts["heldout"]


def test_closed_qa_heldout_people_are_not_fine_tuning_people(splits):
    qa = splits["closed_qa"]
    assert not names_of(qa["heldout"]) & names_of(qa["train"])
    assert not names_of(qa["heldout"]) & names_of(qa["validation"])
    assert not names_of(qa["validation"]) & names_of(qa["train"])


def test_closed_qa_answers_match_the_world(the_world, splits):
    people = {p["name"]: p for p in the_world["people"]}
    for split in world.SPLITS:
        for row in splits["closed_qa"][split]:
            person = people[row["meta"]["name"]]
            assert row["answer"] == person[row["meta"]["fact"]], row
            assert row["meta"]["name"] in row["prompt"]
            assert row["answer"] not in row["prompt"]  # the fact is in the corpus, never in the question


def test_extraction_heldout_people_are_strangers(the_world, splits):
    ex = splits["extraction"]
    world_names = {p["name"] for p in the_world["people"]}
    heldout = names_of(ex["heldout"])
    assert len(heldout) == len(ex["heldout"])
    assert not heldout & world_names
    assert not heldout & names_of(ex["train"])
    assert not heldout & names_of(ex["validation"])
    train_text = "\n".join(row["prompt"] for row in ex["train"])
    assert not [name for name in heldout if name in train_text]


def test_extraction_answers_are_json_read_from_the_passage(splits):
    for split in world.SPLITS:
        for row in splits["extraction"][split]:
            answer = json.loads(row["answer"])
            assert list(answer) == ["name", "town", "job"]
            assert answer["name"] == row["meta"]["name"]
            for value in answer.values():
                assert value in row["prompt"]


def _phrasing_pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(re.escape("{name}"), ".+?")
                      .replace(re.escape("{town}"), ".+?").replace(re.escape("{job}"), ".+?"))


def test_extraction_heldout_uses_the_unseen_phrasings(splits):
    heldout = "\n".join(row["prompt"] for row in splits["extraction"]["heldout"])
    fine_tuning = "\n".join(row["prompt"] for split in ("train", "validation")
                            for row in splits["extraction"][split])
    for templates in world.HELDOUT_EXTRACTION_SENTENCES.values():
        for template in templates:
            pattern = _phrasing_pattern(template)
            assert pattern.search(heldout), f"held-out passages never use {template!r}"
            assert not pattern.search(fine_tuning), f"fine-tuning passages use the held-out {template!r}"


def test_arithmetic_heldout_pairs_never_appear_in_fine_tuning(splits):
    ar = splits["arithmetic"]

    def pairs(rows):  # unordered: "7 - 3" and "3 + 7" use the same two numbers
        return {frozenset((r["meta"]["a"], r["meta"]["b"])) for r in rows}

    heldout = pairs(ar["heldout"])
    assert heldout
    assert not heldout & pairs(ar["train"]), "held-out operand pairs leak into train"
    assert not heldout & pairs(ar["validation"]), "held-out operand pairs leak into validation"


def test_arithmetic_heldout_names_and_items_are_unseen(splits):
    ar = splits["arithmetic"]
    train_text = "\n".join(row["prompt"] for row in ar["train"])
    for item in world.HELDOUT_ITEMS:
        assert item not in train_text
    for row in ar["heldout"]:
        assert any(item in row["prompt"] for item in world.HELDOUT_ITEMS)
        name = " ".join(row["prompt"].split()[:2])
        assert name not in train_text


def test_arithmetic_answers_are_correct(splits):
    for split in world.SPLITS:
        for row in splits["arithmetic"][split]:
            a, b, op = row["meta"]["a"], row["meta"]["b"], row["meta"]["op"]
            expected = a + b if op == "+" else a - b
            assert row["answer"] == str(expected), row
            assert int(row["answer"]) >= 0
            numbers = [int(n) for n in re.findall(r"\d+", row["prompt"])]
            assert numbers == [a, b], row


# -- the pretraining corpus ------------------------------------------------------------------------
def test_corpus_has_no_chat_special_tokens(corpus):
    for split, docs in corpus.items():
        assert docs, f"corpus {split} is empty"
        for doc in docs:
            for token in CHAT_TOKENS:
                assert token not in doc, f"{token!r} in corpus {split}: {doc[:80]!r}"


def test_corpus_mentions_every_person(the_world, corpus):
    text = "\n".join(corpus["train"])
    missing = [p["name"] for p in the_world["people"] if p["name"] not in text]
    assert not missing


# -- make data ---------------------------------------------------------------------------------------
def test_make_data_reproduces_the_committed_files(tmp_path):
    written = world.write_data(tmp_path)
    assert written
    differ = []
    for path in written:
        relative = path.relative_to(tmp_path)
        committed = DATA_DIR / relative
        assert committed.exists(), f"data/{relative.as_posix()} is not committed"
        if committed.read_bytes() != path.read_bytes():
            differ.append(relative.as_posix())
    assert not differ, f"`make data` changes {differ}: run `make data` and commit the result"
