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

from shared.checking import (Context, check_config_cases, fixed_trainer_settings, hidden, main,  # noqa: E402
                             require)
from shared.checking.figures import (FRESH_HINT, check_agreement, check_not_trained_on_heldout,  # noqa: E402
                                     check_thresholds, measure_model, read_metrics)
from shared.checking.guards import Forbidden  # noqa: E402

RUNG = "02"
# Per profile and task: the held-out accuracy the saved model must reach after SFT (the base model scores 0%).
# tiny -- `make bench RUNG=02 SEEDS=0,1,2`: closed QA 98 / 100 / 99%, extraction 95 / 89 / 92%, arithmetic
#         98 / 98 / 99% (worst 98, 89, 98). Each bar sits below the worst seed; extraction's by 4 points, since a
#         learner's own run is one more draw (a 90% bar would fail seed 1).
# gpu  -- first estimates, not yet measured on a GPU. A hub model never read the tiny world, so closed-QA
#         questions about its people cannot be answered (no threshold; the lesson says so); copying a stranger's
#         details into JSON and word problems are within a small model's reach.
THRESHOLDS = {
    "tiny": {"closed_qa": 0.90, "extraction": 0.85, "arithmetic": 0.90},
    "gpu": {"extraction": 0.80, "arithmetic": 0.60},
}
# The lists of cases below take more from an instructor's hidden tests (shared/checking/hidden.py), by name.
# Training sizes and changes the notebook never uses: (sizes put in the profile's "sft" stage, changes passed
# as keyword arguments). sft_config must carry each into the SFTConfig it returns.
CONFIG_CASES = [
    ({"learning_rate": 1.7e-4, "num_train_epochs": 2, "per_device_train_batch_size": 4, "warmup_steps": 0.1,
      "activation_checkpointing": True}, {}),
    ({}, {"learning_rate": 2e-3, "completion_only_loss": False, "eval_strategy": "no", "max_steps": 7}),
]

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
    ("12 then 17", "17", "arithmetic"), ("17 take away 5 leaves 12.", "17", "arithmetic"),
    ("9 minus 4 is 5.", "9 minus 4 is 5.", "arithmetic"),
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
    "sft_config": Forbidden("the SFTConfig is yours to write; the course's recipe is what it is checked against",
                            functions=("shared.training.sft.sft_trainer",
                                       "shared.training.recipe.common_config_kwargs")),
    "is_correct": Forbidden("the scoring rules are yours to write; the course's metric is what they are "
                            "checked against", modules=("evaluate", "shared.evaluation"),
                            files=("evaluation/metrics/task_accuracy",)),
}


def check(ctx: Context) -> None:
    ctx.run_notebook()
    check_graded(ctx)
    ctx.from_the_run(verify_outputs)  # what the notebook saved: checked once it ran to the end
    ctx.review("written answer: learning rate and loss mask", ctx.answers().get("learning-rate-and-mask"),
               hint="Write a few sentences of your own in section 7.")


def check_graded(ctx: Context) -> None:
    """The learner's functions, run in their own process, on cases the notebook never shows."""
    graded = ctx.graded(list(FORBIDDEN), forbidden=FORBIDDEN)
    ctx.criterion("build_sft_example builds TRL's training sequence, loss on the answer only",
                  lambda: check_build_sft_example(graded["build_sft_example"]),
                  hint="input_ids: apply_chat_template on both messages; completion_mask: 0 up to and including "
                       "the assistant header (apply_chat_template with add_generation_prompt=True), 1 after.")
    ctx.criterion("is_correct scores like the course metric on unseen answers",
                  lambda: check_is_correct(graded["is_correct"]),
                  hint="Section 3 states the three rules. Once is_correct is written, this line names the first "
                       "unseen case it scores differently from the course metric.")
    ctx.criterion("sft_config writes the profile's sizes and the changes asked into an SFTConfig",
                  lambda: check_sft_config(graded["sft_config"], ctx.profile),
                  hint="Start from {**profile.train('sft'), **changes}, drop examples_per_task, and pass every "
                       "other entry to SFTConfig under its own name, beside the settings listed in section 4.")


def verify_outputs(ctx: Context) -> None:
    """The criteria about what the notebook saved: metrics, the model, and whether they agree."""
    outputs = ctx.outputs()
    saved = ctx.collect("metrics were saved and are valid numbers", lambda: read_metrics(outputs),
                        hint="Run section 8 (it writes metrics.json) and keep its keys.")
    measured = ctx.collect("the saved model reloads and was fine-tuned",
                           lambda: ctx.measure([outputs / "model"], lambda: reload_and_measure(outputs)),
                           hint="Section 8 saves the model with trainer.save_model; do not move or edit the files.")
    thresholds = THRESHOLDS[ctx.profile.name]  # the checker's own profile: never one a notebook wrote down
    heldout = measured.get("heldout", {})
    ctx.criterion(f"held-out accuracy, recomputed by the checker, reaches {describe_thresholds(thresholds)}",
                  lambda: check_thresholds(heldout, thresholds),
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
    from shared.training.sft import example_difference, trl_tokenized

    tokenizer = _tokenizer()
    examples = hidden.cases(RUNG, "UNSEEN_EXAMPLES", UNSEEN_EXAMPLES)
    references = trl_tokenized(examples, load_model(), tokenizer)
    for example, reference in zip(examples, references):
        built = build_sft_example(dict(example), tokenizer)
        require(isinstance(built, dict) and {"input_ids", "completion_mask"} <= set(built),
                "must return a dict with 'input_ids' and 'completion_mask'")
        difference = example_difference(tokenizer, built, reference)
        require(not difference, f"for prompt {example['prompt'][:30]!r}, {difference}")
    return f"{len(examples)} unseen examples"


def check_is_correct(is_correct) -> str:
    from shared.evaluation.evals import task_metric

    cases = hidden.cases(RUNG, "SCORING_CASES", SCORING_CASES)
    for prediction, reference, task in cases:
        expected = task_metric(task).compute(predictions=[prediction], references=[reference])["accuracy"] == 1.0
        got = is_correct(prediction, reference, task)
        require(isinstance(got, (bool, int)), f"must return True or False, returned {got!r}")
        require(bool(got) == expected, f"is_correct({prediction!r}, {reference!r}, {task!r}) returned {bool(got)}, "
                                       f"expected {expected}")
    return f"{len(cases)} unseen cases"


def expected_config(profile, output_dir: str, changes: dict) -> dict:
    """What the SFTConfig must say, field by field: section 4's list, written out here independently."""
    settings = {**profile.train("sft"), **changes}
    settings.pop("examples_per_task")
    return {**fixed_trainer_settings(profile, output_dir), "completion_only_loss": True,
            "lr_scheduler_type": "cosine", "eval_strategy": "steps", "eval_steps": 0.1, **settings}


def check_sft_config(sft_config, profile) -> str:
    from trl import SFTConfig

    return check_config_cases(sft_config, profile, "sft", hidden.cases(RUNG, "CONFIG_CASES", CONFIG_CASES),
                              expected_config, SFTConfig)


def describe_thresholds(thresholds: dict) -> str:
    return ", ".join(f"{value:.0%} {task.replace('_', ' ')}" for task, value in thresholds.items())


def reload_and_measure(outputs: Path) -> dict:
    """Reload the saved model and compute held-out accuracy with the course's metric."""
    from shared.checking.artefacts import load_saved_model
    from shared.profiles import get_profile

    profile = get_profile(announce=False)
    model, tokenizer = load_saved_model(outputs / "model", profile, hint="run section 8")
    return measure_model(model, tokenizer, profile)


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG))
