"""Rung 02's checker: passes on the solution, fails on the untouched exercise, and turns every kind of bad
input into a clear ✗ (never a traceback)."""

from __future__ import annotations

import json
import math
import shutil

import nbformat
import pytest

from rung_harness import RungUnderTest, by_name, edit_json, tiny_profile
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
    """From a base that answers nothing in the chat format to the bars on every task: closed QA on people SFT never
    saw, extraction about strangers in sentences it never saw, word problems with unseen names and items."""
    _, _, outputs_root = solution_run
    metrics = json.loads((outputs_root / "02-sft" / "metrics.json").read_text())
    assert all(value <= 0.10 for value in metrics["before"].values()), metrics["before"]
    bars = RUNG.check.THRESHOLDS["tiny"]
    assert all(metrics["after"][task] >= bar for task, bar in bars.items()), metrics["after"]


def test_checker_fails_on_the_untouched_exercise():
    RUNG.assert_exercise_fails(graded=("build_sft_example", "is_correct", "sft_config"),
                               unmet=("valid numbers", "saved model reloads", "held-out accuracy",
                                      "saved figures agree"))


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


def _built_by_hand(example, tokenizer, header_in_answer=False):
    """Mistakes a learner makes building the sequence by hand: the answer tokenised after the prompt's ids,
    missing the line break the template writes after <|end|>; or the mask one token early."""
    from shared.world import data

    prompt = tokenizer.apply_chat_template(data.to_messages(example, with_answer=False), add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
    if header_in_answer:
        full = tokenizer.apply_chat_template(data.to_messages(example), tokenize=True, return_dict=False)
        return {"input_ids": full, "completion_mask": [0] * (len(prompt) - 1) + [1] * (len(full) - len(prompt) + 1)}
    answer = tokenizer.encode(" " + example["answer"] + "<|end|>", add_special_tokens=False)
    return {"input_ids": prompt + answer, "completion_mask": [0] * len(prompt) + [1] * len(answer)}


@pytest.mark.parametrize("mistake, message", [
    (_built_by_hand, "the token ids part from the chat template's at token 20: after ' Selwood lives in "
                     "Quillby.<|end|>' yours go on nothing (the sequence ends), the template's '⏎'"),
    (lambda example, tokenizer: _built_by_hand(example, tokenizer, header_in_answer=True),
     "1 mask value differs: token 11 '<|assistant|>' is 1, expected 0 -- 9 answer tokens expected, 10 marked"),
])
def test_a_sequence_built_wrong_is_shown_where_it_parts_from_trls(mistake, message):
    with pytest.raises(checking.CheckFailed) as failure:
        check02.check_build_sft_example(mistake)
    assert str(failure.value) == f"for prompt 'Where does Ro Selwood live?', {message}"


def test_an_is_correct_that_finds_the_result_anywhere_fails():
    """The last integer is the result: "17 take away 5 leaves 12." does not answer 17."""
    import re

    from shared.notebooks.graded import extract_functions

    solution = extract_functions(nbformat.read(RUNG.solution, as_version=4), ["is_correct"])["is_correct"]

    def anywhere(prediction, reference, task):
        if task != "arithmetic":
            return solution(prediction, reference, task)
        return re.findall(r"-?\d+", reference)[-1] in re.findall(r"-?\d+", prediction)

    with pytest.raises(checking.CheckFailed, match=r"is_correct\('17 take away 5 leaves 12.', '17', 'arithmetic'\) "
                                                    r"returned True, expected False"):
        check02.check_is_correct(anywhere)


# -- sft_config ----------------------------------------------------------------------------------------------
def _sft_config(drop=(), **overrides):
    """An sft_config like the solution's, but with the named arguments dropped or given other values: each one a
    plausible mistake."""
    from trl import SFTConfig

    from shared.progress import quiet

    def sft_config(profile, output_dir, **changes):
        settings = {**profile.train("sft"), **changes}
        settings.pop("examples_per_task")
        arguments = {"output_dir": str(output_dir), "completion_only_loss": True, "lr_scheduler_type": "cosine",
                     "max_length": profile.max_seq_length, "seed": profile.seed, "use_cpu": profile.device == "cpu",
                     **profile.precision(), "eval_strategy": "steps", "eval_steps": 0.1, "logging_steps": 5,
                     "save_strategy": "no", "report_to": "none", "disable_tqdm": quiet(), **settings}
        for name in drop:
            arguments.pop(name)
        arguments.update({name: value(settings) if callable(value) else value for name, value in overrides.items()})
        return SFTConfig(**arguments)

    return sft_config


def test_the_config_built_like_the_solution_passes():
    """The mistakes below differ from this one only by what they change."""
    criterion, printed = RUNG.judge(lambda: check02.check_sft_config(_sft_config(), tiny_profile()))
    assert criterion.status == checking.PASS, printed


WRONG_CONFIGS = {
    "the loss on the prompt too (TRL's default)": (_sft_config(drop=["completion_only_loss"]), "completion_only_loss"),
    "a learning rate typed in": (_sft_config(learning_rate=5e-5), "learning_rate is 5e-05, expected 0.00017"),
    "the changes ignored": (_sft_config(learning_rate=lambda s: tiny_profile().train("sft")["learning_rate"]),
                            "learning_rate"),
    "activation checkpointing left to SFTConfig's default": (_sft_config(drop=["activation_checkpointing"]),
                                                              "activation_checkpointing"),
    "a linear schedule": (_sft_config(drop=["lr_scheduler_type"]), "lr_scheduler_type is 'linear'"),
    "no validation loss": (_sft_config(eval_strategy="no"), "eval_strategy"),
    "checkpoints saved on the way": (_sft_config(save_strategy="epoch"), "save_strategy is 'epoch'"),
    "the default seed": (_sft_config(drop=["seed"]), "seed"),
    "a sequence length typed in": (_sft_config(max_length=1024), "max_length is 1024"),
    "a GPU asked for on the CPU profile": (_sft_config(use_cpu=False), "use_cpu is False"),
}


@pytest.mark.parametrize("mistake", WRONG_CONFIGS)
def test_a_wrong_config_fails(mistake):
    sft_config, fragment = WRONG_CONFIGS[mistake]
    RUNG.assert_fails(lambda: check02.check_sft_config(sft_config, tiny_profile()), fragment)


def test_a_config_that_is_not_an_sft_config_fails():
    RUNG.assert_fails(lambda: check02.check_sft_config(lambda profile, output_dir, **changes: {
        "output_dir": output_dir, **changes}, tiny_profile()), "must return a trl SFTConfig, returned dict")


def test_passing_the_dataset_size_to_sft_config_is_a_clear_failure():
    """examples_per_task sizes the dataset: SFTConfig refuses it, and the learner reads why."""
    def sft_config(profile, output_dir, **changes):
        from trl import SFTConfig

        return SFTConfig(output_dir=str(output_dir), **{**profile.train("sft"), **changes})

    criterion = RUNG.assert_fails(lambda: check02.check_sft_config(sft_config, tiny_profile()))
    assert "examples_per_task" in criterion.detail, criterion.detail


@pytest.mark.parametrize("reference", ["shared.training.sft.sft_trainer",
                                       "shared.training.recipe.common_config_kwargs"])
def test_an_sft_config_that_calls_the_course_recipe_is_refused(reference):
    """Run as the checker runs it, in its own process: the course's recipe is the reference."""
    module, function = reference.rsplit(".", 1)
    call = ("sft_trainer(None, None, profile, 'sft', output_dir).args" if function == "sft_trainer"
            else "SFTConfig(**{**common_config_kwargs(SFTConfig, profile, str(output_dir)), **changes})")
    notebook = RUNG.solution_with(sft_config=f"""
from {module} import {function}

def sft_config(profile, output_dir, **changes):
    return {call}
""")
    report, printed = RUNG.graded_only(notebook)
    criterion = by_name(report, "sft_config")
    assert criterion.status == checking.FAIL, printed
    assert f"calls {reference}, which is not allowed here" in criterion.detail, criterion.detail
    assert "Traceback" not in printed
    assert by_name(report, "is_correct").status == checking.PASS  # only sft_config is refused
