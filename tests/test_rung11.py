"""Rung 11's checker: passes on the solution, fails on the untouched exercise, and turns every kind of bad
input and every cheat it knows into a clear ✗ (never a traceback)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import yaml

from rung_harness import RungUnderTest, by_name, edit_json
from shared import checking

RUNG = RungUnderTest("11")
check11 = RUNG.check
solution_run = RUNG.solution_run_fixture()
outputs_copy = RUNG.outputs_copy_fixture()
FOLDER = "11-ecosystem"


def metrics_of(outputs_root):
    return json.loads((outputs_root / FOLDER / "metrics.json").read_text())


SOLUTION = RUNG.solution_functions()


def test_checker_passes_on_the_solution(solution_run):
    report, printed, _ = solution_run
    assert report.passed, printed
    assert all(c.status == checking.PASS for c in report.criteria if "written answer" not in c.name), printed
    assert by_name(report, "which tool").status == checking.REVIEW   # flagged, never auto-passed


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_lessons_claims_hold_in_the_solutions_run(solution_run):
    """What the lesson says, from the solution's own run: TRL's command line gives its Python API's weights bit
    for bit; every run learns the tasks the base model cannot do; one process and two give the same losses; the
    7B sharding figures are the table's."""
    outputs = solution_run[2] / FOLDER
    metrics = metrics_of(solution_run[2])
    runs = metrics["runs"]
    assert max(metrics["base"].values()) <= 0.05, metrics["base"]
    assert _sha(outputs / runs["trl-cli"]["model"] / "model.safetensors") == \
        _sha(outputs / runs["trl-python"]["model"] / "model.safetensors")
    for name, run in runs.items():
        assert sum(run["accuracy"].values()) / 3 >= 0.7, (name, run["accuracy"])
        assert run["seconds"] > 0 and run["peak_mb"] > 100, run
    losses = metrics["ddp"]["one"]["losses"], metrics["ddp"]["two"]["losses"]
    assert max(abs(a - b) for a, b in zip(*losses)) <= 1e-5 and losses[0][0] - losses[0][-1] > 1.0, losses
    totals = {stage: round(sum(sizes.values()), 2) for stage, sizes in metrics["sharding_7b_8_gpus_gb"].items()}
    assert totals == {"stage 0": 112.0, "stage 1": 38.5, "stage 2": 26.25, "stage 3": 14.0}, totals


def test_checker_fails_on_the_untouched_exercise():
    RUNG.assert_exercise_fails(graded=("trl_cli_config", "axolotl_config", "llamafactory_config", "memory_per_gpu"),
                               unmet=("every run were saved", "every saved config", "reloads", "each reach",
                                      "saved figures agree", "one process and two", "five tool choices"))


# -- what the run saved ----------------------------------------------------------------------------------
_verify_fails = RUNG.assert_verify_fails


def _edit(outputs, change, criterion_fragment, *fragments):
    edit_json(outputs / FOLDER / "metrics.json", change)
    return _verify_fails(outputs, criterion_fragment, *fragments)


def test_wrong_tool_choices_are_named_with_the_reason(outputs_copy):
    _edit(outputs_copy, lambda m: m["tool_for"].update({"3": "Axolotl"}), "five tool choices",
          "1 of 5 not as the key has them", "3: you chose 'Axolotl'", "single-GPU LoRA")


@pytest.mark.parametrize("change,criterion,fragment", [
    (lambda m: m["runs"]["trl-cli"]["accuracy"].update(arithmetic=0.99), "saved figures agree",
     "TRL (command line) answers"),
    (lambda m: m["runs"]["trl-cli"].update(seconds=None), "saved figures agree", "seconds is None"),
    (lambda m: m["ddp"]["two"]["losses"].__setitem__(3, m["ddp"]["two"]["losses"][3] + 0.2), "one process and two",
     "differ by up to 0.2"),
    (lambda m: m["ddp"]["two"].update(processes=1), "one process and two", "expected 1 and 2"),
    (lambda m: m["ddp"]["two"].update(per_process_batch=8), "one process and two", "share the global batch"),
    (lambda m: m["recipe"].update(learning_rate=0.1), "every saved config", "learning_rate 0.1"),
    (lambda m: m.update(end_of_turn="</s>"), "every saved config", "not the chat template's"),
    (lambda m: m["runs"]["trl-cli"].update(config_lines=3), "every saved config", "lines of config"),
])
def test_hand_edited_figures_fail(outputs_copy, change, criterion, fragment):
    _edit(outputs_copy, change, criterion, fragment)


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["runs"]["trl-cli"].update(model="../02-sft/model"), "outside this rung's outputs"),
    (lambda m: m["runs"].update(unsloth={"model": "runs/unsloth/model"}), "runs this rung does not make"),
    (lambda m: m["runs"].pop("trl-python"), "TRL's Python API's among them"),
    (lambda m: m["runs"].update(axolotl=dict(m["runs"]["trl-python"])),
     "the same weights saved as two runs: Axolotl and TRL (Python API)"),
    (lambda m: [m["runs"].pop(name, None) for name in ("trl-cli", "axolotl", "llamafactory")],
     "no run from a config"),
])
def test_a_broken_or_borrowed_run_fails_clearly(outputs_copy, change, fragment):
    report = _edit(outputs_copy, change, "every run were saved", fragment)
    assert by_name(report, "reloads").status == checking.FAIL


def test_the_python_apis_model_copied_in_as_the_command_lines_is_refused(outputs_copy):
    """TRL's command line and its Python API give the same weights: a copy is told apart by the trainer
    arguments the command line's trainer saved with its model (its own output folder)."""
    runs = outputs_copy / FOLDER / "runs"
    shutil.rmtree(runs / "trl-cli" / "model")
    shutil.copytree(runs / "trl-python" / "model", runs / "trl-cli" / "model")
    _verify_fails(outputs_copy, "every run were saved", "not saved by a trainer writing to its own folder")


def test_a_config_edited_after_the_run_fails(outputs_copy):
    path = outputs_copy / FOLDER / "runs" / "trl-cli" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["learning_rate"] = 0.01
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    _verify_fails(outputs_copy, "every saved config", "TRL (command line), config.yaml: learning_rate is 0.01")


def test_training_data_that_is_not_the_courses_fails(outputs_copy):
    path = outputs_copy / FOLDER / "data" / "conversations" / "train.jsonl"
    path.write_text(path.read_text().replace("Fenwick", "Fenwic"))
    _verify_fails(outputs_copy, "every saved config", "not the course's training set")


def test_a_missing_model_fails_without_a_traceback(outputs_copy):
    shutil.rmtree(outputs_copy / FOLDER / "runs" / "trl-cli" / "model")
    _verify_fails(outputs_copy, "every run were saved", "is not there")


def test_missing_metrics_fail_without_a_traceback(outputs_copy):
    (outputs_copy / FOLDER / "metrics.json").unlink()
    _verify_fails(outputs_copy, "every run were saved", "metrics was not saved")


# -- the graded functions, on the checker's hidden cases -------------------------------------------------------
def test_the_hidden_cases_pass_the_solution():
    assert "3 recipes" in check11.check_config_function(SOLUTION["trl_cli_config"], check11.expected_trl_cli)
    assert "3 recipes" in check11.check_config_function(SOLUTION["axolotl_config"], check11.expected_axolotl,
                                                        with_end_of_turn=True)
    assert "3 recipes" in check11.check_config_function(SOLUTION["llamafactory_config"],
                                                        check11.expected_llamafactory)
    assert "stage 4 and no GPUs refused" in check11.check_memory(SOLUTION["memory_per_gpu"])


def _changed(name, change):
    """The solution's `name` with one mistake: `change(config, recipe)` edits what it returns."""
    def function(recipe, *args):
        config = SOLUTION[name](recipe, *args)
        change(config, recipe)
        return config
    return function


def _pop(key):
    return lambda config, recipe: config.pop(key)


def _set(key, value):
    return lambda config, recipe: config.__setitem__(key, value(recipe) if callable(value) else value)


CONFIG_MISTAKES = {
    "TRL: no completion_only_loss": ("trl_cli_config", _pop("completion_only_loss"), "completion_only_loss"),
    "TRL: the seed left out": ("trl_cli_config", _pop("seed"), "no 'seed'"),
    "TRL: a Path, not a string": ("trl_cli_config",
                                  lambda config, recipe: config.__setitem__("output_dir", __import__("pathlib").Path(
                                      config["output_dir"])), "YAML cannot write it"),
    "Axolotl: no eot_tokens": ("axolotl_config", _pop("eot_tokens"), "never learns to stop"),
    "Axolotl: the tokenizer's EOS as the turn's end": ("axolotl_config", _set("eot_tokens", ["</s>"]), "eot_tokens"),
    "Axolotl: warm-up as steps": ("axolotl_config",
                                  lambda config, recipe: config.__setitem__("warmup_steps", config.pop("warmup_ratio")),
                                  "warmup_ratio"),
    "Axolotl: the prompt trained": ("axolotl_config", _set("train_on_inputs", True), "train_on_inputs"),
    "Axolotl: the global batch as the micro batch": (
        "axolotl_config", _set("micro_batch_size", lambda r: r["per_device_train_batch_size"] *
                               r["gradient_accumulation_steps"]), "micro_batch_size"),
    "LLaMA-Factory: checkpointing the wrong way round": (
        "llamafactory_config", _set("disable_gradient_checkpointing", lambda r: r["activation_checkpointing"]),
        "checkpoints unless told not to"),
    "LLaMA-Factory: LoRA, not a full fine-tune": ("llamafactory_config", _set("finetuning_type", "lora"),
                                                  "finetuning_type"),
    "LLaMA-Factory: max_length under TRL's name": (
        "llamafactory_config", lambda config, recipe: config.__setitem__("max_length", config.pop("cutoff_len")),
        "no 'cutoff_len'"),
}


@pytest.mark.parametrize("mistake", CONFIG_MISTAKES)
def test_config_mistakes_fail_with_the_key_named(mistake):
    name, change, fragment = CONFIG_MISTAKES[mistake]
    expected = {"trl_cli_config": check11.expected_trl_cli, "axolotl_config": check11.expected_axolotl,
                "llamafactory_config": check11.expected_llamafactory}[name]
    RUNG.assert_fails(lambda: check11.check_config_function(_changed(name, change), expected,
                                                            with_end_of_turn=name == "axolotl_config"), fragment)


def _memory(weights_stage, gradients_stage, optimizer_stage, refuse=True):
    def memory_per_gpu(parameters, gpus, stage):
        if refuse and (stage not in (0, 1, 2, 3) or gpus < 1):
            raise ValueError("no")
        return {"weights": 2 * parameters / (gpus if stage >= weights_stage else 1),
                "gradients": 2 * parameters / (gpus if stage >= gradients_stage else 1),
                "optimizer": 12 * parameters / (gpus if stage >= optimizer_stage else 1)}
    return memory_per_gpu


MEMORY_MISTAKES = {
    "stage 2 splits the weights": (_memory(2, 2, 1), "weights"),
    "stage 1 splits the gradients": (_memory(3, 1, 1), "gradients"),
    "the optimiser state never split": (_memory(3, 2, 9), "optimizer"),
    "Adam's state as 8 bytes": (lambda p, g, s: {**_memory(3, 2, 1)(p, g, s),
                                                 "optimizer": 8 * p / (g if s >= 1 else 1)}, "12 of optimiser"),
    "stage 4 accepted": (_memory(3, 2, 1, refuse=False), "raise ValueError"),
    "GB, not bytes": (lambda p, g, s: {k: v / 1e9 for k, v in _memory(3, 2, 1)(p, g, s).items()}, "bytes"),
}


@pytest.mark.parametrize("mistake", MEMORY_MISTAKES)
def test_memory_mistakes_fail(mistake):
    function, fragment = MEMORY_MISTAKES[mistake]
    RUNG.assert_fails(lambda: check11.check_memory(function), fragment)


def test_functions_that_call_the_checker_are_refused():
    """The checker's own expectations are what a config is compared with: a function that loads check.py and
    calls them is refused."""
    body = ("import importlib.util\n\n\n"
            "def trl_cli_config(recipe, base_model, data, output_dir):\n"
            f"    spec = importlib.util.spec_from_file_location('c', {str(RUNG.dir / 'check.py')!r})\n"
            "    module = importlib.util.module_from_spec(spec)\n"
            "    spec.loader.exec_module(module)\n"
            "    return module.expected_trl_cli(recipe, base_model, data, output_dir)\n")
    report, printed = RUNG.graded_only(RUNG.solution_with(trl_cli_config=body))
    criterion = by_name(report, "trl_cli_config")
    assert criterion.status == checking.FAIL and "which is not allowed here" in criterion.detail, criterion.detail
    assert "Traceback" not in printed
