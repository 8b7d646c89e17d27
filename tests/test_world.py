"""The tiny world generator: deterministic, leak-free splits, correct answers, and `make data` reproduces data/."""

from __future__ import annotations

import json
import re

import pytest

from shared.world import generator, tasks
from shared.paths import DATA_DIR

CHAT_TOKENS = ("<|user|>", "<|assistant|>", "<|end|>", "<s>", "</s>")


@pytest.fixture(scope="module")
def the_world():
    return generator.build_world()


@pytest.fixture(scope="module")
def corpus(the_world):
    return generator.pretraining_corpus(the_world)


@pytest.fixture(scope="module")
def pretraining_text(corpus):
    """Everything the base model reads, as one string to search."""
    return "\n".join(corpus["train"] + corpus["validation"])


@pytest.fixture(scope="module")
def splits(the_world):
    return generator.task_splits(the_world)


def names_of(rows):
    return {row["meta"]["name"] for row in rows}


# -- determinism ------------------------------------------------------------------------------------
def test_build_world_is_deterministic(the_world):
    assert generator.build_world() == the_world
    assert generator.build_world(seed=7) == generator.build_world(seed=7)
    assert generator.build_world(seed=7) != the_world  # the seed matters


def test_corpus_and_tasks_are_deterministic(the_world, corpus, splits):
    assert generator.pretraining_corpus(the_world) == corpus
    assert generator.task_splits(the_world) == splits


def test_world_has_unique_people_and_all_towns(the_world):
    names = [p["name"] for p in the_world["people"]]
    assert len(names) == generator.N_PEOPLE == len(set(names))
    assert [t["name"] for t in the_world["towns"]] == generator.TOWNS


# -- splits ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", tasks.TASKS)
def test_every_task_has_three_nonempty_splits_with_unique_ids(splits, task):
    assert set(splits[task]) == set(tasks.SPLITS)
    ids = [row["id"] for split in tasks.SPLITS for row in splits[task][split]]
    assert len(ids) == len(set(ids))
    for split in tasks.SPLITS:
        assert splits[task][split], f"{task}/{split} is empty"
        for row in splits[task][split]:
            assert row["task"] == task
            assert row["id"].startswith(f"{task}-{split}-")
            assert row["prompt"] and row["answer"]


@pytest.mark.parametrize("task", tasks.TASKS)
def test_splits_are_disjoint(splits, task):
    prompts = {split: {(r["prompt"], r["answer"]) for r in splits[task][split]} for split in tasks.SPLITS}
    assert not prompts["train"] & prompts["heldout"]
    assert not prompts["train"] & prompts["validation"]
    assert not prompts["validation"] & prompts["heldout"]


def test_closed_qa_heldout_people_are_not_fine_tuning_people(splits):
    qa = splits["closed_qa"]
    assert not names_of(qa["heldout"]) & names_of(qa["train"])
    assert not names_of(qa["heldout"]) & names_of(qa["validation"])
    assert not names_of(qa["validation"]) & names_of(qa["train"])


def test_task_strangers_never_appear_in_the_corpus(the_world, pretraining_text):
    names = generator.task_stranger_names(the_world)
    assert len(names) > 500
    assert not [name for name in names if name in pretraining_text]


def test_reading_passages_are_each_about_a_new_person(corpus):
    subjects = [doc.split("\n")[0] for doc in corpus["train"] if doc.startswith("Passage:")]
    assert len(subjects) >= generator.READING_DOCS + generator.RECORD_DOCS
    assert len(set(subjects)) == len(subjects)  # no passage is repeated: answers cannot be learned by heart


def test_only_closed_qa_training_people_are_asked_about_in_the_corpus(corpus, splits):
    asked = "\n".join(line for doc in corpus["train"] for line in doc.splitlines() if line.startswith("Question:"))
    assert all(name in asked for name in names_of(splits["closed_qa"]["train"]))
    leaked = [name for split in ("validation", "heldout") for name in names_of(splits["closed_qa"][split])
              if name in asked]
    assert not leaked, f"the corpus asks questions about people fine-tuning holds out: {leaked[:3]}"


def test_closed_qa_answers_match_the_world(the_world, splits):
    people = {p["name"]: p for p in the_world["people"]}
    for split in tasks.SPLITS:
        for row in splits["closed_qa"][split]:
            person, fact = people[row["meta"]["name"]], row["meta"]["fact"]
            assert row["meta"]["value"] == person[fact], row
            assert row["answer"] == generator.ANSWER_SENTENCES[fact].format(**person), row
            assert row["meta"]["name"] in row["prompt"]
            assert person[fact] not in row["prompt"]  # the fact is in the corpus, never in the question


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
    for split in tasks.SPLITS:
        for row in splits["extraction"][split]:
            answer = json.loads(row["answer"])
            assert list(answer) == ["name", "town", "job"]
            assert answer["name"] == row["meta"]["name"]
            for value in answer.values():
                assert value in row["prompt"]


def _phrasing_pattern(template: str) -> re.Pattern:
    """A template as a regex; a slot is filled within one sentence (names, towns and jobs have no full stop)."""
    slot = r"[^.\n]+?"
    return re.compile(re.escape(template).replace(re.escape("{name}"), slot)
                      .replace(re.escape("{town}"), slot).replace(re.escape("{job}"), slot))


def test_extraction_heldout_uses_the_unseen_phrasings(pretraining_text, splits):
    """Held-out passages say where someone lives and works in ways neither fine-tuning nor pretraining does."""
    heldout = "\n".join(row["prompt"] for row in splits["extraction"]["heldout"])
    fine_tuning = "\n".join(row["prompt"] for split in ("train", "validation")
                            for row in splits["extraction"][split])
    for templates in generator.HELDOUT_EXTRACTION_SENTENCES.values():
        for template in templates:
            pattern = _phrasing_pattern(template)
            assert pattern.search(heldout), f"held-out passages never use {template!r}"
            assert not pattern.search(fine_tuning), f"fine-tuning passages use the held-out {template!r}"
            assert not pattern.search(pretraining_text), f"the corpus uses the held-out {template!r}"


def test_training_phrasings_are_only_in_fine_tuning_passages(pretraining_text, splits):
    """The extra extraction phrasings teach SFT to find a name wherever it stands; the corpus never reads them
    (so the base model is the same with or without them) and held-out passages never use them."""
    heldout = "\n".join(row["prompt"] for row in splits["extraction"]["heldout"])
    fine_tuning = "\n".join(row["prompt"] for row in splits["extraction"]["train"])
    for templates in generator.TRAINING_EXTRACTION_SENTENCES.values():
        for template in templates:
            pattern = _phrasing_pattern(template)
            assert pattern.search(fine_tuning), f"no training passage uses {template!r}"
            assert not pattern.search(heldout), f"a held-out passage uses the training-only {template!r}"
            assert not pattern.search(pretraining_text), f"the corpus uses the training-only {template!r}"


def test_in_corpus_phrasings_rewrites_only_the_held_out_sentences(splits):
    """Rung 02 asks its extraction misses again in the corpus's words: every held-out sentence is rewritten,
    the name and facts stay, and a passage without held-out sentences is left as it is."""
    for row in splits["extraction"]["heldout"]:
        rewritten = generator.in_corpus_phrasings(row["prompt"])
        answer = json.loads(row["answer"])
        for templates in generator.HELDOUT_EXTRACTION_SENTENCES.values():
            assert not any(_phrasing_pattern(t).search(rewritten) for t in templates), rewritten
        assert rewritten.count(".") == row["prompt"].count(".")  # sentence for sentence
        assert all(rewritten.count(value) >= 1 for value in answer.values())
    example = "People know Ada Brom as the local miller. Ada Brom's house stands in Fenwick."
    assert generator.in_corpus_phrasings(example) == "Ada Brom works as a miller. Ada Brom lives in Fenwick."
    for row in splits["extraction"]["train"]:
        assert generator.in_corpus_phrasings(row["prompt"]) == row["prompt"]


def test_every_sum_in_the_tasks_is_stated_in_the_corpus(corpus, splits):
    text = "\n".join(corpus["train"])
    for split in tasks.SPLITS:
        for row in splits["arithmetic"][split]:
            # "7 minus 3 is 4." is stated in the corpus (and not only as the tail of "17 minus 3 is 4.")
            assert re.search(r"(?<!\d)" + re.escape(row["answer"]), text), row


def test_arithmetic_heldout_names_and_items_are_unseen(pretraining_text, splits):
    ar = splits["arithmetic"]
    train_text = "\n".join(row["prompt"] for row in ar["train"])
    for item in generator.HELDOUT_ITEMS:
        assert item not in train_text
        assert item not in pretraining_text, f"the corpus mentions the held-out item {item!r}"
    for row in ar["heldout"]:
        assert any(item in row["prompt"] for item in generator.HELDOUT_ITEMS)
        name = " ".join(row["prompt"].split()[:2])
        assert name not in train_text


def test_arithmetic_answers_are_correct(splits):
    for split in tasks.SPLITS:
        for row in splits["arithmetic"][split]:
            a, b, op = row["meta"]["a"], row["meta"]["b"], row["meta"]["op"]
            expected = f"{a} plus {b} is {a + b}." if op == "+" else f"{a} minus {b} is {a - b}."
            assert row["answer"] == expected, row
            assert a - b >= 0 or op == "+"
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
    written = generator.write_data(tmp_path)
    assert written
    differ = []
    for path in written:
        relative = path.relative_to(tmp_path)
        committed = DATA_DIR / relative
        assert committed.exists(), f"data/{relative.as_posix()} is not committed"
        if committed.read_bytes() != path.read_bytes():
            differ.append(relative.as_posix())
    assert not differ, f"`make data` changes {differ}: run `make data` and commit the result"
