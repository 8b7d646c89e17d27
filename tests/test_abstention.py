"""The honest-abstention preference pairs (rungs 06 and 08) and their judge."""

import pytest

from shared.world import data, generator, preferences


@pytest.fixture(scope="module")
def world():
    return generator.build_world()


@pytest.fixture(scope="module")
def pairs(world):
    return preferences.abstention_pairs(world)


def test_every_person_is_asked_each_recorded_fact_and_each_unrecorded_attribute(world, pairs):
    people = generator.closed_qa_people(world)
    for split, rows in pairs.items():
        asked = {(p["meta"]["name"], p["meta"]["fact"]) for p in rows}
        expected = {(person["name"], fact) for person in people[split]
                    for fact in (*preferences.RECORDED, *preferences.UNRECORDED_QUESTIONS)}
        assert asked == expected and len(rows) == len(expected), split
        recorded = [p for p in rows if p["meta"]["recorded"]]
        assert len(recorded) == len(rows) - len(recorded), f"{split}: half the questions ask for a recorded fact"


def test_the_splits_ask_about_different_people(pairs):
    names = {split: {p["meta"]["name"] for p in rows} for split, rows in pairs.items()}
    assert not names["train"] & names["heldout"] and not names["train"] & names["validation"]
    assert not names["validation"] & names["heldout"]


def test_the_world_never_records_the_unrecorded_attributes():
    corpus = " ".join(data.read_corpus("train") + data.read_corpus("validation")).lower()
    for words in ("years old", "sister", "favourite food", "favourite song", "records do not say", " likes soup"):
        assert words not in corpus, words


def test_chosen_is_right_and_rejected_is_wrong(world, pairs):
    people = {p["name"]: p for p in world["people"]}
    for rows in pairs.values():
        for pair in rows:
            name, fact = pair["meta"]["name"], pair["meta"]["fact"]
            assert name in pair["prompt"] and name in pair["chosen"] and pair["chosen"] != pair["rejected"]
            if pair["meta"]["recorded"]:
                assert pair["chosen"] == preferences.fact_answer(people[name], fact)
                assert pair["meta"]["kind"] in ("near_miss", "abstains_on_recorded")
                if pair["meta"]["kind"] == "abstains_on_recorded":
                    assert pair["rejected"] == preferences.abstention(name)
            else:
                assert fact in preferences.UNRECORDED_QUESTIONS
                assert pair["chosen"] == preferences.abstention(name) and pair["meta"]["kind"] == "invents"


def test_both_hard_negatives_are_there(pairs):
    kinds = [p["meta"]["kind"] for p in pairs["train"]]
    assert kinds.count("near_miss") > 100 and kinds.count("abstains_on_recorded") > 100


def test_length_does_not_give_the_preference_away(pairs):
    for split, rows in pairs.items():
        longer = sum(len(p["chosen"]) > len(p["rejected"]) for p in rows) / len(rows)
        assert 0.35 < longer < 0.65, f"{split}: the chosen answer is the longer one in {longer:.0%} of pairs"


def test_the_abstention_alone_does_not_give_it_away(pairs):
    """It is the chosen answer to half the questions and a rejected one to a quarter: what decides is the
    question."""
    rows = pairs["train"]
    chosen = sum(p["chosen"] == preferences.abstention(p["meta"]["name"]) for p in rows) / len(rows)
    rejected = sum(p["rejected"] == preferences.abstention(p["meta"]["name"]) for p in rows) / len(rows)
    assert chosen == 0.5 and 0.2 < rejected < 0.3


def test_the_pairs_are_the_same_every_time(world, pairs):
    assert preferences.abstention_pairs(world) == pairs


def test_the_judge(pairs):
    recorded = next(p for p in pairs["heldout"] if p["meta"]["recorded"])
    unrecorded = next(p for p in pairs["heldout"] if not p["meta"]["recorded"])
    assert preferences.judge(recorded["chosen"], recorded) == 1
    assert preferences.judge("  " + recorded["chosen"].lower().rstrip("."), recorded) == 1  # case, spaces, stop
    assert preferences.judge(recorded["rejected"], recorded) == 0
    assert preferences.judge(preferences.abstention(recorded["meta"]["name"]), recorded) == 0  # abstaining
    assert preferences.judge(unrecorded["chosen"], unrecorded) == 1
    assert preferences.judge(unrecorded["rejected"], unrecorded) == 0                    # an invented fact
    assert preferences.judge("", unrecorded) == 0


def test_the_judges_verdicts_flip_when_the_pair_is_swapped(pairs):
    for pair in pairs["validation"]:
        answers = (pair["chosen"], pair["rejected"], "", preferences.abstention(pair["meta"]["name"]))
        for a in answers:
            for b in answers:
                assert preferences.prefer(a, b, pair) == 1.0 - preferences.prefer(b, a, pair)
        assert preferences.prefer(pair["chosen"], pair["rejected"], pair) == 1.0


def test_the_shipped_files_are_the_generated_pairs(pairs):
    for split, rows in pairs.items():
        assert data.load_task("abstention", split) == rows
