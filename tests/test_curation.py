"""The dirty instruction set (every flaw where its label says, and nothing else wrong) and the course's reference
curation stages, each against that ground truth."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from shared.curation import dirty, stages
from shared.world import data
from shared.world.generator import build_world

WORLD = build_world()


@pytest.fixture(scope="module")
def rows():
    return dirty.dirty_instructions(seed=0)


def by_flaw(rows, flaw):
    return [row for row in rows if row["flaw"] == flaw]


def removed(before, after):
    kept = {row["id"] for row in after}
    return collections.Counter(row["flaw"] for row in before if row["id"] not in kept)


def test_the_set_is_seeded_and_holds_each_flaw_in_its_share(rows):
    assert rows == dirty.dirty_instructions(seed=0)
    assert [r["prompt"] for r in rows] != [r["prompt"] for r in dirty.dirty_instructions(seed=1)]
    clean_count = sum(dirty.MIX.values())
    counts = collections.Counter(row["flaw"] for row in rows)
    for flaw, share in dirty.SHARES.items():
        assert counts[flaw] == round(share * clean_count), (flaw, counts)
    assert counts["clean"] + counts["off_format"] + counts["wrong_answer"] == clean_count
    assert counts["leaked"] == sum(count * copies for count, copies in dirty.LEAKS.values())
    assert len({row["id"] for row in rows}) == len(rows)
    assert set(counts) == set(dirty.FLAWS)   # every label the registry knows, and no other


def test_every_copy_comes_after_the_clean_example_it_copies(rows):
    position = {row["id"]: i for i, row in enumerate(rows)}
    source_flaw = {row["id"]: row["flaw"] for row in rows}
    for row in rows:
        if row["flaw"] in ("duplicate", "near_duplicate", "paraphrase"):
            assert source_flaw[row["source"]] == "clean" and position[row["source"]] < position[row["id"]], row


def test_each_copy_is_in_its_own_range_of_similarity(rows):
    original = {row["id"]: row for row in rows}
    for row in by_flaw(rows, "duplicate"):
        source = original[row["source"]]
        assert row["prompt"] != source["prompt"]
        assert dirty.normalise(row["prompt"]) == dirty.normalise(source["prompt"])
    for row in by_flaw(rows, "near_duplicate"):
        source = original[row["source"]]
        assert dirty.normalise(row["prompt"]) != dirty.normalise(source["prompt"])
        assert dirty.jaccard(dirty.example_text(row), dirty.example_text(source)) >= dirty.NEAR_JACCARD
    for row in by_flaw(rows, "paraphrase"):
        source = original[row["source"]]
        assert row["answer"] == source["answer"]
        assert dirty.jaccard(dirty.example_text(row), dirty.example_text(source)) < dirty.PARAPHRASE_JACCARD


def test_the_quality_check_finds_exactly_the_bad_answers(rows):
    for row in rows:
        found = stages.problem(row, WORLD)
        if row["flaw"] == "off_format":
            assert found and found.startswith("off format"), (row, found)
        elif row["flaw"] == "wrong_answer":
            assert found and found.startswith("wrong"), (row, found)
        elif row["flaw"] in ("clean", "paraphrase") or (row["flaw"] == "leaked" and row["task"] in dirty.MIX):
            assert found is None, (row, found)


@pytest.mark.parametrize("example,why", [
    ({"task": "closed_qa", "prompt": "Where does {name} live?", "answer": "{name} lives in Atlantis."}, "wrong"),
    ({"task": "closed_qa", "prompt": "Where does {name} live?", "answer": "In {town}."}, "off format"),
    ({"task": "closed_qa", "prompt": "Where does Nobody Atall live?", "answer": "Nobody Atall lives in X."}, "wrong"),
    ({"task": "extraction", "prompt": "Text: Ada Brom is a baker in Fenwick.",
      "answer": '{"name": "Ada Brom", "town": "Fenwick", "job": "smith"}'}, "wrong"),
    ({"task": "extraction", "prompt": "Text: Ada Brom is a baker in Fenwick.",
      "answer": '{"name": "Ada Brom", "job": "baker", "town": "Fenwick"}'}, "off format"),
    ({"task": "extraction", "prompt": "Text: Ada Brom is a baker in Fenwick.",
      "answer": '{"name": "Ada Brom", "town": "Fenwick"'}, "off format"),
    ({"task": "arithmetic", "prompt": "Ada has 7 pears. Ada finds 2 more.", "answer": "7 plus 2 is 10."}, "wrong"),
    ({"task": "arithmetic", "prompt": "Ada has 7 pears. Ada finds 2 more.", "answer": "7 plus 3 is 10."}, "wrong"),
    ({"task": "arithmetic", "prompt": "Ada has 7 pears. Ada finds 2 more.", "answer": "9"}, "off format"),
    ({"task": "arithmetic", "prompt": "Ada has 7 pears.", "answer": "   "}, "off format"),
])
def test_the_quality_check_says_what_is_wrong(example, why):
    person = WORLD["people"][0]
    example = {key: value.replace("{name}", person["name"]).replace("{town}", person["town"])
               for key, value in example.items()}
    assert stages.problem(example, WORLD).startswith(why)
    if example["task"] == "arithmetic" and why == "wrong":
        assert stages.problem({**example, "answer": "7 plus 2 is 9."}, WORLD) is None


def test_exact_dedup_removes_the_duplicates_and_nothing_else(rows):
    kept = stages.exact_dedup(rows)
    repeated_leaks = sum(count * (copies - 1) for count, copies in dirty.LEAKS.values())   # all but one of each
    assert removed(rows, kept) == {"duplicate": len(by_flaw(rows, "duplicate")), "leaked": repeated_leaks}
    assert [row["id"] for row in kept if row["flaw"] != "leaked"] == [
        row["id"] for row in rows if row["flaw"] not in ("duplicate", "leaked")]


def test_minhash_finds_most_near_duplicates_and_no_clean_example(rows):
    before = stages.exact_dedup(rows)
    gone = removed(before, stages.minhash_dedup(before))
    assert gone["near_duplicate"] >= 0.8 * len(by_flaw(rows, "near_duplicate")), gone
    assert gone["clean"] == 0, gone


def test_semantic_dedup_needs_the_same_answer_and_a_close_prompt():
    examples = [{"id": str(i), "task": "closed_qa", "prompt": f"q{i}", "answer": answer}
                for i, answer in enumerate(["A.", "a. ", "A.", "B."])]
    unit = np.array([[1.0, 0.0], [0.9, np.sqrt(1 - 0.81)], [0.0, 1.0], [1.0, 0.0]])
    # 1 repeats 0's answer at cosine 0.9; 2 repeats it at cosine 0; 3 has another answer at cosine 1
    assert [e["id"] for e in stages.semantic_dedup(examples, unit, threshold=0.8)] == ["0", "2", "3"]
    assert [e["id"] for e in stages.semantic_dedup(examples, unit, threshold=0.95)] == ["0", "1", "2", "3"]


def test_the_real_embeddings_find_the_paraphrases(rows):
    before = stages.minhash_dedup(stages.exact_dedup(rows))
    gone = removed(before, stages.semantic_dedup(before, stages.embed([row["prompt"] for row in before])))
    assert gone["paraphrase"] >= 0.85 * len(by_flaw(rows, "paraphrase")), gone
    assert gone["clean"] <= 0.02 * len(by_flaw(rows, "clean")), gone   # the same sum in another story


def test_decontamination_removes_the_leaked_examples(rows):
    evals = [e for task in dirty.LEAKS for e in data.load_task(task, "heldout")]
    kept = stages.decontaminate(rows, evals)
    assert removed(rows, kept) == {"leaked": len(by_flaw(rows, "leaked"))}


def test_rebalancing_keeps_as_many_of_each_task_as_the_rarest_seeded_and_in_order(rows):
    kept = stages.rebalance(rows, seed=5)
    counts = collections.Counter(row["task"] for row in kept)
    assert set(counts.values()) == {min(collections.Counter(row["task"] for row in rows).values())}, counts
    positions = {row["id"]: i for i, row in enumerate(rows)}
    assert [positions[row["id"]] for row in kept] == sorted(positions[row["id"]] for row in kept)
    assert kept == stages.rebalance(rows, seed=5) and kept != stages.rebalance(rows, seed=6)
    assert collections.Counter(r["task"] for r in stages.rebalance(rows, per_task=10)) == {t: 10 for t in counts}


def test_a_pipeline_under_test_sees_no_labels(rows):
    plain = dirty.without_labels(rows)
    assert all(set(row) == {"id", "task", "prompt", "answer"} for row in plain)


def test_the_funnel_counts_by_label_and_refuses_what_is_no_stage(rows):
    from shared.curation.funnel import Funnel

    funnel = Funnel(rows)
    kept = funnel.stage("exact dedup", rows, stages.exact_dedup(rows))
    assert funnel.table().loc["exact dedup", "duplicate"] == len(by_flaw(rows, "duplicate"))
    assert funnel.remaining()["duplicate"] == 0 and sum(funnel.remaining().values()) == len(kept)
    with pytest.raises(TypeError, match="does the function end with `return`"):
        funnel.stage("forgot to return", kept, None)
    with pytest.raises(ValueError, match="adds nothing"):
        funnel.stage("invented", kept[:5], kept[:5] + [{"id": "made-up"}])
