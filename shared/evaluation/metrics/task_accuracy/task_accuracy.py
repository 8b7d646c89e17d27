"""Task accuracy for the course's tasks: one point when a generated answer matches the reference.

Load it by path (hub metrics need the network):

    metric = evaluate.load("shared/evaluation/metrics/task_accuracy", config_name="arithmetic")
    metric.compute(predictions=["5 plus 7 is 12.", "13"], references=["12", "12"])
    # {"accuracy": 0.5, "correct": [1, 0]}  -- the share right, and each prediction's own score

Scoring rules, by task (the config name):

* closed_qa  -- equal after normalising: lower case, surrounding spaces and final punctuation removed,
                a leading "a"/"an"/"the" dropped ("The Fenwick." matches "Fenwick";
                "mira olsen lives in fenwick" matches "Mira Olsen lives in Fenwick.").
* extraction -- the prediction parses as a JSON object and every field of the reference object is present
                with an equal (normalised) value; key order and extra fields do not matter.
* arithmetic -- the last integer in the prediction equals the last integer in the reference: working may
                come first, the result comes last ("5 plus 7 is 12." matches "12" and "7 plus 5 is 12.";
                "120" does not match "12").
* two_step   -- the working is the reference's, step for step, after normalising as closed_qa does
                ("7 plus 2 is 9. 9 minus 4 is 5." matches "7 plus 2 is 9.  9 minus 4 is 5"; a right result after
                wrong working, "7 plus 2 is 8. 9 minus 4 is 5.", does not).
"""

import json
import re

import datasets
import evaluate

TASKS = ("closed_qa", "extraction", "arithmetic", "two_step")
_INTEGER = re.compile(r"-?\d+")


def normalise(text):
    text = " ".join(str(text).lower().split()).strip(" .!?,;:'\"")
    for article in ("a ", "an ", "the "):
        if text.startswith(article):
            return text[len(article):]
    return text


def parse_json_object(text):
    """The JSON object in text, or None. Accepts text around the object (e.g. a trailing sentence)."""
    text = str(text).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        value = json.loads(text[start:end + 1])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def last_integer(text):
    numbers = _INTEGER.findall(str(text))
    return int(numbers[-1]) if numbers else None


def is_correct(prediction, reference, task):
    if task in ("closed_qa", "two_step"):
        return normalise(prediction) == normalise(reference)
    if task == "extraction":
        predicted, expected = parse_json_object(prediction), parse_json_object(reference)
        if predicted is None or expected is None:
            return False
        return all(normalise(predicted.get(key, "")) == normalise(value) for key, value in expected.items())
    if task == "arithmetic":
        predicted = last_integer(prediction)
        return predicted is not None and predicted == last_integer(reference)
    raise ValueError(f"unknown task {task!r}; tasks are: {', '.join(TASKS)}")


class TaskAccuracy(evaluate.Metric):
    def _info(self):
        if self.config_name not in TASKS:
            raise ValueError(f"config_name must be one of {TASKS}, got {self.config_name!r}")
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions: generated answers (str); references: reference answers (str). "
                               "Returns accuracy (the share right) and correct (1 or 0 per prediction)",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        # Per-example scores too: a reward, a bootstrap interval or a paired comparison needs each answer's score.
        correct = [int(is_correct(p, r, self.config_name)) for p, r in zip(predictions, references)]
        return {"accuracy": sum(correct) / len(correct) if correct else float("nan"), "correct": correct}
