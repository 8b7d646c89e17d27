"""Rung 02's checker: passes on the solution, fails on the untouched exercise, and turns every kind of bad
input into a clear ✗ (never a traceback)."""

from __future__ import annotations

import json
import math
import shutil

import nbformat
import pytest

from rung_harness import RungUnderTest, by_name, edit_json
from shared import checking

RUNG = RungUnderTest("02")
check02 = RUNG.check
solution_run = RUNG.solution_run_fixture()
outputs_copy = RUNG.outputs_copy_fixture()


def test_checker_passes_on_the_solution(solution_run):
    report, printed, _ = solution_run
    assert report.passed, printed
    assert all(c.status == checking.PASS for c in report.criteria if "written answer" not in c.name), printed
    assert by_name(report, "written answer").status == checking.REVIEW  # flagged, never auto-passed
    assert "DONE" in printed and "✓" in printed and "⚑" in printed


def test_solution_reaches_the_behaviour_change(solution_run):
    """From a base that answers nothing in the chat format to >= 90% on every task: closed QA on people SFT never
    saw, extraction about strangers in sentences it never saw, word problems with unseen names and items."""
    _, _, outputs_root = solution_run
    metrics = json.loads((outputs_root / "02-sft" / "metrics.json").read_text())
    assert all(value <= 0.10 for value in metrics["before"].values()), metrics["before"]
    assert all(value >= 0.90 for value in metrics["after"].values()), metrics["after"]


def test_checker_fails_on_the_untouched_exercise():
    RUNG.assert_exercise_fails(graded=("build_sft_example", "is_correct"))


def test_checker_verifies_the_solution_outputs(solution_run, outputs_copy):
    report, printed, _ = solution_run
    for fragment in ("runs top to bottom", "build_sft_example", "is_correct", "valid numbers", "reloads", "agree"):
        assert by_name(report, fragment).status == checking.PASS, printed
    assert by_name(report, "written answer").status == checking.REVIEW  # flagged, never auto-passed
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "agree").status == checking.PASS, printed


def test_missing_saved_model(outputs_copy):
    shutil.rmtree(outputs_copy / "02-sft" / "model")
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "reloads").status == checking.FAIL and "no saved model" in printed
    assert not report.passed


def test_corrupt_saved_model(outputs_copy):
    (outputs_copy / "02-sft" / "model" / "model.safetensors").write_bytes(b"not a safetensors file")
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "reloads").status == checking.FAIL and "does not load" in printed


def test_nan_metrics(outputs_copy):
    edit_json(outputs_copy / "02-sft" / "metrics.json", lambda m: m["after"].update(arithmetic=math.nan))
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "valid numbers").status == checking.FAIL and "not a number between 0 and 1" in printed


def test_hand_edited_metrics_disagree_with_the_model(outputs_copy):
    edit_json(outputs_copy / "02-sft" / "metrics.json",
              lambda m: m["after"].update(closed_qa=1.0 if m["after"]["closed_qa"] < 0.5 else 0.0))
    report, printed = RUNG.verify(outputs_copy)
    agree = by_name(report, "agree")
    assert agree.status == checking.FAIL and "the saved model scores" in agree.detail


def test_graded_functions_against_hidden_cases_directly():
    """The hidden cases agree with the course metric as written in the solution (sanity of the checker)."""
    solution = nbformat.read(RUNG.solution, as_version=4)
    from shared.notebooks.graded import extract_functions

    functions = extract_functions(solution, ["build_sft_example", "is_correct"])
    assert check02.check_is_correct(functions["is_correct"]).endswith("unseen cases")
    assert check02.check_build_sft_example(functions["build_sft_example"]).endswith("unseen examples")
    with pytest.raises(checking.CheckFailed):
        check02.check_is_correct(lambda prediction, reference, task: prediction == reference)
    with pytest.raises(checking.CheckFailed):  # a mask that also trains on the prompt
        check02.check_build_sft_example(lambda example, tokenizer: (lambda built: {
            "input_ids": built["input_ids"], "completion_mask": [1] * len(built["input_ids"])})(
            functions["build_sft_example"](example, tokenizer)))
