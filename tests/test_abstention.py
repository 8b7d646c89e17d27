"""The honest-abstention preference pairs (rungs 06 and 08) and their judge."""

import pytest

from shared.world import data, generator, preferences


@pytest.fixture(scope="module")
def world():
    return generator.build_world()


@pytest.fixture(scope="module")
def pairs(world):
    return preferences.abstention_pairs(world)


def test_every_split_is_half_real_people_half_made_up(pairs):
    for split, rows in pairs.items():
        real = [p for p in rows if p["meta"]["real"]]
        assert len(real) == len(rows) - len(real) == preferences.MADE_UP_PER_SPLIT[split], split


def test_made_up_names_are_nobody_in_the_world_nor_in_any_task(world, pairs):
    real_names = {p["name"] for p in world["people"]}
    strangers = generator.task_stranger_names(world)
    seen = {}
    for split, rows in pairs.items():
        names = {p["meta"]["name"] for p in rows if not p["meta"]["real"]}
        assert not names & real_names and not names & strangers, split
        for other, other_names in seen.items():
            assert not names & other_names, f"{split} shares made-up names with {other}"
        seen[split] = names


def test_real_people_follow_closed_qas_splits(world, pairs):
    people = generator.closed_qa_people(world)
    for split, rows in pairs.items():
        assert {p["meta"]["name"] for p in rows if p["meta"]["real"]} == {p["name"] for p in people[split]}


def test_chosen_is_right_and_rejected_is_wrong(world, pairs):
    people = {p["name"]: p for p in world["people"]}
    for rows in pairs.values():
        for pair in rows:
            name, fact = pair["meta"]["name"], pair["meta"]["fact"]
            assert name in pair["prompt"] and pair["chosen"] != pair["rejected"]
            if pair["meta"]["real"]:
                assert pair["chosen"] == preferences.fact_answer(people[name], fact)
                assert pair["meta"]["kind"] in ("near_miss", "abstains_on_real")
            else:
                assert pair["chosen"] == preferences.abstention(name) and pair["meta"]["kind"] == "invents"


def test_both_hard_negatives_are_there(pairs):
    kinds = [p["meta"]["kind"] for p in pairs["train"]]
    assert kinds.count("near_miss") > 100 and kinds.count("abstains_on_real") > 100


def test_length_does_not_give_the_preference_away(pairs):
    for split, rows in pairs.items():
        longer = sum(len(p["chosen"]) > len(p["rejected"]) for p in rows) / len(rows)
        assert 0.35 < longer < 0.65, f"{split}: the chosen answer is the longer one in {longer:.0%} of pairs"


def test_the_pairs_are_the_same_every_time(world, pairs):
    assert preferences.abstention_pairs(world) == pairs


def test_the_judge(pairs):
    real = next(p for p in pairs["heldout"] if p["meta"]["real"])
    made_up = next(p for p in pairs["heldout"] if not p["meta"]["real"])
    assert preferences.judge(real["chosen"], real) == 1
    assert preferences.judge("  " + real["chosen"].lower().rstrip("."), real) == 1  # case, spaces, final stop
    assert preferences.judge(real["rejected"], real) == 0
    assert preferences.judge(preferences.abstention(real["meta"]["name"]), real) == 0  # abstaining on a real person
    assert preferences.judge(made_up["chosen"], made_up) == 1
    assert preferences.judge(made_up["rejected"], made_up) == 0                      # an invented fact
    assert preferences.judge("", made_up) == 0


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
