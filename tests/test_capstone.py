"""The capstone: its model card (written from results, read back), and its checker -- passes on the worked example,
fails on the untouched template, and turns every edited figure, missing section, leaked split or swapped model into
a clear ✗ (never a traceback)."""

from __future__ import annotations

import json
import shutil

import pytest

from rung_harness import RungUnderTest, by_name, edit_json
from shared import checking
from shared.capstone import card

RUNG = RungUnderTest("12")
check12 = RUNG.check
solution_run = RUNG.solution_run_fixture()
outputs_copy = RUNG.outputs_copy_fixture()
FOLDER = "12-capstone"


def results_of(outputs_root):
    return json.loads((outputs_root / FOLDER / "results.json").read_text())


def card_path(outputs_root):
    return outputs_root / FOLDER / "model" / "README.md"


# -- the card ------------------------------------------------------------------------------------------------
def example_results() -> dict:
    row = {"before": 0.0, "after": 0.5, "change": 0.5, "low": 0.4, "high": 0.6, "p_value": 0.001,
           "verdict": "real gain"}
    comparison = {figure: dict(row) for figure in ("closed_qa", "extraction", "extraction_f1", "json_valid",
                                                   "arithmetic", "fact_recall")}
    comparison["perplexity"] = {**row, "before": 1.73, "after": 1.81, "change": 0.08, "verdict": "real loss"}
    return {"name": "a-model", "summary": "A model.", "base_model": "data/tiny-base", "profile": "tiny",
            "method": "lora", "adapter": True, "seed": 0, "train_seconds": 61.0, "model_folder": "model",
            "task": {"name": "two_step", "title": "two-step word problems", "description": "Problems.",
                     "train_examples": 850, "heldout_examples": 100, "overlap": 0, "source": "the course"},
            "recipe": {"learning_rate": 0.001}, "comparison": comparison,
            "target": {**row, "after": 0.47, "n": 100},
            "written": {"intended_use": "For teaching.", "limitations": "Wrong half the time."}}


def test_a_card_reads_back_its_header_sections_and_figures():
    header, sections = card.read_card(card.model_card(example_results()))
    assert header["base_model"] == "data/tiny-base" and header["library_name"] == "peft"
    assert list(sections) == list(card.SECTIONS)
    assert sections["Intended use"] == "For teaching." and sections["Limitations and risks"] == "Wrong half the time."
    metrics = card.card_metrics(header)
    assert metrics["two-step word problems (held out)"] == 0.47
    assert metrics["forgetting: held-out perplexity"] == 1.81 and metrics["closed QA: exact match"] == 0.5
    assert "| forgetting: held-out perplexity | 1.73 | 1.81 | +0.08 [log-loss" in sections["Forgetting"]
    assert "| two-step word problems (held out) | 0% | 47% | +50 pts [+40, +60] | real gain |" in sections["Evaluation"]
    assert "0 of the held-out examples in the training set" in sections["Training data"]
    assert "AutoPeftModelForCausalLM" in sections["How to use"]


def test_a_text_without_a_header_is_not_a_card():
    with pytest.raises(ValueError, match="no YAML header"):
        card.read_card("# a model\n\n## Intended use\n")


# -- the checker on the worked example ---------------------------------------------------------------------------
def test_checker_passes_on_the_worked_example(solution_run):
    report, printed, _ = solution_run
    assert report.passed, printed
    assert all(c.status == checking.PASS for c in report.criteria if "written answer" not in c.name), printed
    assert [c.status for c in report.criteria if "written answer" in c.name] == [checking.REVIEW] * 2


def test_the_worked_examples_claims_hold(solution_run):
    """What the lesson says of the worked example: the task learned from nothing, rung 02's tasks learned beside
    it, nothing held out was trained on."""
    results = results_of(solution_run[2])
    assert results["task"]["overlap"] == 0 and results["target"]["before"] <= 0.05
    assert results["target"]["verdict"] == "real gain" and results["target"]["after"] >= 0.2, results["target"]
    assert all(results["comparison"][task]["verdict"] == "real gain"
               for task in ("closed_qa", "extraction", "arithmetic")), results["comparison"]


def test_checker_fails_on_the_untouched_template():
    # the two written sections are in the card the run writes: not checked (not "0 words") when it stops
    RUNG.assert_exercise_fails(graded=(), unmet=("the model card were saved", "every section", "held-out split",
                                                 "reloads", "every figure", "learned its task", "Intended use",
                                                 "Limitations"), answers=0)


# -- what the run saved ----------------------------------------------------------------------------------
_verify_fails = RUNG.assert_verify_fails


def _edit_card(outputs, change):
    path = card_path(outputs)
    path.write_text(change(path.read_text()))


def test_a_figure_typed_into_the_cards_header_fails(outputs_copy):
    results = results_of(outputs_copy)
    after = results["target"]["after"]
    _edit_card(outputs_copy, lambda text: text.replace(f"value: {after}", "value: 0.99", 1))
    _verify_fails(outputs_copy, "every figure", "the card's header says two-step word problems (held out) 0.99")


def test_an_edited_table_fails(outputs_copy):
    _edit_card(outputs_copy, lambda text: text.replace("real loss", "within noise").replace(
        "| within noise |", "| real gain |", 1))
    _verify_fails(outputs_copy, "every figure", "differs from what results.json generates")


@pytest.mark.parametrize("change,fragment", [
    (lambda r: r["target"].update(before=0.3), "the card's before is 0.3"),
    (lambda r: r["comparison"]["fact_recall"].update(verdict="within noise"), "forgetting: fact recall: the card says"),
])
def test_edited_results_fail(outputs_copy, change, fragment):
    edit_json(outputs_copy / FOLDER / "results.json", change)
    _verify_fails(outputs_copy, "every figure", fragment)


def test_a_missing_section_fails(outputs_copy):
    _edit_card(outputs_copy, lambda text: text.replace("## Forgetting", "## Other things"))
    _verify_fails(outputs_copy, "every section", "'Forgetting'")


def test_a_card_naming_another_base_fails(outputs_copy):
    _edit_card(outputs_copy, lambda text: text.replace("base_model:", "base_model: gpt2\nold_base:", 1))
    _verify_fails(outputs_copy, "reloads", "the card's base model is 'gpt2'")


def test_a_held_out_split_that_is_not_the_tasks_fails(outputs_copy):
    data = outputs_copy / FOLDER / "data"
    shutil.copy(data / "train.jsonl", data / "heldout.jsonl")
    _verify_fails(outputs_copy, "held-out split", "is not the two_step task's heldout split")


def test_held_out_answers_edited_under_their_ids_fail(outputs_copy):
    """Right ids, other answers: the split is not the task's, and the checker measures on the task's own."""
    heldout = outputs_copy / FOLDER / "data" / "heldout.jsonl"
    rows = [json.loads(line) for line in heldout.read_text().splitlines()]
    rows[0]["answer"] = "an answer of my own"
    heldout.write_text("".join(json.dumps(row) + "\n" for row in rows))
    _verify_fails(outputs_copy, "held-out split", "saved held-out examples differ from the two_step task's own: 1 (e.g.")


def test_held_out_examples_in_the_training_data_fail(outputs_copy):
    data = outputs_copy / FOLDER / "data"
    with open(data / "train.jsonl", "a") as train:
        train.write((data / "heldout.jsonl").read_text().splitlines()[0] + "\n")
    _verify_fails(outputs_copy, "held-out split", "1 held-out examples are in the training data")


def test_a_missing_adapter_fails_without_a_traceback(outputs_copy):
    (outputs_copy / FOLDER / "model" / "adapter_config.json").unlink()
    _verify_fails(outputs_copy, "reloads", "holds no adapter")


def test_missing_results_fail_without_a_traceback(outputs_copy):
    (outputs_copy / FOLDER / "results.json").unlink()
    _verify_fails(outputs_copy, "the model card were saved", "results was not saved")


def test_an_empty_written_section_fails(outputs_copy):
    results = results_of(outputs_copy)
    _edit_card(outputs_copy, lambda text: text.replace(results["written"]["limitations"], "TODO"))
    report, printed = RUNG.verify(outputs_copy)
    written = by_name(report, "Limitations and risks")
    assert written.status == checking.FAIL and "1 words written" in written.detail, printed


def test_a_fine_tune_that_learned_nothing_fails():
    nothing = {"scores": {}, "target": [0.0] * 50 + [1.0] * 5}
    measured = {"base": nothing, "tuned": {"scores": {}, "target": [0.0] * 49 + [1.0] * 6}}
    RUNG.assert_fails(lambda: check12.check_learned(measured), "within noise")
