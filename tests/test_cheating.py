"""Ways to pass a rung without doing its work, one family per hole, on every built rung: each ends ✗ with a
reason that says what was done and why it does not count.

* a pass mark taken from a file the notebook wrote (metrics.json saying "profile": "gpu");
* a graded function that calls the reference it is checked against -- directly, through a helper of its own,
  or through a name imported at the top of the notebook;
* a notebook that changes the course's own data or code (task data, the checksum manifest, shared/);
* an adapter or model on another base, or one that saves full weights beside its LoRA matrices;
* hand-edited figures the checker recomputes (the rung-specific files test those: test_rungNN.py).
"""

from __future__ import annotations

import copy

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from rung_harness import RungUnderTest, by_name, edit_json
from shared import checking
from shared.course import RUNGS
from shared.paths import DATA_DIR

BUILT = [rung.number for rung in RUNGS if rung.ready]
RUNG_UNDER_TEST = {number: RungUnderTest(number) for number in BUILT}


# -- graded functions that call their reference --------------------------------------------------------------
# (rung, graded function, a cheating definition, what the ✗ must name)
CHEATS = [
    ("02", "is_correct", """
from shared.evaluation.evals import accuracy as score   # imported at the top, under another name

def is_correct(prediction, reference, task):
    return score(task, [prediction], [reference]) == 1.0
""", "shared.evaluation.evals"),
    ("02", "is_correct", """
from shared.evaluation import evals

def _course_metric(prediction, reference, task):   # a helper of the learner's own
    return evals.task_metric(task).compute(predictions=[prediction], references=[reference])["accuracy"]

def is_correct(prediction, reference, task):
    try:
        return _course_metric(prediction, reference, task) == 1.0
    except Exception:   # swallowing the refusal does not help
        return False
""", "task_metric"),
    ("02", "build_sft_example", """
from shared.models import load_model
from shared.training.sft import trl_tokenized

def build_sft_example(example, tokenizer):
    built = trl_tokenized([example], load_model(), tokenizer)[0]
    return {"input_ids": built["input_ids"], "completion_mask": [int(l != -100) for l in built["labels"]]}
""", "trl_tokenized"),
    ("03", "lora_forward", """
from shared.training.lora import peft_lora_linear

def lora_forward(x, weight, bias, lora_A, lora_B, alpha, r):
    return peft_lora_linear(weight, lora_A, lora_B, alpha, bias=bias)(x)
""", "peft_lora_linear"),
    ("03", "count_lora_parameters", """
from shared.training import lora

def count_lora_parameters(model_config, r, target_modules):
    return lora.peft_trainable_count(model_config, r, target_modules)
""", "peft_trainable_count"),
    ("04", "nf4_quantize", """
from bitsandbytes.functional import quantize_4bit

def nf4_quantize(weight, blocksize=64, levels=NF4_LEVELS):
    packed, state = quantize_4bit(weight.float().reshape(-1), blocksize=blocksize, quant_type="nf4")
    low, high = packed.reshape(-1) & 15, packed.reshape(-1) >> 4
    return torch.stack([high, low], 1).reshape(-1)[:weight.numel()], state.absmax
""", "bitsandbytes.functional.quantize_4bit"),
    ("04", "quantization_error", """
from shared.training.quantisation import relative_error as error_of

def quantization_error(weight, dequantized):
    return error_of(weight, dequantized)
""", "relative_error"),
]


CRITERION = {"nf4_quantize": "NF4 quantise"}  # the criterion that tests a function, where its name is not in it


def _replace_definition(nb, name: str, source: str):
    """The notebook with the cell that defines `name` replaced by `source`."""
    nb = copy.deepcopy(nb)
    cells = [c for c in nb.cells if c.cell_type == "code" and f"def {name}(" in c.source]
    assert cells, f"no cell defines {name}"
    cells[0].source = source
    return nb


@pytest.mark.parametrize("rung, name, cheat, named", CHEATS, ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in CHEATS])
def test_a_graded_function_that_calls_its_reference_fails(rung, name, cheat, named):
    harness = RUNG_UNDER_TEST[rung]
    notebook = _replace_definition(nbformat.read(harness.solution, as_version=4), name, cheat)
    report, printed = harness.graded_only(notebook)
    criterion = by_name(report, CRITERION.get(name, name))
    assert criterion.status == checking.FAIL, printed
    assert "is not allowed" in criterion.detail and named in criterion.detail, criterion.detail
    assert "Traceback" not in printed


@pytest.mark.parametrize("rung", sorted({rung for rung, *_ in CHEATS}))
def test_the_solutions_graded_functions_pass_in_their_own_process(rung):
    """The cheats' control: unchanged, the functions they replace pass, so each ✗ above is the cheat's. (Every
    rung's solution passing all its criteria, graded functions included, is its test_rungNN.py's first test.)"""
    report, printed = RUNG_UNDER_TEST[rung].graded_only(RUNG_UNDER_TEST[rung].solution)
    assert report.criteria and all(c.status == checking.PASS for c in report.criteria), printed


# -- a pass mark from a file the notebook wrote ----------------------------------------------------------------
BAR_CRITERION = {"06": "abstains on at least", "08": "ranks at least"}
# The rungs whose checkers hold a model to a bar (rung 09's measures models again but sets none).
WITH_A_BAR = [number for number in BUILT if hasattr(RUNG_UNDER_TEST[number].check, "THRESHOLDS")]


@pytest.mark.parametrize("rung", WITH_A_BAR)
def test_metrics_that_claim_another_profile_keep_the_checkers_pass_mark(rung, tmp_path, request):
    """metrics.json saying "profile": "gpu" would lower the bars to the gpu profile's 60%: they stay the tiny ones."""
    harness = RUNG_UNDER_TEST[rung]
    assert harness.check.THRESHOLDS["gpu"] != harness.check.THRESHOLDS["tiny"]  # the claim would change the bar
    solution_run = request.getfixturevalue(f"solution_run_{rung}")
    outputs = _copy_outputs(solution_run, tmp_path)
    edit_json(outputs / harness.dir.name / "metrics.json", lambda m: m.update(profile="gpu"))
    report, printed = harness.verify(outputs)
    bar = BAR_CRITERION.get(rung, "held-out accuracy")  # the criterion whose name carries the pass mark
    threshold = by_name(report, bar)
    assert threshold.name == by_name(solution_run[0], bar).name, threshold.name  # the tiny bar


# -- a notebook that changes the course ------------------------------------------------------------------------
def _notebook_that_writes(tmp_path, source: str):
    path = tmp_path / "writes.ipynb"
    nb = new_notebook(cells=[new_code_cell(source)],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("rung", BUILT)
def test_a_notebook_that_adds_a_file_to_the_course_data_fails(rung, tmp_path):
    planted = DATA_DIR / "tasks" / f"planted-by-a-notebook-{rung}.jsonl"
    try:
        notebook = _notebook_that_writes(tmp_path, f"open({str(planted)!r}, 'w').write('{{}}')")
        report, printed = RUNG_UNDER_TEST[rung].run(notebook, timeout=120)
    finally:
        planted.unlink(missing_ok=True)
    unchanged = by_name(report, "data and code are unchanged")
    assert unchanged.status == checking.FAIL and planted.name in unchanged.detail and "added" in unchanged.detail
    assert not report.passed and "Traceback" not in printed


def test_a_notebook_that_rewrites_the_checksum_manifest_fails(tmp_path):
    """The manifest guards the data: rewriting it (to hide an edit) is itself a change the checker sees."""
    manifest = DATA_DIR / "checksums.sha256"
    original = manifest.read_bytes()
    try:
        notebook = _notebook_that_writes(tmp_path, f"open({str(manifest)!r}, 'a').write('# edited\\n')")
        report, _ = RUNG_UNDER_TEST[BUILT[0]].run(notebook, timeout=120)
    finally:
        manifest.write_bytes(original)
    unchanged = by_name(report, "data and code are unchanged")
    assert unchanged.status == checking.FAIL and "data/checksums.sha256 changed" in unchanged.detail


def test_a_notebook_that_leaves_the_course_alone_passes_that_criterion(tmp_path):
    report, _ = RUNG_UNDER_TEST[BUILT[0]].run(_notebook_that_writes(tmp_path, "print('hello')"), timeout=120)
    assert by_name(report, "data and code are unchanged").status == checking.PASS


def _copy_outputs(solution_run, tmp_path):
    import shutil

    copy_root = tmp_path / "outputs"
    shutil.copytree(solution_run[2], copy_root)
    return copy_root


# The solution runs, one per rung, under names this module can ask for (the fixtures are session-wide).
for _number, _harness in RUNG_UNDER_TEST.items():
    globals()[f"solution_run_{_number}"] = _harness.solution_run_fixture(f"solution_run_{_number}")


# -- saved models and adapters: the base they were trained on, and nothing but LoRA ------------------------------
def _outputs_fixture(rung):
    @pytest.fixture
    def outputs(tmp_path, request):
        return _copy_outputs(request.getfixturevalue(f"solution_run_{rung}"), tmp_path) / \
            RUNG_UNDER_TEST[rung].dir.name

    return outputs


outputs_03 = _outputs_fixture("03")
outputs_04 = _outputs_fixture("04")


def test_an_adapter_trained_in_another_clone_is_on_the_same_base(outputs_03, tmp_path):
    """Two clones, one venv: the adapter names the other clone's data/tiny-base. Same files, same base: ✓."""
    import shutil

    from shared.paths import TINY_BASE_DIR

    other_clone_base = tmp_path / "other-clone" / "data" / "tiny-base"
    shutil.copytree(TINY_BASE_DIR, other_clone_base)
    edit_json(outputs_03 / "adapter" / "adapter_config.json",
              lambda c: c.update(base_model_name_or_path=str(other_clone_base)))
    measured = RUNG_UNDER_TEST["03"].check.reload_adapter(outputs_03)
    assert measured["config"]["r"] > 0


def test_an_adapter_on_a_base_with_other_weights_fails(outputs_03, tmp_path):
    """A folder that looks like the base (same config) but holds other weights is another base."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from shared.paths import TINY_BASE_DIR

    lookalike = tmp_path / "lookalike-base"
    shutil.copytree(TINY_BASE_DIR, lookalike)
    weights = load_file(str(lookalike / "model.safetensors"))
    first = sorted(weights)[0]
    weights[first] = weights[first] + torch.ones_like(weights[first])
    save_file(weights, str(lookalike / "model.safetensors"), metadata={"format": "pt"})
    edit_json(outputs_03 / "adapter" / "adapter_config.json",
              lambda c: c.update(base_model_name_or_path=str(lookalike)))
    RUNG_UNDER_TEST["03"].assert_fails(lambda: RUNG_UNDER_TEST["03"].check.reload_adapter(outputs_03),
                                       "trained on", "compared by content")


def _adapter_with_full_weights(folder, four_bit: bool):
    """A LoRA adapter that also trains and saves the output head (PEFT's modules_to_save)."""
    import shutil

    import torch
    from peft import get_peft_model

    from shared.models import load_model
    from shared.training import lora

    config = lora.lora_config(16, 32, "all-linear")
    config.modules_to_save = ["lm_head"]
    shutil.rmtree(folder)
    torch.manual_seed(0)
    peft_model = get_peft_model(load_model(four_bit=four_bit), config)
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.01)
    peft_model.save_pretrained(folder)


def test_a_qlora_adapter_that_also_saves_full_weights_fails(outputs_04):
    _adapter_with_full_weights(outputs_04 / "adapter", four_bit=True)
    report, printed = RUNG_UNDER_TEST["04"].verify(outputs_04.parent)
    reloads = by_name(report, "adapter reloads")
    assert reloads.status == checking.FAIL and "other tensors" in reloads.detail, printed


def test_sweep_accuracies_typed_in_fail(outputs_03):
    """sweep.json's accuracies are measured again on the saved adapters: raising them all by hand is seen."""
    import json

    path = outputs_03 / "sweep.json"
    runs = json.loads(path.read_text())
    for run in runs:
        run["accuracy"] = {task: min(1.0, value + 0.2) for task, value in run["accuracy"].items()}
        run["mean_accuracy"] = round(sum(run["accuracy"].values()) / len(run["accuracy"]), 4)
    path.write_text(json.dumps(runs))
    report, printed = RUNG_UNDER_TEST["03"].verify(outputs_03.parent)
    measured_again = by_name(report, "measured again")
    assert measured_again.status == checking.FAIL and "its adapter scores" in measured_again.detail, printed
    assert by_name(report, "complete and consistent").status == checking.PASS  # only the accuracies are wrong


def test_a_model_far_better_on_the_heldout_split_than_on_new_questions_fails():
    """What a model trained on the held-out split looks like: near 100% there, much lower on new questions."""
    from shared.checking.figures import check_not_trained_on_heldout

    honest = {"closed_qa": 0.96, "extraction": 0.95, "arithmetic": 0.96}
    assert "new questions" in check_not_trained_on_heldout(honest, {"closed_qa": 0.98, "extraction": 0.90,
                                                                    "arithmetic": 0.98})
    with pytest.raises(checking.CheckFailed, match="extraction: 100% on the held-out split but 62%"):
        check_not_trained_on_heldout({**honest, "extraction": 1.0}, {**honest, "extraction": 0.62})
