"""The task_accuracy metric (loaded by path with `evaluate`, offline) and the accuracy helpers."""

from __future__ import annotations

import json
import math

import pytest

from shared.evaluation import evals
from shared import numbers
from shared.paths import METRICS_DIR

REFERENCE_JSON = json.dumps({"name": "Mara Ashby", "town": "Fenwick", "job": "baker"})


def correct(task: str, prediction: str, reference: str) -> bool:
    score = evals.accuracy(task, [prediction], [reference])
    assert score in (0.0, 1.0)
    return score == 1.0


# -- closed QA -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", ["Fenwick", "fenwick", "FENWICK", "  Fenwick  ", "Fenwick.",
                                        "The Fenwick.", "the fenwick", "Fenwick\n", "Fenwick!"])
def test_closed_qa_normalises(prediction):
    assert correct("closed_qa", prediction, "Fenwick")


@pytest.mark.parametrize("prediction", ["Fenwickshire", "Fenwic", "Harrowgate", "Fenwick Fenwick", "", "in Fenwick"])
def test_closed_qa_rejects_other_answers(prediction):
    assert not correct("closed_qa", prediction, "Fenwick")


def test_closed_qa_sentences():
    reference = "Mara Ashby lives in Fenwick."
    assert correct("closed_qa", "mara ashby lives in fenwick", reference)
    assert correct("closed_qa", " Mara  Ashby lives in Fenwick.\n", reference)
    assert not correct("closed_qa", "Mara Ashby lives in Harrowgate.", reference)
    assert not correct("closed_qa", "Fenwick", reference)


def test_closed_qa_articles_and_inner_whitespace():
    assert correct("closed_qa", "a dog", "dog")
    assert correct("closed_qa", "An owl", "owl")
    assert correct("closed_qa", "cold   run", "Cold Run")
    assert not correct("closed_qa", "theatre", "atre")  # "the" only as a whole word


# -- extraction ------------------------------------------------------------------------------------------
def test_extraction_exact_and_reordered_keys():
    assert correct("extraction", REFERENCE_JSON, REFERENCE_JSON)
    assert correct("extraction", '{"job": "baker", "town": "Fenwick", "name": "Mara Ashby"}', REFERENCE_JSON)


def test_extraction_extra_keys_and_normalised_values_are_fine():
    assert correct("extraction", '{"name": "mara ashby", "town": "Fenwick.", "job": "Baker", "pet": "cat"}',
                   REFERENCE_JSON)


def test_extraction_text_around_the_object_is_fine():
    assert correct("extraction", f"Here it is: {REFERENCE_JSON} Hope that helps.", REFERENCE_JSON)


@pytest.mark.parametrize("prediction", [
    '{"name": "Mara Ashby", "town": "Harrowgate", "job": "baker"}',   # wrong value
    '{"name": "Mara Ashby", "town": "Fenwick"}',                      # a field missing
    '{"name": "Mara Ashby", "town": "Fenwick", "job": "baker"',       # not closed
    "{'name': 'Mara Ashby', 'town': 'Fenwick', 'job': 'baker'}",      # not JSON (Python quotes)
    "name: Mara Ashby, town: Fenwick, job: baker",                    # no object
    '["Mara Ashby", "Fenwick", "baker"]',                             # JSON, not an object
    '"{}"',
    "",
])
def test_extraction_failures(prediction):
    assert not correct("extraction", prediction, REFERENCE_JSON)


# -- arithmetic ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction, reference, expected", [
    ("12", "12", True),
    ("12 apples", "12", True),
    ("The answer is 12.", "12", True),
    (" 12\n", "12", True),
    ("120", "12", False),
    ("1 2", "12", False),
    ("5 plus 7 is 12.", "12", True),   # working first, result last
    ("5 plus 7 is 12.", "7 plus 5 is 12.", True),
    ("5 plus 7 is 13.", "5 plus 7 is 12.", False),
    ("12, because 5 plus 7 is 12 and 1 more", "12", False),  # the last integer counts
    ("-3", "-3", True),
    ("-3", "3", False),
    ("3", "-3", False),
    ("twelve", "12", False),
    ("", "0", False),
    ("0", "0", True),
])
def test_arithmetic(prediction, reference, expected):
    assert correct("arithmetic", prediction, reference) is expected


# -- the metric itself -----------------------------------------------------------------------------------
def test_accuracy_is_a_fraction():
    score = evals.accuracy("arithmetic", ["1", "2", "x", "4"], ["1", "2", "3", "5"])
    assert score == pytest.approx(0.5)


def test_task_metric_is_cached_per_task():
    assert evals.task_metric("closed_qa") is evals.task_metric("closed_qa")
    assert evals.task_metric("closed_qa") is not evals.task_metric("arithmetic")


@pytest.mark.parametrize("config", ["nope", None])
def test_unknown_config_raises(config):
    import evaluate

    kwargs = {} if config is None else {"config_name": config}
    with pytest.raises(ValueError, match="config_name must be one of"):
        evaluate.load(str(METRICS_DIR / "task_accuracy"), **kwargs)


def test_empty_input_gives_nan():
    assert math.isnan(evals.accuracy("closed_qa", [], []))


@pytest.mark.parametrize("value, valid", [
    (0, True), (1, True), (0.0, True), (0.5, True), (1.0, True),
    (-0.01, False), (1.01, False), (float("nan"), False), (float("inf"), False),
    (True, False), (False, False), ("0.5", False), (None, False), ([0.5], False),
])
def test_is_valid_accuracy(value, valid):
    assert numbers.is_fraction(value) is valid


def test_nan_accuracy_is_not_valid():
    assert not numbers.is_fraction(evals.accuracy("arithmetic", [], []))
