"""Rung 03's checker and shared/training/lora.py: the checker passes on the solution, fails on the untouched
exercise, and turns every kind of bad input into a clear ✗ (never a traceback); the LoRA helpers agree with PEFT
and with hand-computed figures."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from types import MappingProxyType

import copy

import nbformat
import pytest
import torch

from rung_harness import RungUnderTest, by_name, edit_json
from shared.training import lora, memory, runs
from shared import checking, plots
from shared.notebooks.graded import extract_functions

RUNG = RungUnderTest("03")
GRADED = ["lora_forward", "count_lora_parameters", "add_lora_adapter", "merge_adapter"]
check03 = RUNG.check
solution_run = RUNG.solution_run_fixture()
judge = RUNG.judge
assert_fails = RUNG.assert_fails


@pytest.fixture(scope="module")
def solution_functions():
    return extract_functions(nbformat.read(RUNG.solution, as_version=4), GRADED)


outputs_copy = RUNG.outputs_copy_fixture()


@pytest.fixture
def outputs(outputs_copy):
    """This rung's folder in a fresh copy of the solution's outputs, to tamper with."""
    return outputs_copy / "03-lora"


# -- the solution and the exercise ---------------------------------------------------------------------
def test_checker_passes_on_the_solution(solution_run):
    report, printed, _ = solution_run
    assert report.passed, printed
    assert all(c.status == checking.PASS for c in report.criteria if "written answer" not in c.name), printed
    assert by_name(report, "written answer").status == checking.REVIEW  # flagged, never auto-passed
    for fragment in ("runs top to bottom", *GRADED, "valid numbers",
                     "LoRA adapter that reloads", "held-out accuracy", "agree", "sweep"):
        assert by_name(report, fragment).status == checking.PASS, printed
    assert "DONE" in printed and "✓" in printed and "⚑" in printed


def test_solution_adapter_comes_close_to_full_fine_tuning(solution_run):
    """What LoRA is for: near full-SFT accuracy from a small fraction of the weights and of the memory."""
    _, _, outputs_root = solution_run
    metrics = json.loads((outputs_root / "03-lora" / "metrics.json").read_text())
    assert all(value <= 0.10 for value in metrics["before"].values()), metrics["before"]
    assert metrics["after"]["closed_qa"] >= 0.90, metrics["after"]
    assert metrics["trainable_parameters"] < 0.10 * metrics["total_parameters"]
    assert metrics["memory_bytes"]["lora"]["total"] < 0.5 * metrics["memory_bytes"]["full"]["total"]
    adapter_bytes = (outputs_root / "03-lora" / "adapter" / "adapter_model.safetensors").stat().st_size
    assert adapter_bytes < 0.15 * metrics["memory_bytes"]["full"]["trainable_weights"]  # the adapter, not a model
    sweep = json.loads((outputs_root / "03-lora" / "sweep.json").read_text())
    assert {run["targets"] for run in sweep} == set(lora.TARGETS)
    # rsLoRA's scale, alpha / sqrt(r) with alpha = 2 sqrt(8), next to alpha = 2r, at ranks 2 and 32
    scales = {(run["r"], run["alpha"] / run["r"]) for run in sweep if run["targets"] == "all-linear"}
    assert {(2, 2.0), (2, 4.0), (8, 2.0), (32, 2.0), (32, 1.0)} <= scales, scales


def test_checker_fails_on_the_untouched_exercise():
    RUNG.assert_exercise_fails(graded=tuple(GRADED),
                               unmet=("valid numbers", "reloads", "held-out accuracy", "agree", "sweep"))


# -- graded functions on hidden cases --------------------------------------------------------------------
def test_hidden_cases_pass_with_the_solution(solution_functions):
    assert "unseen cases" in check03.check_lora_forward(solution_functions["lora_forward"])
    assert "unseen configs" in check03.check_count(solution_functions["count_lora_parameters"])
    assert "unseen models" in check03.check_add_adapter(solution_functions["add_lora_adapter"])
    assert "no LoRA modules" in check03.check_merge(solution_functions["merge_adapter"])


# Plausible mistakes in a hand-written LoRA forward, each made from the solution's by changing what it is given:
# (how to make it, what the checker must say).
WRONG_FORWARDS = {
    "no alpha/r scaling": (
        lambda forward: lambda x, weight, bias, A, B, alpha, r: forward(x, weight, bias, A, B, r, r),
        "differs from PEFT"),
    "alpha/sqrt(r), rsLoRA's scaling, not PEFT's LoRA": (
        lambda forward: lambda x, weight, bias, A, B, alpha, r: forward(x, weight, bias, A, B,
                                                                         alpha * math.sqrt(r), r),
        "differs from PEFT"),
    "bias ignored": (
        lambda forward: lambda x, weight, bias, A, B, alpha, r: forward(x, weight, None, A, B, alpha, r),
        "with bias"),
    "2-d input only": (
        lambda forward: lambda x, weight, bias, A, B, alpha, r: forward(x.reshape(-1, x.shape[-1]), weight, bias,
                                                                         A, B, alpha, r),
        "output shape"),
}


@pytest.mark.parametrize("mistake", WRONG_FORWARDS)
def test_a_wrong_forward_fails(solution_functions, mistake):
    make_wrong, message = WRONG_FORWARDS[mistake]
    assert_fails(lambda: check03.check_lora_forward(make_wrong(solution_functions["lora_forward"])), message)


def test_graded_function_that_raises():
    def broken(*args):
        raise RuntimeError("shapes do not line up")

    assert_fails(lambda: check03.check_lora_forward(broken), "RuntimeError", "shapes do not line up")
    assert_fails(lambda: check03.check_count(broken), "RuntimeError")


def test_count_that_forgets_one_target_type(solution_functions):
    count = solution_functions["count_lora_parameters"]
    assert_fails(lambda: check03.check_count(  # down_proj left out
        lambda config, r, targets: count(config, r, [t for t in targets if t != "down_proj"])), "PEFT counts")


def test_count_that_ignores_grouped_query_attention(solution_functions):
    def as_if_no_gqa(config, r, targets):
        config.num_key_value_heads = config.num_attention_heads
        return solution_functions["count_lora_parameters"](config, r, targets)

    assert_fails(lambda: check03.check_count(as_if_no_gqa), "PEFT counts", "num_key_value_heads")


def test_count_that_is_not_a_number():
    assert_fails(lambda: check03.check_count(lambda config, r, targets: "many"), "must return an int")


# -- add_lora_adapter and merge_adapter --------------------------------------------------------------------
def _adapter(**changes):
    """An add_lora_adapter whose LoraConfig differs from the solution's by `changes` (a value, or a function of r
    and alpha): each one a plausible mistake."""
    def add_lora_adapter(model, r, alpha, target_modules, use_rslora=False):
        from peft import LoraConfig, get_peft_model

        settings = dict(r=r, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=0.0, bias="none",
                        use_rslora=use_rslora, task_type="CAUSAL_LM")
        settings.update({key: value(r, alpha) if callable(value) else value for key, value in changes.items()})
        return get_peft_model(model, LoraConfig(**settings))

    return add_lora_adapter


def test_the_adapter_built_like_the_solution_passes():
    """The mistakes below differ from this one only by what they change."""
    criterion, printed = judge(lambda: check03.check_add_adapter(_adapter()))
    assert criterion.status == checking.PASS, printed


WRONG_ADAPTERS = {
    "trains the output layer too (modules_to_save)": (_adapter(modules_to_save=["lm_head"]),
                                                      ("besides the LoRA matrices", "modules_to_save.default")),
    "trains every bias (bias='all')": (_adapter(bias="all"), ("besides the LoRA matrices", "bias")),
    "DoRA's magnitude vector trains too": (_adapter(use_dora=True), ("besides the LoRA matrices",
                                                                      "lora_magnitude_vector")),
    "alpha passed as r (scale 1)": (_adapter(lora_alpha=lambda r, alpha: r), ("scaled by 1;", "alpha / r = 2")),
    "rsLoRA asked for, alpha / r given": (_adapter(use_rslora=False), ("scaled by 0.6667", "alpha / sqrt(r) = 2")),
    "alpha / sqrt(r) always": (_adapter(use_rslora=True), ("scaled by 4;", "alpha / r = 2")),
    "attention query only": (_adapter(target_modules=["q_proj"]), ("do not train", "k_proj.lora_A")),
    "every linear layer, whatever was asked": (_adapter(target_modules="all-linear"),
                                               ("which were not asked for", "down_proj, gate_proj, o_proj, up_proj",
                                                "here q_proj, k_proj, v_proj")),
    "B not zero at the start": (_adapter(init_lora_weights=False), ("B is not zero",)),
    "dropout on the adapter": (_adapter(lora_dropout=0.1), ("lora_dropout",)),
    "no task type": (_adapter(task_type=None), ("PeftModelForCausalLM",)),
    "the plain model back": (lambda model, r, alpha, targets, use_rslora=False: model, ("must return the PeftModel",)),
}


@pytest.mark.parametrize("mistake", WRONG_ADAPTERS)
def test_a_wrong_adapter_fails(mistake):
    add_lora_adapter, fragments = WRONG_ADAPTERS[mistake]
    assert_fails(lambda: check03.check_add_adapter(add_lora_adapter), *fragments)


def test_an_adapter_that_changes_a_base_weight_fails(solution_functions):
    def add_and_nudge(model, r, alpha, targets, use_rslora=False):
        peft_model = solution_functions["add_lora_adapter"](model, r, alpha, targets, use_rslora=use_rslora)
        with torch.no_grad():
            peft_model.get_input_embeddings().weight[0] += 1.0
        return peft_model

    assert_fails(lambda: check03.check_add_adapter(add_and_nudge), "base weight model.embed_tokens.weight was changed")


WRONG_MERGES = {
    "the PeftModel back, unmerged": (lambda peft_model: peft_model, "returned a PeftModel"),
    "the base model inside, LoRA layers still in it": (lambda peft_model: peft_model.get_base_model(),
                                                       "LoRA layer(s) left"),
    "the base without the adapter (unload, not merge)": (lambda peft_model: peft_model.unload(),
                                                         "the adapter's update was dropped"),
    "a fresh model of the base's shape": (
        lambda peft_model: type(peft_model.get_base_model())(copy.deepcopy(peft_model.config)),
        "logits differ from the adapter model's"),
    "merged by hand without the scale (W + B A)": (lambda peft_model: _merge_without_scale(peft_model),
                                                   "logits differ from the adapter model's"),
}


def _merge_without_scale(peft_model):
    from peft.tuners.lora import LoraLayer

    with torch.no_grad():
        for module in peft_model.modules():
            if isinstance(module, LoraLayer):
                module.get_base_layer().weight += module.lora_B["default"].weight @ module.lora_A["default"].weight
    return peft_model.unload()


@pytest.mark.parametrize("mistake", WRONG_MERGES)
def test_a_wrong_merge_fails(mistake):
    merge_adapter, fragment = WRONG_MERGES[mistake]
    assert_fails(lambda: check03.check_merge(merge_adapter), fragment)


def test_graded_adapter_functions_in_their_own_process():
    """What only the graded functions' own process can tell: a call to the course's lora_config is refused, and
    a model of a class made in the notebook cannot come back to the checker."""
    notebook = RUNG.solution_with(
        add_lora_adapter="""
from shared.training import lora

def add_lora_adapter(model, r, alpha, target_modules, use_rslora=False):
    config = lora.lora_config(r, alpha, list(target_modules))
    config.use_rslora = use_rslora
    return get_peft_model(model, config)
""",
        merge_adapter="""
class MergedModel(LlamaForCausalLM):
    pass

def merge_adapter(peft_model):
    merged = peft_model.merge_and_unload()
    merged.__class__ = MergedModel
    return merged
""")
    report, printed = RUNG.graded_only(notebook)
    adapter = by_name(report, "add_lora_adapter")
    assert adapter.status == checking.FAIL and "is not allowed" in adapter.detail, printed
    assert "shared.training.lora.lora_config" in adapter.detail, adapter.detail
    assert "get_peft_model" in adapter.detail and "merge_and_unload" not in adapter.detail, adapter.detail
    merge = by_name(report, "merge_adapter")
    assert merge.status == checking.FAIL and "not a value the checker can read" in merge.detail, printed
    assert by_name(report, "lora_forward").status == checking.PASS  # the rest of the notebook is untouched
    assert "Traceback" not in printed


# -- the saved adapter ---------------------------------------------------------------------------------
def test_missing_adapter_folder(outputs):
    shutil.rmtree(outputs / "adapter")
    assert_fails(lambda: check03.reload_adapter(outputs), "no saved adapter folder")


def test_corrupt_adapter_weights(outputs):
    (outputs / "adapter" / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    assert_fails(lambda: check03.reload_adapter(outputs), "does not load")


def test_missing_adapter_weights(outputs):
    (outputs / "adapter" / "adapter_model.safetensors").unlink()
    assert_fails(lambda: check03.reload_adapter(outputs), "weights", "missing")


def test_adapter_config_that_is_not_json(outputs):
    (outputs / "adapter" / "adapter_config.json").write_text("{ r: 16")
    assert_fails(lambda: check03.reload_adapter(outputs), "not valid JSON")


def test_adapter_that_names_another_base(outputs):
    edit_json(outputs / "adapter" / "adapter_config.json",
              lambda c: c.update(base_model_name_or_path="HuggingFaceTB/SmolLM2-360M"))
    assert_fails(lambda: check03.reload_adapter(outputs), "trained on", "SmolLM2")


def test_adapter_that_is_not_lora(outputs):
    edit_json(outputs / "adapter" / "adapter_config.json", lambda c: c.update(peft_type="IA3"))
    assert_fails(lambda: check03.reload_adapter(outputs), "not a LoRA adapter")


def _save_adapter(outputs, model, config):
    from peft import get_peft_model

    shutil.rmtree(outputs / "adapter")
    torch.manual_seed(0)
    peft_model = get_peft_model(model, config)
    return peft_model


def test_adapter_trained_on_another_architecture(outputs):
    """Shapes from another model, but the config claims the tiny base: it must not load quietly."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from shared.profiles import get_profile

    other = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                         num_key_value_heads=4, num_hidden_layers=4, vocab_size=900))
    peft_model = _save_adapter(outputs, other, lora.lora_config(16, 32, "all-linear"))
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter)
    peft_model.save_pretrained(outputs / "adapter")
    edit_json(outputs / "adapter" / "adapter_config.json",
              lambda c: c.update(base_model_name_or_path=get_profile(announce=False).base_model))
    criterion = assert_fails(lambda: check03.reload_adapter(outputs))
    assert "does not load" in criterion.detail or "another base model" in criterion.detail


@pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`")
def test_adapter_that_also_saves_full_weights(outputs):
    """modules_to_save trains and stores a full copy of a layer: not a pure LoRA adapter, the base is changed."""
    from shared.models import load_model

    config = lora.lora_config(16, 32, "all-linear")
    config.modules_to_save = ["lm_head"]
    peft_model = _save_adapter(outputs, load_model(), config)
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.01)
    peft_model.save_pretrained(outputs / "adapter")
    assert_fails(lambda: check03.reload_adapter(outputs), "other tensors")


def test_untrained_adapter(outputs):
    from shared.models import load_model

    _save_adapter(outputs, load_model(), lora.lora_config(16, 32, "all-linear")).save_pretrained(outputs / "adapter")
    assert_fails(lambda: check03.reload_adapter(outputs), "every B matrix is zero")


def test_solution_adapter_is_lora_and_leaves_the_base_untouched(outputs):
    measured = check03.reload_adapter(outputs)
    assert measured["config"]["r"] == 16 and measured["config"]["targets"] == sorted(lora.ALL_LINEAR)
    base = dict(measured["model"].get_base_model().named_parameters())
    assert any("lora_A" in name for name in base) and all(not p.requires_grad for n, p in base.items()
                                                         if "lora_" not in n)


# -- saved figures ---------------------------------------------------------------------------------------


def test_hand_edited_accuracy_disagrees_with_the_adapter(outputs):
    edit_json(outputs / "metrics.json",
              lambda m: m["after"].update(closed_qa=0.0 if m["after"]["closed_qa"] > 0.5 else 1.0))
    report, printed = RUNG.verify(outputs.parent)
    agree = by_name(report, "agree")
    assert agree.status == checking.FAIL and "the saved model scores" in agree.detail, printed
    assert by_name(report, "reloads").status == checking.PASS  # only the figures are wrong
    assert by_name(report, "held-out accuracy").status == checking.PASS


@pytest.fixture(scope="module")
def measured(solution_run):
    """The solution adapter reloaded and measured once, for the figure-tampering tests."""
    _, _, outputs_root = solution_run
    from shared.checking.figures import measure_model

    adapter = outputs_root / "03-lora" / "adapter"
    measured = check03.reload_adapter(outputs_root / "03-lora")
    figures = RUNG.measured([adapter], lambda: measure_model(measured["model"], measured["tokenizer"],
                                                               measured["profile"]))
    return {**measured, "accuracy": figures["heldout"], "fresh": figures["fresh"]}


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(trainable_parameters=m["trainable_parameters"] * 2), "trainable parameters"),
    (lambda m: m["memory_bytes"]["lora"].update(total=m["memory_bytes"]["lora"]["total"] // 2), "memory_bytes['lora']"),
    (lambda m: m["memory_bytes"]["full"].update(total=1000), "memory_bytes['full']"),
    (lambda m: m["lora"].update(r=4), "does not describe the saved adapter"),
    (lambda m: m["lora"].update(targets="attention"), "does not describe the saved adapter"),
    (lambda m: m.update(full_sft={"closed_qa": 0.94, "extraction": 0.37, "arithmetic": 0.11}),
     "never type them in"),
], ids=["trainable", "lora-memory", "full-memory", "rank", "targets", "typed-in-full-sft"])
def test_hand_edited_figures(outputs, measured, edit, message):
    saved = edit_json(outputs / "metrics.json", edit)
    assert_fails(lambda: check03.check_figures(saved, measured, outputs), message)


def test_solution_figures_agree(outputs, measured):
    saved = check03.read_lora_metrics(outputs)
    criterion, printed = judge(lambda: check03.check_figures(saved, measured, outputs))
    assert criterion.status == checking.PASS, printed


def test_full_sft_figures_are_rung_02s(outputs, measured):
    """Where rung 02's metrics.json sits beside this rung's outputs, metrics.json must carry exactly its figures."""
    rung_02 = outputs.parent / "02-sft"
    rung_02.mkdir(exist_ok=True)
    (rung_02 / "metrics.json").write_text(json.dumps({"profile": "tiny", "after": {"closed_qa": 0.5}}))
    saved = check03.read_lora_metrics(outputs)
    assert_fails(lambda: check03.check_figures(saved, measured, outputs), "never type them in")
    saved = edit_json(outputs / "metrics.json", lambda m: m.update(full_sft={"closed_qa": 0.5}))
    criterion, printed = judge(lambda: check03.check_figures(saved, measured, outputs))
    assert criterion.status == checking.PASS, printed


def test_nan_metrics(outputs):
    edit_json(outputs / "metrics.json", lambda m: m["after"].update(arithmetic=math.nan))
    assert_fails(lambda: check03.read_lora_metrics(outputs), "not a number between 0 and 1")


def test_metrics_without_memory(outputs):
    edit_json(outputs / "metrics.json", lambda m: m.pop("memory_bytes"))
    assert_fails(lambda: check03.read_lora_metrics(outputs), "memory_bytes")


def test_missing_metrics(outputs):
    (outputs / "metrics.json").unlink()
    assert_fails(lambda: check03.read_lora_metrics(outputs), "was not saved")


# -- the sweep --------------------------------------------------------------------------------------------
def _edit_sweep(outputs, edit):
    path = outputs / "sweep.json"
    runs = json.loads(path.read_text())
    runs = edit(runs) or runs
    path.write_text(json.dumps(runs))


def test_solution_sweep_is_consistent(outputs):
    criterion, printed = judge(lambda: check03.check_sweep(outputs))
    assert criterion.status == checking.PASS, printed


@pytest.mark.parametrize("edit, message", [
    (lambda runs: runs[0]["accuracy"].update(closed_qa=math.nan), "not a fraction per task"),
    (lambda runs: runs[1].update(trainable_parameters=runs[1]["trainable_parameters"] + 1), "PEFT counts"),
    (lambda runs: runs[2].update(memory_bytes=runs[2]["memory_bytes"] * 3), "recomputed"),
    (lambda runs: runs[0].update(mean_accuracy=0.99), "not the mean"),
    (lambda runs: [run for run in runs if run["targets"] == "all-linear"], "both target sets"),
    (lambda runs: runs[:1], "at least 4 runs"),
], ids=["nan", "count", "memory", "mean", "one-target-set", "too-few"])
def test_tampered_sweep(outputs, edit, message):
    _edit_sweep(outputs, edit)
    assert_fails(lambda: check03.check_sweep(outputs), message)


def test_missing_sweep(outputs):
    (outputs / "sweep.json").unlink()
    assert_fails(lambda: check03.check_sweep(outputs), "was not saved")


# -- shared/training/lora.py ----------------------------------------------------------------------------------------
def test_target_modules():
    assert lora.target_modules("attention") == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert lora.target_modules("all-linear") == list(lora.ATTENTION + lora.MLP)
    assert lora.target_modules(("q_proj", "v_proj")) == ["q_proj", "v_proj"]
    with pytest.raises(ValueError, match="unknown target set"):
        lora.target_modules("all_linear")
    with pytest.raises(ValueError, match="at least one"):
        lora.target_modules([])


def test_lora_config():
    config = lora.lora_config(r=4, alpha=12, targets="attention")
    assert config.r == 4 and config.lora_alpha == 12 and config.lora_dropout == 0.0 and config.bias == "none"
    assert set(config.target_modules) == set(lora.ATTENTION) and config.task_type == "CAUSAL_LM"


def test_training_state_bytes_by_hand():
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 5, bias=False).to(torch.float64))
    model[0].requires_grad_(False)
    model.register_buffer("table", torch.zeros(7, dtype=torch.float16))
    parts = memory.training_state_bytes(model)
    assert parts["frozen_weights"] == (10 * 20 + 20) * 4 + 7 * 2
    assert parts["trainable_weights"] == parts["gradients"] == 20 * 5 * 8
    assert parts["optimizer_moments"] == 2 * 20 * 5 * 8
    assert parts["total"] == parts["frozen_weights"] + 4 * 20 * 5 * 8
    assert memory.training_state_bytes(model, moment_bytes=1)["optimizer_moments"] == 2 * 20 * 5


def test_training_state_bytes_of_a_peft_model():
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
                         num_hidden_layers=2, vocab_size=50)
    model = LlamaForCausalLM(config)
    base_bytes = sum(p.numel() * 4 for p in model.parameters()) + sum(b.numel() * b.element_size()
                                                                      for b in model.buffers())
    full = memory.training_state_bytes(model)
    assert full["frozen_weights"] == base_bytes - full["trainable_weights"] == sum(
        b.numel() * b.element_size() for b in model.buffers())
    peft_model = get_peft_model(model, lora.lora_config(4, 8, "attention"))
    parts = memory.training_state_bytes(peft_model)
    adapter = lora.peft_trainable_count(config, 4, "attention")
    assert parts["frozen_weights"] == base_bytes
    assert parts["trainable_weights"] == parts["gradients"] == adapter * 4
    assert parts["total"] == base_bytes + 4 * adapter * 4


def test_training_state_bytes_counts_4bit_weights_with_their_scales():
    """What rung 04 measures: NF4 weights are packed two to a byte, and their block scales count too."""
    import bitsandbytes as bnb

    from shared.models import load_model

    model = load_model(four_bit=True)
    scales = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            state = module.weight.quant_state
            scales += state.absmax.numel() * state.absmax.element_size()  # double quantisation: 8-bit scales ...
            scales += state.state2.absmax.numel() * state.state2.absmax.element_size()  # ... and theirs
    stored = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    parts = memory.training_state_bytes(model)
    assert scales > 0 and parts["frozen_weights"] + parts["trainable_weights"] >= stored + scales
    # one way to count 4-bit memory: training state and the footprint agree to the byte
    assert parts["frozen_weights"] + parts["trainable_weights"] == memory.footprint_bytes(model)
    assert stored + scales < 0.3 * memory.training_state_bytes(load_model())["trainable_weights"]


def test_peft_lora_linear_is_the_lora_formula():
    generator = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(3, 5, generator=generator), torch.randn(3, generator=generator)
    lora_A, lora_B = torch.randn(2, 5, generator=generator), torch.randn(3, 2, generator=generator)
    x = torch.randn(4, 5, generator=generator)
    with torch.no_grad():
        got = lora.peft_lora_linear(weight, lora_A, lora_B, alpha=6, bias=bias)(x)
        plain = lora.peft_lora_linear(weight, lora_A, lora_B, alpha=6)(x)
    assert torch.allclose(got, x @ weight.T + bias + 3.0 * (x @ lora_A.T @ lora_B.T), atol=1e-5)
    assert torch.allclose(plain, got - bias, atol=1e-5)
    with pytest.raises(ValueError, match="shapes do not fit"):
        lora.peft_lora_linear(weight, lora_A.T, lora_B, alpha=6)


def test_peft_trainable_count_by_hand():
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=64, intermediate_size=100, num_attention_heads=8, num_key_value_heads=2,
                         num_hidden_layers=3, vocab_size=30)
    kv = 2 * 64 // 8
    assert lora.peft_trainable_count(config, 4, ["k_proj"]) == 3 * 4 * (64 + kv)
    assert lora.peft_trainable_count(config, 2, ["down_proj", "q_proj"]) == 3 * 2 * ((100 + 64) + (64 + 64))


def test_full_sft_point(tmp_path):
    from shared.profiles import PROFILES

    tiny = PROFILES["tiny"]
    path = tmp_path / "metrics.json"
    assert runs.full_sft_point(tiny, path) is None  # rung 02 not run: nothing is made up
    path.write_text(json.dumps({"profile": "tiny", "after": {"closed_qa": 0.9, "extraction": 0.4}}))
    assert runs.full_sft_point(tiny, path) == {"closed_qa": 0.9, "extraction": 0.4}
    assert runs.full_sft_point(PROFILES["gpu"], path) is None  # another profile's figures do not compare
    path.write_text(json.dumps({"profile": "tiny", "after": {"closed_qa": float("nan")}}))
    assert runs.full_sft_point(tiny, path) is None
    path.write_text("not json")
    assert runs.full_sft_point(tiny, path) is None


def test_full_sft_point_reads_rung_02_outputs(tmp_path, monkeypatch):
    from shared.profiles import PROFILES

    monkeypatch.setenv("FT_OUTPUTS", str(tmp_path))
    assert runs.full_sft_point(PROFILES["tiny"]) is None
    assert not (tmp_path / "02-sft").exists()  # reading makes no empty folder for rung 02
    (tmp_path / "02-sft").mkdir()
    (tmp_path / "02-sft" / "metrics.json").write_text(json.dumps({"profile": "tiny", "after": {"closed_qa": 0.5}}))
    assert runs.full_sft_point(PROFILES["tiny"]) == {"closed_qa": 0.5}


def test_run_sweep_and_plots():
    """Two tiny runs through the real recipe: counts and memory as PEFT and training_state_bytes give them."""
    from shared.models import load_tokenizer
    from shared.profiles import PROFILES

    tiny = PROFILES["tiny"]
    stages = dict(tiny.training)
    stages["lora_sweep"] = MappingProxyType(dict(examples_per_task=4, max_steps=1, eval_examples_per_task=2))
    profile = dataclasses.replace(tiny, training=MappingProxyType(stages))
    configs = [dict(r=2, alpha=4, targets="attention"), dict(r=4, alpha=4, targets="all-linear")]
    results = lora.run_sweep(profile, load_tokenizer(profile=profile), configs)
    from shared.models import load_model

    base_config = load_model(profile=profile).config
    assert [r["name"] for r in results] == ["attention r=2 alpha=4", "all-linear r=4 alpha=4"]
    for run, config in zip(results, configs):
        assert run["trainable_parameters"] == lora.peft_trainable_count(base_config, config["r"], config["targets"])
        assert run["memory_bytes"] == run["memory"]["total"]
        assert run["memory"]["trainable_weights"] == 4 * run["trainable_parameters"]
        assert set(run["accuracy"]) == {"closed_qa", "extraction", "arithmetic"}
        assert run["mean_accuracy"] == pytest.approx(lora.mean_accuracy(run["accuracy"]), abs=1e-4)
        assert run["eval_examples_per_task"] == 2
    figure = plots.lora_sweep(results, {"full": {"trainable_parameters": 3_000_000, "memory_bytes": 50 * 2 ** 20,
                                                "mean_accuracy": 0.5}})
    assert len(figure.axes) == 2 and len(figure.axes[1].collections) == 3
    assert len(plots.training_memory({"a": results[0]["memory"], "b": results[1]["memory"]}).axes[0].patches) == 8
