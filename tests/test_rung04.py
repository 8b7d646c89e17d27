"""Rung 04's checker and shared/training/quantisation.py and memory.py: the checker passes on the solution, fails on
the untouched exercise, and turns every kind of bad input into a clear ✗ (never a traceback): loaders that are not
the NF4 recipe or call the course's own, hand NF4s that get it wrong, tampered outputs; the gpu-profile criteria are
fed fabricated runs (a 7B base passes; a 1B base, two GPUs, or a base not in 4-bit fail)."""

from __future__ import annotations

import json
import math
import shutil
from types import SimpleNamespace

import nbformat
import pytest
import torch

from rung_harness import RungUnderTest, by_name, edit_json
from shared.checking import artefacts, guards
from shared.training import memory, quantisation, runs
from shared import checking
from shared.paths import TINY_BASE_DIR
from shared.profiles import PROFILES

RUNG = RungUnderTest("04")
check04 = RUNG.check
solution_run = RUNG.solution_run_fixture()
outputs_copy = RUNG.outputs_copy_fixture()
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def solution_functions():
    from shared.notebooks.graded import extract_functions

    return extract_functions(nbformat.read(RUNG.solution, as_version=4),
                             ["load_in_four_bit", "nf4_quantize", "nf4_dequantize", "quantization_error"])


# -- the whole checker on the solution and on the exercise ------------------------------------------------------
def test_checker_passes_on_the_solution(solution_run):
    report, printed, _ = solution_run
    assert report.passed, printed
    assert all(c.status == checking.PASS for c in report.criteria if "written answer" not in c.name), printed
    assert by_name(report, "written answer").status == checking.REVIEW  # flagged, never auto-passed
    assert "DONE" in printed and "✓" in printed and "⚑" in printed


def test_solution_reaches_the_thresholds_from_a_base_that_cannot_answer(solution_run):
    _, _, outputs_root = solution_run
    metrics = json.loads((outputs_root / "04-qlora" / "metrics.json").read_text())
    assert all(value <= 0.10 for value in metrics["before"].values()), metrics["before"]
    assert metrics["after"]["closed_qa"] >= 0.90, metrics["after"]
    for task, threshold in check04.THRESHOLDS["tiny"].items():
        assert metrics["after"][task] >= threshold, (task, metrics["after"])
    run = json.loads((outputs_root / "04-qlora" / "run.json").read_text())
    assert run["loaded_in_4bit"] and run["quant_type"] == "nf4" and run["double_quant"]
    assert run["compute_dtype"] == "float32" and run["four_bit_layers"] == 7 * 4  # the learner's loader, as the course's
    assert run["gpus_used"] == 0 and run["peak_gpu_memory_bytes"] is None


def test_checker_fails_on_the_untouched_exercise():
    RUNG.assert_exercise_fails(graded=("load_in_four_bit", "matches bitsandbytes", "quantization_error"),
                               unmet=("valid numbers", "adapter reloads", "held-out accuracy", "run's metadata"))


# -- tampering with what the solution saved -------------------------------------------------------------------
def test_missing_adapter(outputs_copy):
    shutil.rmtree(outputs_copy / "04-qlora" / "adapter")
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "adapter reloads").status == checking.FAIL and "no saved adapter" in printed
    assert by_name(report, "adapter fits").status == checking.FAIL
    assert not report.passed and "Traceback" not in printed


def test_corrupt_adapter(outputs_copy):
    (outputs_copy / "04-qlora" / "adapter" / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "adapter reloads").status == checking.FAIL and "does not load" in printed
    assert by_name(report, "adapter fits").status == checking.FAIL and "do not read" in printed
    assert not report.passed and "Traceback" not in printed


def test_metadata_saying_the_base_was_not_4bit(outputs_copy):
    edit_json(outputs_copy / "04-qlora" / "run.json", lambda run: run.update(loaded_in_4bit=False))
    report, printed = RUNG.verify(outputs_copy)
    criterion = by_name(report, "run's metadata")
    assert criterion.status == checking.FAIL and "not loaded in 4-bit" in criterion.detail
    assert not report.passed


def test_missing_run_metadata(outputs_copy):
    (outputs_copy / "04-qlora" / "run.json").unlink()
    report, _ = RUNG.verify(outputs_copy)
    assert by_name(report, "run's metadata").status == checking.FAIL and not report.passed


def test_nan_metrics(outputs_copy):
    edit_json(outputs_copy / "04-qlora" / "metrics.json", lambda m: m["after"].update(arithmetic=math.nan))
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "valid numbers").status == checking.FAIL and "not a number between 0 and 1" in printed
    assert not report.passed


def test_nan_quantisation_error(outputs_copy):
    edit_json(outputs_copy / "04-qlora" / "metrics.json",
               lambda m: m["quantization"].update(relative_error=math.nan))
    report, _ = RUNG.verify(outputs_copy)
    assert by_name(report, "valid numbers").status == checking.FAIL and not report.passed


def test_hand_edited_accuracy_disagrees_with_the_model(outputs_copy):
    def flip(metrics):
        metrics["after"]["closed_qa"] = 1.0 if metrics["after"]["closed_qa"] < 0.5 else 0.0

    edit_json(outputs_copy / "04-qlora" / "metrics.json", flip)
    report, _ = RUNG.verify(outputs_copy)
    agree = by_name(report, "agree")
    assert agree.status == checking.FAIL and "the saved model scores" in agree.detail


def test_hand_edited_quantisation_error(outputs_copy):
    edit_json(outputs_copy / "04-qlora" / "metrics.json",
               lambda m: m["quantization"].update(relative_error=m["quantization"]["relative_error"] / 2))
    report, _ = RUNG.verify(outputs_copy)
    criterion = by_name(report, "quantisation error you saved")
    assert criterion.status == checking.FAIL and "bitsandbytes' NF4 loses" in criterion.detail


def test_hand_edited_memory_figures(outputs_copy):
    edit_json(outputs_copy / "04-qlora" / "metrics.json",
               lambda m: m["memory"].update(four_bit_bytes=m["memory"]["four_bit_bytes"] // 8))
    report, _ = RUNG.verify(outputs_copy)
    criterion = by_name(report, "memory figures")
    assert criterion.status == checking.FAIL and "in 4-bit" in criterion.detail


def test_solution_outputs_pass_on_their_own(outputs_copy):
    report, printed = RUNG.verify(outputs_copy)
    assert report.passed, printed


# -- load_in_four_bit: the model it returns, inspected layer by layer ------------------------------------------
TINY = PROFILES["tiny"]
NF4 = dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)


def a_loader(quantization: dict | None = NF4, dtype=None, checkpoint=None):
    """A learner's load_in_four_bit: `quantization` the BitsAndBytesConfig settings besides the compute dtype (None:
    no quantization_config), `dtype` a dtype fixed whatever the profile says, `checkpoint` a model loaded whatever
    name_or_path says."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    def load_in_four_bit(name_or_path, profile):
        chosen = dtype or profile.torch_dtype
        kwargs = {"dtype": chosen, "device_map": {"": "cpu"}}
        if quantization is not None:
            kwargs["quantization_config"] = BitsAndBytesConfig(bnb_4bit_compute_dtype=chosen, **quantization)
        return AutoModelForCausalLM.from_pretrained(str(checkpoint or name_or_path), **kwargs)

    return load_in_four_bit


def test_the_solutions_loader_passes_on_unseen_models():
    detail = check04.check_loader(solution_functions()["load_in_four_bit"], TINY)
    assert "the tiny base in float32, 28 linear layers" in detail, detail
    assert "an unseen Qwen2-shaped model in bfloat16, 14 linear layers" in detail, detail


@pytest.mark.parametrize("loader, fragment", [
    (a_loader({**NF4, "bnb_4bit_quant_type": "fp4"}), "holds 'fp4' weights, not NF4 (bnb_4bit_quant_type='nf4')"),
    (a_loader({**NF4, "bnb_4bit_use_double_quant": False}), "no double quantisation (bnb_4bit_use_double_quant=True)"),
    (a_loader(None), "model.layers.0.self_attn.q_proj is a Linear, not a bitsandbytes Linear4bit"),
    (a_loader(dtype=torch.float32), "computes in float32; the profile says bfloat16"),
    (a_loader({**NF4, "llm_int8_skip_modules": []}), "the output head is quantised"),
    (a_loader(checkpoint=TINY_BASE_DIR), "holds a (256, 256) weight; the checkpoint asked for has (128, 128)"),
], ids=["fp4", "no-double-quantisation", "full-precision", "fp32-whatever-the-profile", "head-quantised",
        "always-the-tiny-base"])
def test_a_loader_that_is_not_the_recipe_fails(loader, fragment):
    RUNG.assert_fails(lambda: check04.check_loader(loader, TINY), fragment)


def test_a_loader_that_calls_the_courses_loader_fails():
    """Run as the checker runs it, in its own process: load_model is the reference, so calling it is refused."""
    notebook = RUNG.solution_with(load_in_four_bit="""
from shared.models import load_model as course_loader   # imported under another name

def load_in_four_bit(name_or_path, profile):
    return course_loader(name_or_path, profile, four_bit=True)
""")
    report, printed = RUNG.graded_only(notebook)
    criterion = by_name(report, "load_in_four_bit")
    assert criterion.status == checking.FAIL, printed
    assert "calls shared.models.load_model, which is not allowed here" in criterion.detail, criterion.detail
    assert "Traceback" not in printed
    assert by_name(report, "matches bitsandbytes").status == checking.PASS  # only the loader is refused


def test_the_courses_nf4_config_is_refused_too():
    from shared.models import nf4_config
    from transformers import AutoModelForCausalLM

    def load_in_four_bit(name_or_path, profile):
        return AutoModelForCausalLM.from_pretrained(name_or_path, quantization_config=nf4_config(profile.torch_dtype))

    with pytest.raises(guards.ForbiddenCall, match="calls shared.models.nf4_config, which is not allowed here"):
        guards.call_watched(load_in_four_bit, (str(TINY_BASE_DIR), TINY), {}, check04.FORBIDDEN["load_in_four_bit"])


# -- the graded functions, and hand NF4s that get it wrong ---------------------------------------------------
def test_solution_functions_pass_the_hidden_cases():
    functions = solution_functions()
    assert check04.check_nf4(functions["nf4_quantize"], functions["nf4_dequantize"]).endswith("block absmax")
    assert check04.check_error_function(functions["quantization_error"]).endswith("unseen pairs")


def test_a_uniform_grid_is_not_nf4():
    functions = solution_functions()
    uniform = quantisation.uniform_levels()
    with pytest.raises(checking.CheckFailed, match="differ from bitsandbytes"):
        check04.check_nf4(lambda w, blocksize=64: functions["nf4_quantize"](w, blocksize, uniform),
                          lambda c, a, shape, blocksize=64: functions["nf4_dequantize"](c, a, shape, blocksize,
                                                                                         uniform))


def test_forgetting_the_per_block_absmax_fails():
    functions = solution_functions()

    def one_scale(weight, blocksize=64):  # the whole tensor's absmax, copied to every block
        codes, absmax = functions["nf4_quantize"](weight, weight.numel())
        return codes, absmax.repeat(math.ceil(weight.numel() / blocksize))

    with pytest.raises(checking.CheckFailed, match="differ from bitsandbytes"):
        check04.check_nf4(one_scale, functions["nf4_dequantize"])


def test_nan_from_a_block_of_zeros_fails():
    functions = solution_functions()

    def divides_by_the_values(codes, absmax, shape, blocksize=64):  # 0 / 0 where a block is all zeros
        values = functions["nf4_dequantize"](codes, absmax, shape, blocksize)
        return values / (values != 0)

    with pytest.raises(checking.CheckFailed, match="block of zeros"):
        check04.check_nf4(functions["nf4_quantize"], divides_by_the_values)


def test_dividing_by_a_zero_absmax_fails_though_the_values_come_back_zero():
    """No guard: a block of zeros scales to NaN, argmin picks code 0 (level -1), and -1 x 0 is zero again -- the
    values pass, the codes do not."""
    levels = quantisation.bitsandbytes_nf4_levels()

    def unguarded(weight, blocksize=64):
        flat = weight.detach().float().reshape(-1)
        blocks = torch.nn.functional.pad(flat, (0, -flat.numel() % blocksize)).view(-1, blocksize)
        absmax = blocks.abs().amax(dim=1)
        scaled = (blocks / absmax[:, None]).reshape(-1)[:flat.numel()]
        return (scaled[:, None] - levels).abs().argmin(dim=1).to(torch.uint8), absmax

    with pytest.raises(checking.CheckFailed, match=r"a block of zeros: 64 values of 0 got a code other than 7 "
                                                    r".*do not divide by it"):
        check04.check_nf4(unguarded, solution_functions()["nf4_dequantize"])


def test_a_crash_names_the_unseen_case_it_crashed_on():
    """The learner never saw the tensor: the failure says which one, as a wrong answer's does."""
    functions = solution_functions()

    def whole_blocks_only(weight, blocksize=64):  # a crash as the learner's process reports it
        if weight.numel() % blocksize:
            raise checking.sandbox.GradedError(f"RuntimeError: shape '[-1, {blocksize}]' is invalid for input of "
                                               f"size {weight.numel()} (line 6 of its cell)")
        return functions["nf4_quantize"](weight, blocksize)

    with pytest.raises(checking.CheckFailed, match=r"^large values \(std 3\), 36 x 18: the last block is partial "
                                                    r"\(648 values, 11 blocks of 64\): RuntimeError: shape"):
        check04.check_nf4(whole_blocks_only, functions["nf4_dequantize"])


def test_a_wrong_error_formula_fails():
    with pytest.raises(checking.CheckFailed, match="expected"):  # mean absolute error, not the relative norm
        check04.check_error_function(lambda w, d: float((w.float() - d.float()).abs().mean()))


def test_graded_function_that_raises_is_a_clear_failure():
    def broken(weight, blocksize=64):
        raise IndexError("index 16 is out of bounds")

    criterion, printed = RUNG.judge(lambda: check04.check_nf4(broken, solution_functions()["nf4_dequantize"]))
    assert criterion.status == checking.FAIL
    assert "✗ criterion under test -- IndexError: index 16 is out of bounds" in printed


# -- gpu-profile criteria, fed fabricated runs ------------------------------------------------------------------
QWEN25_7B = memory.QWEN25_7B
LLAMA_1B = dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192,
                rms_norm_eps=1e-5, tie_word_embeddings=True)
GPU = PROFILES["gpu"]
COMPUTE = str(GPU.torch_dtype).removeprefix("torch.")   # what a 4-bit layer computes in under it, on this machine


def _fake_adapter(folder, config, layers=(0, 1), r=2, hidden_size=None):
    """A saved PEFT adapter for `config` (two layers, rank 2: small enough for a test)."""
    from safetensors.torch import save_file

    model = memory.empty_model(config)
    modules = dict(model.named_modules())
    tensors = {}
    for layer in layers:
        for name in TARGETS:
            part = "self_attn" if name in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            module = modules[f"model.layers.{layer}.{part}.{name}"]
            inputs = hidden_size if hidden_size and module.in_features == config["hidden_size"] else \
                module.in_features
            key = f"base_model.model.model.layers.{layer}.{part}.{name}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(r, inputs, dtype=torch.bfloat16)
            tensors[f"{key}.lora_B.weight"] = torch.randn(module.out_features, r, dtype=torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": r, "lora_alpha": 2 * r,
                                                            "target_modules": TARGETS}))


def _fake_gpu_run(tmp_path, config=QWEN25_7B, **changes):
    outputs = tmp_path / "04-qlora"
    outputs.mkdir(parents=True)
    parameters = memory.parameters_from_config(config)
    run = {"profile": "gpu", "base_model": GPU.qlora_model, "base_parameters": parameters,
           "hidden_size": config["hidden_size"], "loaded_in_4bit": True, "quant_type": "nf4", "double_quant": True,
           "blocksize": 64, "compute_dtype": COMPUTE, "four_bit_layers": 7 * config["num_hidden_layers"],
           "device": "cuda", "gpus_used": 1, "gpu_name": "Tesla T4", "peak_gpu_memory_bytes": 10_400_000_000,
           "train_seconds": 1500.0, "trainable_parameters": 40_370_176}
    run.update(changes)
    (outputs / "run.json").write_text(json.dumps(run))
    (outputs / "base_config.json").write_text(json.dumps(config))
    _fake_adapter(outputs / "adapter", config)
    return outputs


GPU_NEEDS = check04.RUN_REQUIREMENTS["gpu"]


def test_a_compute_dtype_the_profile_does_not_ask_for_fails(tmp_path):
    other = "bfloat16" if COMPUTE != "bfloat16" else "float16"
    with pytest.raises(checking.CheckFailed, match=f"computed in {other}; the gpu profile says {COMPUTE} here"):
        check04.check_run(_fake_gpu_run(tmp_path, compute_dtype=other), GPU, GPU_NEEDS)


def test_a_7b_base_in_4bit_on_one_gpu_passes(tmp_path):
    outputs = _fake_gpu_run(tmp_path)
    detail = check04.check_run(outputs, GPU, GPU_NEEDS)
    assert "7.62B parameters" in detail and "Tesla T4" in detail and "10.4 GB" in detail
    assert "14 adapted layers" in check04.check_adapter_shapes(outputs)
    assert ">= 6.5B" in check04.run_criterion_name(GPU_NEEDS) and "one GPU" in check04.run_criterion_name(GPU_NEEDS)


def test_a_1b_base_fails(tmp_path):
    outputs = _fake_gpu_run(tmp_path, config=LLAMA_1B)
    with pytest.raises(checking.CheckFailed, match=r"1\.24B parameters; at least 6\.5B"):
        check04.check_run(outputs, GPU, GPU_NEEDS)


def test_two_gpus_fail(tmp_path):
    with pytest.raises(checking.CheckFailed, match="on 2 GPU"):
        check04.check_run(_fake_gpu_run(tmp_path, gpus_used=2), GPU, GPU_NEEDS)


def test_a_base_not_in_4bit_fails(tmp_path):
    with pytest.raises(checking.CheckFailed, match="not loaded in 4-bit"):
        check04.check_run(_fake_gpu_run(tmp_path, loaded_in_4bit=False), GPU, GPU_NEEDS)
    with pytest.raises(checking.CheckFailed, match="not NF4"):
        check04.check_run(_fake_gpu_run(tmp_path / "fp4", quant_type="fp4"), GPU, GPU_NEEDS)


def test_a_parameter_count_the_config_does_not_give_fails(tmp_path):
    outputs = _fake_gpu_run(tmp_path, config=LLAMA_1B, base_parameters=7_615_616_512)
    with pytest.raises(checking.CheckFailed, match="its config gives"):
        check04.check_run(outputs, GPU, GPU_NEEDS)


def test_another_base_or_no_peak_memory_fails(tmp_path):
    with pytest.raises(checking.CheckFailed, match="QLoRA base"):
        check04.check_run(_fake_gpu_run(tmp_path, base_model="someone/other-7b"), GPU, GPU_NEEDS)
    with pytest.raises(checking.CheckFailed, match="peak GPU memory"):
        check04.check_run(_fake_gpu_run(tmp_path / "b", peak_gpu_memory_bytes=None), GPU, GPU_NEEDS)


def test_a_peak_below_what_the_4bit_weights_hold_fails(tmp_path):
    """run.json's peak memory is the notebook's own figure: it cannot be less than the 4-bit base alone."""
    with pytest.raises(checking.CheckFailed, match="less than the .* GB the base's 4-bit weights alone hold"):
        check04.check_run(_fake_gpu_run(tmp_path, peak_gpu_memory_bytes=2_000_000_000), GPU, GPU_NEEDS)


def test_an_adapter_for_another_hidden_size_fails(tmp_path):
    outputs = _fake_gpu_run(tmp_path)
    shutil.rmtree(outputs / "adapter")
    _fake_adapter(outputs / "adapter", QWEN25_7B, hidden_size=4096)  # a Llama-2-7B-sized adapter
    with pytest.raises(checking.CheckFailed, match="4096 features, but .* has 3584 input features"):
        check04.check_adapter_shapes(outputs)


# -- shared/training/quantisation.py and memory.py ------------------------------------------------------------------------------------------
def test_nf4_levels_are_normal_quantiles_and_bitsandbytes_table():
    levels = quantisation.nf4_levels_from_normal()
    assert levels.shape == (16,) and levels[0] == -1 and levels[-1] == 1 and (levels == 0).sum() == 1
    assert torch.allclose(levels, quantisation.bitsandbytes_nf4_levels(), atol=1e-6)
    assert bool((levels.diff() > 0).all())
    assert torch.equal(quantisation.uniform_levels(), torch.linspace(-1, 1, 16))


@pytest.mark.parametrize("shape", [(64, 96), (3, 32), (4, 8, 24), (101,), (256, 256)])
def test_bnb_reference_agrees_with_its_own_codes_and_scales(shape):
    """The reference must place every block's scale right, also where blocks straddle rows (64 x 96)."""
    weight = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    codes, absmax = quantisation.bnb_quantize(weight)
    levels = quantisation.bitsandbytes_nf4_levels()
    rebuilt = levels[codes.long()] * absmax.repeat_interleave(64)[:weight.numel()]
    assert torch.allclose(quantisation.bnb_quantize_dequantize(weight).reshape(-1), rebuilt, atol=1e-6)
    assert quantisation.relative_error(weight, rebuilt) < 0.12


def test_double_quantisation_changes_the_values_only_a_little():
    weight = torch.randn(128, 64, generator=torch.Generator().manual_seed(1))
    single, double = quantisation.bnb_quantize_dequantize(weight), quantisation.bnb_quantize_dequantize(weight, double_quant=True)
    assert not torch.equal(single, double)
    assert abs(quantisation.relative_error(weight, double) - quantisation.relative_error(weight, single)) < 0.005


def test_relative_error_and_bits_per_parameter():
    w = torch.ones(4, 4)
    assert quantisation.relative_error(w, w) == 0 and quantisation.relative_error(w, torch.zeros(4, 4)) == 1
    assert quantisation.relative_error(w, 1.5 * w) == pytest.approx(0.5)
    assert quantisation.bits_per_parameter(double_quant=False) == 4.5
    assert quantisation.bits_per_parameter() == pytest.approx(4 + 8 / 64 + 32 / (64 * 256))


def test_block_scaled_values_lie_in_minus_one_to_one():
    weight = torch.randn(10, 70) * 5
    scaled = quantisation.block_scaled(weight)
    assert scaled.shape == (700,) and float(scaled.abs().max()) == 1.0
    assert torch.equal(quantisation.block_scaled(torch.zeros(64)), torch.zeros(64))


def test_checkpoint_weight_reads_one_tensor():
    from shared.models import load_model

    weight = quantisation.checkpoint_weight(TINY_BASE_DIR, "model.layers.0.self_attn.v_proj.weight")
    model = load_model()
    assert torch.equal(weight, model.get_parameter("model.layers.0.self_attn.v_proj.weight").detach())
    with pytest.raises(quantisation.CheckpointError, match="no tensor"):
        quantisation.checkpoint_weight(TINY_BASE_DIR, "model.layers.99.nothing.weight")


@pytest.fixture(scope="module")
def tiny_models():
    from shared.models import load_model

    return load_model(), quantisation.keep_training_layout(load_model(four_bit=True))


def test_footprints_full_precision_counted_equals_loaded_and_4bit_is_as_predicted(tiny_models):
    full, four_bit = tiny_models
    counted = memory.full_precision_breakdown(TINY_BASE_DIR, torch.float32)
    assert sum(counted.values()) == memory.footprint_bytes(full)
    measured = memory.footprint_breakdown(four_bit)
    predicted = memory.predicted_four_bit_bytes(TINY_BASE_DIR, torch.float32)
    assert measured[memory.QUANTISED] == counted[memory.LINEAR] // 8  # two 4-bit codes per byte
    assert 0 < measured[memory.CONSTANTS] < measured[memory.QUANTISED] / 10
    assert abs(sum(measured.values()) - predicted) <= 0.05 * predicted
    assert sum(counted.values()) / sum(measured.values()) > 4


def test_parameter_counts_and_quantisation_read_from_the_model(tiny_models):
    full, four_bit = tiny_models
    assert memory.base_parameter_count(four_bit) == memory.base_parameter_count(full)
    assert memory.base_parameter_count(full) == memory.parameters_from_config(json.loads(
        (TINY_BASE_DIR / "config.json").read_text()))
    assert runs.quantisation_of(full)["loaded_in_4bit"] is False
    q = runs.quantisation_of(four_bit)
    assert q["loaded_in_4bit"] and q["quant_type"] == "nf4" and q["double_quant"] and q["blocksize"] == 64
    assert q["four_bit_layers"] == 7 * 4 and q["compute_dtype"] == "float32"
    assert all(m.support_avx512bf16_for_cpu is False for m in four_bit.modules()
               if hasattr(m, "support_avx512bf16_for_cpu"))


def test_dequantized_weight_is_the_double_quantised_reference(tiny_models):
    _, four_bit = tiny_models
    name = "model.layers.1.mlp.down_proj.weight"
    original = quantisation.checkpoint_weight(TINY_BASE_DIR, name)
    assert torch.allclose(quantisation.dequantized_weight(four_bit, name),
                          quantisation.bnb_quantize_dequantize(original, double_quant=True), atol=1e-6)
    with pytest.raises(ValueError, match="not a 4-bit weight"):
        quantisation.dequantized_weight(four_bit, "model.norm.weight")


def test_run_metadata_on_the_cpu(tiny_models):
    _, four_bit = tiny_models
    profile = PROFILES["tiny"]
    lora = SimpleNamespace(r=16, lora_alpha=32, target_modules={"q_proj", "v_proj"})
    run = runs.run_metadata(four_bit, profile, profile.qlora_model, 12.34, memory.peak_gpu_memory_bytes(), lora)
    assert run["base_parameters"] == memory.base_parameter_count(four_bit) and run["hidden_size"] == 256
    assert run["loaded_in_4bit"] and run["quant_type"] == "nf4" and run["device"] == "cpu"
    assert run["gpus_used"] == 0 and run["gpu_name"] is None and run["peak_gpu_memory_bytes"] is None
    assert run["train_seconds"] == 12.3 and run["lora"] == {"r": 16, "alpha": 32, "target_modules": ["q_proj",
                                                                                                      "v_proj"]}
    assert set(run["versions"]) >= {"torch", "peft", "bitsandbytes"}
    json.dumps(run)  # everything in it is plain JSON


def test_parameters_from_config_counts_a_7b_model_without_weights():
    assert memory.parameters_from_config(QWEN25_7B) == 7_615_616_512  # Qwen2.5-7B's published size
    assert round(memory.parameters_from_config(LLAMA_1B) / 1e9, 2) == 1.24


def test_adapter_shape_problems(tmp_path):
    _fake_adapter(tmp_path / "good", LLAMA_1B)
    assert artefacts.adapter_shape_problems(artefacts.adapter_tensors(tmp_path / "good"), LLAMA_1B) == []
    _fake_adapter(tmp_path / "bad", LLAMA_1B, hidden_size=3584)
    problems = artefacts.adapter_shape_problems(artefacts.adapter_tensors(tmp_path / "bad"), LLAMA_1B)
    assert len(problems) == 2 * 6  # every lora_A reading the hidden state, in two layers
    assert artefacts.adapter_shape_problems({}, LLAMA_1B) == ["the adapter holds no LoRA matrices"]
    mismatched = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": (4, 2048),
                  "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": (2048, 8)}
    assert any("disagree on the rank" in p for p in artefacts.adapter_shape_problems(mismatched, LLAMA_1B))


def test_earlier_runs_reads_without_creating(tmp_path):
    (tmp_path / "02-sft").mkdir()
    (tmp_path / "02-sft" / "metrics.json").write_text(json.dumps({"after": {"closed_qa": 0.9}}))
    found = runs.earlier_runs(tmp_path)
    assert found == {"02-sft": {"after": {"closed_qa": 0.9}}, "03-lora": None}
    assert not (tmp_path / "03-lora").exists()
