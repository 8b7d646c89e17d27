"""Checker for rung 02 (SFT): `make check RUNG=02 [NOTEBOOK=path]`.

It runs a copy of the notebook, then verifies rather than trusts:
* the learner's `build_sft_example` and `is_correct` are tested on cases the notebook never shows;
* the saved model is reloaded and asked the held-out questions again; its accuracy is computed here, with the
  course's metric, and compared with the figures the notebook saved.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere, even before `pip install -e`

from shared.checking import CheckFailed, Context, main, require  # noqa: E402
from shared.checking.figures import (FRESH_HINT, check_agreement, check_not_trained_on_heldout,  # noqa: E402
                                     check_thresholds, measure_model, read_metrics)
from shared.checking.guards import Forbidden  # noqa: E402

RUNG = "02"
# Per profile: the held-out accuracy every task must reach after SFT (the base model scores ~0-10%).
THRESHOLDS = {"tiny": 0.90, "gpu": 0.60}

# Cases the notebook does not show. The expected verdicts come from the course's metric, not from here.
SCORING_CASES = [
    ("Oakhollow", "Oakhollow", "closed_qa"), ("  oakhollow  ", "Oakhollow", "closed_qa"),
    ("The teal.", "teal", "closed_qa"), ("an owl", "owl", "closed_qa"), ("Oak hollow", "Oakhollow", "closed_qa"),
    ("teal green", "teal", "closed_qa"), ("", "teal", "closed_qa"), ("Ferret!", "ferret", "closed_qa"),
    ('{"job": "potter", "town": "Quillby", "name": "Ro Sel"}', '{"name": "Ro Sel", "town": "Quillby", "job": "potter"}',
     "extraction"),
    ('Sure: {"name": "Ro Sel", "town": "quillby", "job": "Potter", "pet": "owl"}',
     '{"name": "Ro Sel", "town": "Quillby", "job": "potter"}', "extraction"),
    ('{"name": "Ro Sel", "town": "Rushford", "job": "potter"}',
     '{"name": "Ro Sel", "town": "Quillby", "job": "potter"}', "extraction"),
    ('{"name": "Ro Sel", "job": "potter"}', '{"name": "Ro Sel", "town": "Quillby", "job": "potter"}', "extraction"),
    ('["Ro Sel", "Quillby", "potter"]', '{"name": "Ro Sel", "town": "Quillby", "job": "potter"}', "extraction"),
    ('{"name": "Ro Sel", "town": "Quillby", "job": "potter"', '{"name": "Ro Sel", "town": "Quillby", "job": "potter"}',
     "extraction"),
    ("17", "17", "arithmetic"), ("There are 17 left.", "17", "arithmetic"), ("170", "17", "arithmetic"),
    ("7", "17", "arithmetic"), ("-3", "3", "arithmetic"), ("three", "3", "arithmetic"), ("0 apples", "0", "arithmetic"),
    ("12 then 17", "17", "arithmetic"), ("9 minus 4 is 5.", "9 minus 4 is 5.", "arithmetic"),
    ("9 minus 4 is 6.", "9 minus 4 is 5.", "arithmetic"), ("5", "9 minus 4 is 5.", "arithmetic"),
    ("Ro Selwood lives in Quillby.", "Ro Selwood lives in Quillby.", "closed_qa"),
    ("ro selwood lives in quillby", "Ro Selwood lives in Quillby.", "closed_qa"),
    ("Ro Selwood lives in Rushford.", "Ro Selwood lives in Quillby.", "closed_qa"),
]
# Prompts unlike the notebook's: several lines, non-ASCII, an empty answer, a JSON answer.
UNSEEN_EXAMPLES = [
    {"prompt": "Where does Ro Selwood live?", "answer": "Ro Selwood lives in Quillby."},
    {"prompt": "Line one.\nLine two: résumé — naïve?", "answer": "Fine, thanks."},
    {"prompt": "Extract the person's name, town and job from the text as JSON.\n\nText: Ro Sel is a potter.",
     "answer": '{"name": "Ro Sel", "town": "Quillby", "job": "potter"}'},
    {"prompt": "What is 3 + 4?", "answer": "7"},
    {"prompt": "Say nothing.", "answer": ""},
]


# The references each graded function is checked against, which it may therefore not call.
FORBIDDEN = {
    "build_sft_example": Forbidden("the training sequence is yours to build with the chat template; TRL's "
                                   "tokenisation is what it is checked against",
                                   modules=("trl",), functions=("shared.training.sft.trl_tokenized",
                                                                "shared.training.sft.prompt_completion_rows")),
    "is_correct": Forbidden("the scoring rules are yours to write; the course's metric is what they are "
                            "checked against", modules=("evaluate", "shared.evaluation"),
                            files=("evaluation/metrics/task_accuracy",)),
}


def check(ctx: Context) -> None:
    ctx.run_notebook()
    check_graded(ctx)
    verify_outputs(ctx)
    ctx.review("written answer: learning rate and loss mask", ctx.answers().get("learning-rate-and-mask"),
               hint="Write a few sentences of your own in section 6.")


def check_graded(ctx: Context) -> None:
    """The learner's functions, run in their own process, on cases the notebook never shows."""
    graded = ctx.graded(list(FORBIDDEN), forbidden=FORBIDDEN)
    ctx.criterion("build_sft_example builds TRL's training sequence, loss on the answer only",
                  lambda: check_build_sft_example(graded["build_sft_example"]),
                  hint="input_ids: apply_chat_template on both messages; completion_mask: 0 up to and including "
                       "the assistant header (apply_chat_template with add_generation_prompt=True), 1 after.")
    ctx.criterion("is_correct scores like the course metric on unseen answers",
                  lambda: check_is_correct(graded["is_correct"]),
                  hint="Re-read the three rules in section 3; the failing case above shows which one.")


def verify_outputs(ctx: Context) -> None:
    """The criteria about what the notebook saved: metrics, the model, and whether they agree."""
    outputs = ctx.outputs()
    saved = ctx.collect("metrics were saved and are valid numbers", lambda: read_metrics(outputs),
                        hint="Run section 7 (it writes metrics.json) and keep its keys.")
    measured = ctx.collect("the saved model reloads and was fine-tuned",
                           lambda: ctx.measure([outputs / "model"], lambda: reload_and_measure(outputs)),
                           hint="Section 7 saves the model with trainer.save_model; do not move or edit the files.")
    threshold = THRESHOLDS[ctx.profile.name]  # the checker's own profile: never one a notebook wrote down
    heldout = measured.get("heldout", {})
    ctx.criterion(f"held-out accuracy, recomputed by the checker, is at least {threshold:.0%} on every task",
                  lambda: check_thresholds(heldout, threshold),
                  hint="Train on all three tasks with the profile's settings; if one task lags, look at its "
                       "answers side by side (section 5).")
    ctx.criterion("not trained on the held-out split (new questions at check time)",
                  lambda: check_not_trained_on_heldout(heldout, measured.get("fresh", {})), hint=FRESH_HINT)
    ctx.criterion("saved figures agree with the model", lambda: check_agreement(saved, heldout),
                  hint="metrics.json must hold what the notebook measured: no hand edits, and is_correct must "
                       "score like the course metric.")


# -- the criteria ------------------------------------------------------------------------------------
def _tokenizer():
    from shared.models import load_tokenizer

    return load_tokenizer()


def check_build_sft_example(build_sft_example) -> str:
    from shared.models import load_model
    from shared.training.sft import trl_tokenized

    tokenizer = _tokenizer()
    references = trl_tokenized(UNSEEN_EXAMPLES, load_model(), tokenizer)
    for example, reference in zip(UNSEEN_EXAMPLES, references):
        built = build_sft_example(dict(example), tokenizer)
        require(isinstance(built, dict) and {"input_ids", "completion_mask"} <= set(built),
                "must return a dict with 'input_ids' and 'completion_mask'")
        ids, mask = list(built["input_ids"]), list(built["completion_mask"])
        require(len(ids) == len(mask), f"input_ids has {len(ids)} tokens but completion_mask {len(mask)}")
        require(ids == reference["input_ids"],
                f"for prompt {example['prompt'][:30]!r} the token ids differ from the chat template's "
                f"(got {tokenizer.decode(ids)!r})")
        expected = [int(label != -100) for label in reference["labels"]]
        if [int(m) for m in mask] != expected:
            wrong = sum(int(a) != b for a, b in zip(mask, expected))
            raise CheckFailed(f"for prompt {example['prompt'][:30]!r}, {wrong} mask positions differ: "
                              f"{sum(expected)} answer tokens expected, {sum(map(int, mask))} marked")
    return f"{len(UNSEEN_EXAMPLES)} unseen examples"


def check_is_correct(is_correct) -> str:
    from shared.evaluation.evals import task_metric

    for prediction, reference, task in SCORING_CASES:
        expected = task_metric(task).compute(predictions=[prediction], references=[reference])["accuracy"] == 1.0
        got = is_correct(prediction, reference, task)
        require(isinstance(got, (bool, int)), f"must return True or False, returned {got!r}")
        require(bool(got) == expected, f"is_correct({prediction!r}, {reference!r}, {task!r}) returned {bool(got)}, "
                                       f"expected {expected}")
    return f"{len(SCORING_CASES)} unseen cases"


def reload_and_measure(outputs: Path) -> dict:
    """Reload the saved model and compute held-out accuracy with the course's metric."""
    from shared.checking.artefacts import load_saved_model
    from shared.profiles import get_profile

    profile = get_profile(announce=False)
    model, tokenizer = load_saved_model(outputs / "model", profile, hint="run section 7")
    return measure_model(model, tokenizer, profile)


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG))
