"""The task_accuracy metric (loaded by path with `evaluate`, offline), the accuracy helpers, each example's own
score and the same scores as a GRPO reward."""

from __future__ import annotations

import json
import math

import pytest

from shared import numbers
from shared.evaluation import evals
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


# -- per-example scores and the GRPO reward ----------------------------------------------------------------
def test_the_metric_scores_every_prediction():
    assert evals.score("arithmetic", ["1", "2", "x", "4"], ["1", "2", "3", "5"]) == {"accuracy": 0.5,
                                                                                  "correct": [1, 1, 0, 0]}


def test_each_evaluated_example_keeps_its_own_score(monkeypatch):
    """The metric runs once; its per-example verdicts land on the examples and average to the accuracy."""
    from shared.world.data import load_task

    examples = load_task("arithmetic", "heldout", limit=6)
    answers = [e["answer"] if i % 3 else "no idea" for i, e in enumerate(examples)]  # the first of each three wrong
    monkeypatch.setattr(evals, "generate", lambda model, tokenizer, prompts, **kwargs: answers)
    result = evals.evaluate_task(None, None, "arithmetic", examples=examples)
    assert [e["correct"] for e in result.examples] == [0, 1, 1, 0, 1, 1]
    assert result.accuracy == pytest.approx(4 / 6)


CONVERSATION = [{"role": "assistant", "content": " Fenwick."}]


@pytest.mark.parametrize("completions", [
    [" Fenwick.", "Harrowgate", "5 plus 7 is 12.", REFERENCE_JSON],            # standard data: strings
    [CONVERSATION, [{"role": "assistant", "content": "Harrowgate"}],         # conversational: one message each
     [{"role": "assistant", "content": "5 plus 7 is 12."}], [{"role": "assistant", "content": REFERENCE_JSON}]],
])
def test_task_reward_scores_each_completion_against_its_rows_answer(completions):
    rewards = evals.task_reward(prompts=["?"] * 4, completions=completions,
                                task=["closed_qa", "closed_qa", "arithmetic", "extraction"],
                                answer=["Fenwick", "Fenwick", "12", REFERENCE_JSON], trainer_state=None)
    assert rewards == [1.0, 0.0, 1.0, 1.0]


def test_grpo_trainer_calls_task_reward_with_the_task_and_answer_columns(tmp_path):
    """One GRPO step on the tiny model: TRL passes the columns and conversational completions the way
    task_reward reads them, and logs the rewards it returned."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from shared.models import load_model, load_tokenizer
    from shared.world.data import load_task

    calls = []

    def task_reward(prompts, completions, **columns):  # task_reward, watched
        calls.append((completions, columns["task"], columns["answer"], evals.task_reward(prompts, completions,
                                                                                          **columns)))
        return calls[-1][-1]

    rows = [{"prompt": [{"role": "user", "content": e["prompt"]}], "task": e["task"], "answer": e["answer"]}
            for task in ("closed_qa", "arithmetic") for e in load_task(task, "train", limit=2)]
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=8, report_to=[], use_cpu=True, disable_tqdm=True, logging_steps=1,
                      save_strategy="no")
    GRPOTrainer(model=load_model(), reward_funcs=task_reward, args=args, train_dataset=Dataset.from_list(rows),
                processing_class=load_tokenizer()).train()
    completions, tasks, answers, rewards = calls[0]
    assert all(c[0]["role"] == "assistant" and isinstance(c[0]["content"], str) for c in completions)
    expected = [float(evals.score(t, [c[0]["content"].strip()], [a])["correct"][0])
                for c, t, a in zip(completions, tasks, answers)]
    assert rewards == expected and len(rewards) == 4
    assert {(t, a) for t, a in zip(tasks, answers)} <= {(r["task"], r["answer"]) for r in rows}
