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
                Two finer figures come with it: ``json_valid`` (the prediction parses as a JSON object) and
                ``field_f1`` (per answer, F1 of its fields against the reference's: a field counts when its key
                and normalised value match; unparseable JSON scores 0), each a list per prediction and a mean
                (``json_validity``, ``mean_field_f1``).
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


def field_f1(prediction, reference):
    """F1 of the predicted JSON object's fields against the reference object's (0.0 when either does not parse)."""
    predicted, expected = parse_json_object(prediction), parse_json_object(reference)
    if not predicted or not expected:
        return 0.0
    matched = sum(key in predicted and normalise(predicted[key]) == normalise(value) for key, value in expected.items())
    if matched == 0:
        return 0.0
    precision, recall = matched / len(predicted), matched / len(expected)
    return 2 * precision * recall / (precision + recall)


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
                               "Returns accuracy (the share right) and correct (1 or 0 per prediction); extraction also "
                               "json_valid and field_f1 per prediction, and their means",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        # Per-example scores too: a reward, a bootstrap interval or a paired comparison needs each answer's score.
        correct = [int(is_correct(p, r, self.config_name)) for p, r in zip(predictions, references)]
        result = {"accuracy": _mean(correct), "correct": correct}
        if self.config_name == "extraction":
            valid = [int(parse_json_object(p) is not None) for p in predictions]
            f1 = [field_f1(p, r) for p, r in zip(predictions, references)]
            result.update(json_valid=valid, json_validity=_mean(valid), field_f1=f1, mean_field_f1=_mean(f1))
        return result


def _mean(values):
    return sum(values) / len(values) if values else float("nan")
