"""Checker for rung 04 (QLoRA): `make check RUNG=04 [NOTEBOOK=path]`.

It runs a copy of the notebook, then verifies rather than trusts:
* the learner's `load_in_four_bit(name_or_path, profile)` is called on models the notebook never shows and the
  model it returns is inspected layer by layer (see "How the loader is graded" below);
* the learner's hand-written NF4 (`nf4_quantize`, `nf4_dequantize`) is compared with bitsandbytes' own
  `quantize_4bit` / `dequantize_4bit` on tensors the notebook never shows (other shapes, scales, outliers, a block
  of zeros, a partial last block, another block size) -- a value of 0 must get NF4's zero code, so a division by
  a block's zero absmax fails even where -1 x 0 brings the value back -- and `quantization_error` with the
  course's formula;
* the saved quantisation error and memory figures are recomputed here from the checkpoint and the architecture;
* the base is loaded in NF4 here, the saved adapter is put on it, and the held-out questions are asked again;
* the run's metadata (base, its size, 4-bit or not, the compute dtype, GPUs) is checked against the saved config,
  the adapter and the profile.

How the loader is graded. Like every graded function it runs in a process of its own (shared.checking.sandbox),
and what it returns is pickled back. A 4-bit model survives that: its Linear4bit layers come back as Linear4bit,
each weight with its bitsandbytes QuantState (NF4 or FP4, nested or not, block size, scales), so the model itself
is judged here, not a description of it the learner's code could write. (The weights come back as plain
torch Parameters rather than bitsandbytes' Params4bit; every check below reads the QuantState, never that class.)
Two cases, both loaded on the CPU so the model crosses the process boundary as ordinary tensors on any machine:
the tiny base in float32, and a small Qwen2-shaped model with random weights (another architecture, with biases
and untied embeddings) that this checker writes to a temporary folder and asks for in bfloat16, so a compute
dtype or a dtype that does not follow the profile fails. For each, every linear layer of the decoder blocks must
be a bitsandbytes Linear4bit holding NF4 with double quantisation in blocks of 64 and computing in the profile's
dtype; the embeddings and the output head must stay unquantised, in the profile's dtype; every parameter must be
on the profile's device; and each 4-bit weight, dequantised, must be within NF4's own error of the checkpoint's
(so it is the checkpoint asked for). Placing the model on the GPU (``device_map={"": 0}``) is seen where the gpu
profile trains: run.json must show the trained model on exactly one GPU. The course's own loader
(shared.models.load_model and nf4_config) is the reference, so the loader may not call it (FORBIDDEN).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere, even before `pip install -e`

from shared.checking import CheckFailed, Context, main, read_json, require, sandbox  # noqa: E402
from shared.checking.figures import (FRESH_HINT, check_agreement, check_not_trained_on_heldout,  # noqa: E402
                                     check_thresholds, measure_model, read_metrics)
from shared.checking.artefacts import same_base  # noqa: E402
from shared.checking.guards import Forbidden  # noqa: E402
from shared.numbers import is_finite_number as _finite  # noqa: E402
from shared.paths import TINY_BASE_DIR  # noqa: E402

RUNG = "04"

# Held-out accuracy each task must reach after QLoRA, per profile: the only place these numbers live.
# tiny -- `make bench RUNG=04 SEEDS=0,1,2`: closed QA 98 / 99 / 99%, extraction 93 / 91 / 80%, arithmetic
#         99 / 100 / 99% (4-bit base: 0/0/0; full SFT, rung 02: 98/95/98; LoRA, rung 03: 98/80/99). Closed QA and
#         arithmetic are held to 90%; extraction lower: an adapter copies a stranger's name less surely than a full
#         fine-tune (80-93% over training seeds; see rung 03).
# gpu  -- first estimates. The gpu path was rehearsed on a GPU with random weights of Qwen2.5-7B's shape
#         (bench/gpu_rehearsal.py: every other line passes), which shows memory and the code path, not accuracy.
#         A hub model never read the tiny world, so closed-QA questions about its people cannot be answered (no
#         threshold); extraction and word problems are within a 7B's reach.
THRESHOLDS = {
    "tiny": {"closed_qa": 0.90, "extraction": 0.60, "arithmetic": 0.90},
    "gpu": {"extraction": 0.80, "arithmetic": 0.60},
}
# What the run must have been, per profile: the base's size and how many GPUs held it. A "7B" base counts from
# 6.5B parameters (Llama-2-7B has 6.74B, Qwen2.5-7B 7.62B).
RUN_REQUIREMENTS = {
    "tiny": {"min_base_parameters": 1_000_000, "gpus_used": 0},
    "gpu": {"min_base_parameters": 6_500_000_000, "gpus_used": 1},
}
# The learner's NF4 must give bitsandbytes' values: to 1e-5 of each block's absmax, except that a value lying
# (to rounding) on the midpoint between two levels may go either way -- at most 0.1% of a tensor, one level off.
NF4_TOLERANCE = 1e-5
NEIGHBOUR_SHARE = 0.001
ERROR_TOLERANCE = 0.01  # relative: a saved or computed quantisation error may differ from ours by 1%
MEMORY_TOLERANCE = 0.01  # relative: saved byte counts against the checker's
PREDICTION_TOLERANCE = 0.05  # relative: the 4-bit model against bits_per_parameter's arithmetic
# A 4-bit weight, dequantised, may lose at most this much more of the checkpoint's weight than bitsandbytes' own NF4
# with double quantisation does (relative): loading in bf16 rounds the weights once before they are quantised.
LOADED_ERROR_TOLERANCE = 0.05

# The model of another shape the loader is tried on: Qwen2 (the gpu profile's architecture: biases on q, k and v,
# untied embeddings), small enough to load in a second, random weights from a fixed seed.
UNSEEN_CONFIG = dict(model_type="qwen2", vocab_size=640, hidden_size=128, intermediate_size=336, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                     tie_word_embeddings=False)


def unseen_tensors():
    """(name, tensor, blocksize) cases the notebook never shows. Fixed seed: the same cases every run."""
    import torch

    g = torch.Generator().manual_seed(2305)
    normal = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    outliers = normal(96, 64) * 0.05
    outliers.view(-1)[torch.randint(0, outliers.numel(), (12,), generator=g)] *= 60.0
    zero_block = normal(4, 64)
    zero_block[1] = 0.0
    return [
        ("small weights (std 0.02), 48 x 40", normal(48, 40) * 0.02, 64),
        ("large values (std 3), 36 x 18: the last block is partial", normal(36, 18) * 3.0, 64),
        ("a few outliers 60x the rest, 96 x 64", outliers, 64),
        ("rows on scales from 1e-3 to 10, 64 x 96", normal(64, 96) * torch.logspace(-3, 1, 64)[:, None], 64),
        ("a block of zeros", zero_block, 64),
        ("a vector of 100 values", normal(100), 64),
        ("a 3-d tensor, 4 x 8 x 24", normal(4, 8, 24) * 0.1, 64),
        ("uniform, not normal, values", torch.rand(40, 40, generator=g) * 2 - 1, 64),
        ("blocks of 128", normal(64, 80) * 0.5, 128),
        ("blocks of 32", normal(50, 30), 32),
        ("bfloat16 weights", (normal(32, 64) * 0.02).to(torch.bfloat16), 64),
    ]


def error_cases():
    """(weight, approximation) pairs for quantization_error."""
    import torch

    g = torch.Generator().manual_seed(14314)
    w = torch.randn(30, 50, generator=g)
    return [
        (w, w + 0.01 * torch.randn(30, 50, generator=g)),
        (w, torch.zeros_like(w)),
        (w, w.clone()),
        (w * 1e-3, (w * 1e-3).round(decimals=4)),
        (torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)),
        (w.to(torch.bfloat16), (w + 0.1).to(torch.bfloat16)),
    ]


# The references each graded function is checked against, which it may therefore not call.
_LOADER = Forbidden("the 4-bit loading call is yours to write (BitsAndBytesConfig and from_pretrained); the "
                    "course's loader is what it is checked against",
                    modules=("shared.models",),
                    functions=("shared.training.quantisation.bnb_quantize",
                               "shared.training.quantisation.bnb_quantize_dequantize",
                               "shared.training.quantisation.dequantized_weight"))
_BY_HAND = Forbidden("NF4 is yours to write by hand; bitsandbytes is what it is checked against",
                     modules=("bitsandbytes",),
                     functions=("shared.training.quantisation.bnb_quantize",
                                "shared.training.quantisation.bnb_quantize_dequantize",
                                "shared.training.quantisation.dequantized_weight"))
FORBIDDEN = {
    "load_in_four_bit": _LOADER,
    "nf4_quantize": _BY_HAND, "nf4_dequantize": _BY_HAND,
    "quantization_error": Forbidden("the formula is yours to write; the course's is what it is checked against",
                                    functions=("shared.training.quantisation.relative_error",)),
}


def check(ctx: Context) -> None:
    ctx.run_notebook()
    check_graded(ctx)
    ctx.from_the_run(verify_outputs)  # what the notebook saved: checked once it ran to the end
    ctx.review("written answer: why a 7B model fits a T4", ctx.answers().get("why-it-fits"),
               hint="Write a few sentences of your own in section 7, with your memory arithmetic.")


def check_graded(ctx: Context) -> None:
    """The learner's functions, run in their own process, on tensors the notebook never shows."""
    graded = ctx.graded(list(FORBIDDEN), forbidden=FORBIDDEN)
    ctx.criterion("load_in_four_bit loads unseen models in NF4 + double quantisation, as the profile says",
                  lambda: check_loader(graded["load_in_four_bit"], ctx.profile),
                  hint="Section 1's list names each argument of from_pretrained and of its BitsAndBytesConfig, "
                       "and what it is for: compare yours with it, starting from the one the line above names.")
    ctx.criterion("your NF4 quantise -> dequantise matches bitsandbytes on unseen tensors",
                  lambda: check_nf4(graded["nf4_quantize"], graded["nf4_dequantize"]),
                  hint="Flatten the weight; split it into blocks of `blocksize` values (the last may be shorter); "
                       "divide each block by its own absmax; pick the nearest of the 16 NF4 levels. Dequantise: "
                       "level times the block's absmax. A block of zeros must come back as zeros.")
    ctx.criterion("quantization_error computes ||W - W_hat|| / ||W|| on unseen pairs",
                  lambda: check_error_function(graded["quantization_error"]),
                  hint="Frobenius norms (every element), relative to the original weight; return a float.")


def verify_outputs(ctx: Context) -> None:
    """The criteria about what the notebook saved: figures, run metadata, the adapter, and whether they agree."""
    outputs = ctx.outputs()
    profile = ctx.profile
    saved = ctx.collect("metrics were saved and are valid numbers", lambda: read_qlora_metrics(outputs),
                        hint="Run section 8 (it writes metrics.json) and keep its keys.")
    ctx.criterion("the quantisation error you saved is right (recomputed with bitsandbytes)",
                  lambda: check_saved_error(saved, profile),
                  hint="Save quantization_error of the checkpoint's weight against your NF4 round trip.")
    ctx.criterion("memory figures: 4-bit smaller than full precision by the expected factor (recomputed)",
                  lambda: check_memory(saved, profile),
                  hint="Measure the footprint of the model load_in_four_bit returns before preparing it for "
                       "training; keep the figures the notebook computes.")
    requirements = RUN_REQUIREMENTS[profile.name]
    ctx.criterion(run_criterion_name(requirements), lambda: check_run(outputs, profile, requirements),
                  hint="Section 8 saves run.json from the trained model; train on the 4-bit base the profile names.")
    ctx.criterion("the saved adapter fits the base (its shapes match the base's layers)",
                  lambda: check_adapter_shapes(outputs),
                  hint="Save the adapter with trainer.save_model and base_config.json beside it (section 8).")
    measured = ctx.collect("the adapter reloads on the base loaded in NF4 by the checker, and was trained",
                           lambda: ctx.measure([outputs / "adapter", outputs / "base_config.json"],
                                               lambda: reload_and_measure(outputs, profile)),
                           hint="Section 8 saves the adapter with trainer.save_model; do not move or edit its files.")
    thresholds = THRESHOLDS[profile.name]
    shown = ", ".join(f"{task} {value:.0%}" for task, value in thresholds.items())
    heldout = measured.get("heldout", {})
    ctx.criterion(f"held-out accuracy, recomputed by the checker, reaches {shown}",
                  lambda: check_thresholds(heldout, thresholds),
                  hint="Train with the profile's settings (section 5); if a task lags, read its answers side by "
                       "side (section 6).")
    ctx.criterion("not trained on the held-out split (new questions at check time)",
                  lambda: check_not_trained_on_heldout(heldout, measured.get("fresh", {})), hint=FRESH_HINT)
    ctx.criterion("saved figures agree with the model", lambda: check_agreement(saved, heldout),
                  hint="metrics.json must hold what the notebook measured: no hand edits.")


def run_criterion_name(requirements: dict) -> str:
    size = requirements["min_base_parameters"]
    where = "one GPU" if requirements["gpus_used"] == 1 else "the CPU"
    return f"the run's metadata: a base of >= {size / 1e9:g}B parameters loaded in 4-bit NF4, on {where}" \
        if size >= 1e9 else f"the run's metadata: the base loaded in 4-bit NF4, on {where}"


# -- the graded functions -----------------------------------------------------------------------------------------
def loader_cases(folder: Path, profile) -> list:
    """(description, model folder, profile) the loader is called with: the tiny base in float32, and a model of
    another shape written to `folder`, in bfloat16. Both on the CPU (see the module's docstring)."""
    from dataclasses import replace

    return [("the tiny base in float32", TINY_BASE_DIR, replace(profile, device="cpu", dtype="float32")),
            ("an unseen Qwen2-shaped model in bfloat16", write_unseen_model(folder),
             replace(profile, device="cpu", dtype="bfloat16"))]


def write_unseen_model(folder: Path) -> Path:
    """A small Qwen2 model with random weights (fixed seed), saved in float32 to `folder`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    settings = dict(UNSEEN_CONFIG)
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    with torch.random.fork_rng():  # the checker's own random state is left as it was
        torch.manual_seed(14314)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder)
    return folder


def check_loader(load_in_four_bit, profile) -> str:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="check-04-unseen-") as folder:
        cases = loader_cases(Path(folder), profile)
        details = [check_loaded_model(load_in_four_bit(str(path), case_profile), path, case_profile, name)
                   for name, path, case_profile in cases]
    return (f"{'; '.join(details)}: every one NF4 + double quantisation in blocks of 64, computing in the profile's "
            "dtype, within NF4's error of the checkpoint; embeddings and head unquantised")


def check_loaded_model(model, folder: Path, profile, name: str) -> str:
    """The model a loader returned for the checkpoint in `folder`, against what `profile` asks for."""
    import bitsandbytes as bnb
    import torch

    from shared.training import memory, quantisation

    dtype = profile.torch_dtype
    dtype_name = str(dtype).replace("torch.", "")
    require(isinstance(model, torch.nn.Module) and hasattr(model, "get_output_embeddings"),
            f"{name}: load_in_four_bit returned {type(model).__name__}, not a model (return what "
            "AutoModelForCausalLM.from_pretrained gives)")
    modules = dict(model.named_modules())
    meta = memory.empty_model(folder)  # the checkpoint's architecture: which layers a 4-bit loader quantises
    expected = [layer for layer, module in meta.named_modules()
                if isinstance(module, torch.nn.Linear) and module is not meta.get_output_embeddings()]
    errors, references = [], []
    for layer in expected:
        module = modules.get(layer)
        require(module is not None, f"{name}: the model has no {layer}: is it the checkpoint asked for?")
        require(isinstance(module, bnb.nn.Linear4bit),
                f"{name}: {layer} is a {type(module).__name__}, not a bitsandbytes Linear4bit (pass "
                "quantization_config=BitsAndBytesConfig(load_in_4bit=True, ...))")
        state = getattr(module.weight, "quant_state", None)
        require(state is not None, f"{name}: {layer} holds no 4-bit weights (no quantisation state)")
        require(state.quant_type == "nf4", f"{name}: {layer} holds {state.quant_type!r} weights, not NF4 "
                                           "(bnb_4bit_quant_type='nf4')")
        require(bool(getattr(state, "nested", False)), f"{name}: {layer} keeps one fp32 absmax per block: no double "
                                                       "quantisation (bnb_4bit_use_double_quant=True)")
        require(state.blocksize == quantisation.NF4_BLOCKSIZE,
                f"{name}: {layer} quantises blocks of {state.blocksize}, not {quantisation.NF4_BLOCKSIZE}")
        require(module.compute_dtype == dtype,
                f"{name}: {layer} computes in {str(module.compute_dtype).replace('torch.', '')}; the profile says "
                f"{dtype_name} (bnb_4bit_compute_dtype=profile.torch_dtype)")
        original = quantisation.checkpoint_weight(folder, f"{layer}.weight")
        require(tuple(state.shape) == tuple(original.shape),
                f"{name}: {layer} holds a {tuple(state.shape)} weight; the checkpoint asked for has "
                f"{tuple(original.shape)}: load name_or_path")
        errors.append(quantisation.relative_error(original, quantisation.dequantized_weight(model, f"{layer}.weight")))
        references.append(quantisation.relative_error(
            original, quantisation.bnb_quantize_dequantize(original, double_quant=True)))
    for part, module in (("embedding", model.get_input_embeddings()), ("output head", model.get_output_embeddings())):
        require(not isinstance(module, bnb.nn.Linear4bit) and getattr(module.weight, "quant_state", None) is None,
                f"{name}: the {part} is quantised; only the decoder blocks' linear layers should be")
    wrong_dtype = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()
                          if getattr(p, "quant_state", None) is None and p.dtype != dtype})
    require(not wrong_dtype, f"{name}: the weights outside the 4-bit layers are {', '.join(wrong_dtype)}; the profile "
                             f"says {dtype_name} (dtype=profile.torch_dtype)")
    devices = sorted({str(p.device) for p in model.parameters()})
    require({p.device.type for p in model.parameters()} == {profile.device},
            f"{name}: the model is on {', '.join(devices)}; the profile says {profile.device} (device_map)")
    worst = max(range(len(errors)), key=lambda i: errors[i] - references[i])
    require(errors[worst] <= references[worst] * (1 + LOADED_ERROR_TOLERANCE) + 1e-6,
            f"{name}: {expected[worst]} dequantised differs from the checkpoint's weight by {errors[worst]:.1%}; NF4 "
            f"loses {references[worst]:.1%} of it: is it the checkpoint asked for?")
    return f"{name}, {len(expected)} linear layers"


ZERO_CODE = 7  # the index of NF4's level 0.0: where every value of 0 goes


def check_nf4(nf4_quantize, nf4_dequantize) -> str:
    import torch

    from shared.training import quantisation

    cases = unseen_tensors()
    for name, tensor, blocksize in cases:
        reference = quantisation.bnb_quantize_dequantize(tensor, blocksize)
        _, ref_absmax = quantisation.bnb_quantize(tensor, blocksize)
        n_blocks = math.ceil(tensor.numel() / blocksize)
        try:
            codes, absmax = nf4_quantize(tensor.clone(), blocksize)
            values = nf4_dequantize(codes, absmax, tensor.shape, blocksize)
        except sandbox.GradedError as error:  # name the case: the learner never saw this tensor
            raise CheckFailed(f"{name} ({tensor.numel()} values, {n_blocks} blocks of {blocksize}): {error}") from None
        require(torch.is_tensor(codes) and not codes.is_floating_point() and codes.numel() == tensor.numel(),
                f"{name}: codes must be an integer tensor with one code per value ({tensor.numel()}), got "
                f"{type(codes).__name__} {getattr(codes, 'dtype', '')} of {getattr(codes, 'numel', lambda: '?')()}")
        require(int(codes.min()) >= 0 and int(codes.max()) <= 15, f"{name}: codes must be 0..15 (4 bits), got "
                                                                   f"{int(codes.min())}..{int(codes.max())}")
        zero_codes = codes.reshape(-1)[tensor.reshape(-1).float() == 0].long()
        wrong_zeros = zero_codes[zero_codes != ZERO_CODE].tolist()
        require(not wrong_zeros,
                f"{name}: {len(wrong_zeros)} values of 0 got a code other than {ZERO_CODE} (NF4's level 0.0), e.g. "
                f"{(wrong_zeros or [''])[0]}: a block of zeros has absmax 0, and 0 / 0 is NaN, which has no nearest "
                f"level -- do not divide by it")
        require(torch.is_tensor(absmax) and absmax.numel() == n_blocks,
                f"{name}: one absmax per block expected ({n_blocks} blocks of {blocksize}), got "
                f"{getattr(absmax, 'numel', lambda: '?')()}")
        require(torch.is_tensor(values) and tuple(values.shape) == tuple(tensor.shape),
                f"{name}: nf4_dequantize must return a tensor of shape {tuple(tensor.shape)}, got "
                f"{tuple(getattr(values, 'shape', ()))}")
        values = values.detach().float().cpu()
        require(bool(torch.isfinite(values).all()), f"{name}: the dequantised values hold NaN or inf "
                                                    "(a block of zeros has absmax 0: do not divide by it)")
        scale = ref_absmax.repeat_interleave(blocksize)[:tensor.numel()].reshape(tensor.shape)
        off = (values - reference).abs()
        close = off <= NF4_TOLERANCE * scale + 1e-12
        neighbours = off <= 0.3 * scale  # adjacent NF4 levels are at most 0.28 x absmax apart
        wrong = int((~close).sum())
        allowed = int(NEIGHBOUR_SHARE * tensor.numel())
        if wrong > allowed or not bool(neighbours.all()):
            worst = int(off.argmax())
            raise CheckFailed(f"{name} (blocks of {blocksize}): {wrong} of {tensor.numel()} values differ from "
                              f"bitsandbytes' (at most {allowed} may); e.g. value {tensor.reshape(-1)[worst]:.4g} "
                              f"came back as {values.reshape(-1)[worst]:.4g}, bitsandbytes gives "
                              f"{reference.reshape(-1)[worst]:.4g}")
    return f"{len(cases)} unseen tensors, within {NF4_TOLERANCE:g} x block absmax"


def check_error_function(quantization_error) -> str:
    from shared.training import quantisation

    for weight, approx in error_cases():
        expected = quantisation.relative_error(weight, approx)
        got = quantization_error(weight.clone(), approx.clone())
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise CheckFailed(f"must return a number, returned {got!r}") from None
        require(math.isfinite(got) and abs(got - expected) <= ERROR_TOLERANCE * expected + 1e-7,
                f"for a {tuple(weight.shape)} {str(weight.dtype).replace('torch.', '')} weight: returned {got:.6g}, "
                f"expected {expected:.6g}")
    return f"{len(error_cases())} unseen pairs"


# -- what the notebook saved ---------------------------------------------------------------------------------------
def read_qlora_metrics(outputs: Path) -> dict:
    metrics = read_metrics(outputs)
    quantization, memory = metrics.get("quantization"), metrics.get("memory")
    require(isinstance(quantization, dict) and isinstance(memory, dict),
            "metrics.json needs 'quantization' and 'memory' sections")
    for key in ("relative_error",):
        value = quantization.get(key)
        require(_finite(value) and value >= 0, f"metrics.json quantization[{key!r}] is {value!r}, not a number")
    for key in ("full_precision_bytes", "four_bit_bytes"):
        value = memory.get(key)
        require(_finite(value) and value > 0, f"metrics.json memory[{key!r}] is {value!r}, not a positive number")
    return metrics


def check_saved_error(saved: dict, profile) -> str:
    from shared.training import quantisation

    require(bool(saved), "needs the saved figures (see above)")
    quantization = saved["quantization"]
    name = quantization.get("weight")
    require(isinstance(name, str) and name, "metrics.json quantization has no 'weight' (the tensor's name)")
    try:
        weight = quantisation.checkpoint_weight(profile.qlora_model, name)
    except Exception as error:
        raise CheckFailed(f"cannot read {name!r} from {profile.qlora_model}: {error}") from error
    require(weight.dim() == 2, f"{name} is not a weight matrix (shape {tuple(weight.shape)})")
    expected = quantisation.relative_error(weight, quantisation.bnb_quantize_dequantize(weight))
    value = quantization["relative_error"]
    require(abs(value - expected) <= ERROR_TOLERANCE * expected,
            f"metrics.json says NF4 loses {value:.4%} of {name}; bitsandbytes' NF4 loses {expected:.4%}")
    return f"{name}: {expected:.2%} relative error"


def check_memory(saved: dict, profile) -> str:
    """Full precision counted from the architecture; 4-bit measured on the base loaded here in NF4."""
    from shared.training import memory
    from shared.models import load_model

    require(bool(saved), "needs the saved figures (see above)")
    claimed = saved["memory"]
    full = sum(memory.full_precision_breakdown(profile.qlora_model, profile.torch_dtype).values())
    try:
        base = load_model(profile.qlora_model, profile, four_bit=True)
    except Exception as error:
        raise CheckFailed(f"the base does not load in 4-bit ({type(error).__name__}: {str(error)[:200]})") from error
    four_bit = memory.footprint_bytes(base)
    predicted = memory.predicted_four_bit_bytes(profile.qlora_model, profile.torch_dtype)
    require(abs(claimed["full_precision_bytes"] - full) <= MEMORY_TOLERANCE * full,
            f"metrics.json says {claimed['full_precision_bytes'] / 1e6:,.2f} MB in full precision; the architecture "
            f"holds {full / 1e6:,.2f} MB")
    require(abs(claimed["four_bit_bytes"] - four_bit) <= MEMORY_TOLERANCE * four_bit,
            f"metrics.json says {claimed['four_bit_bytes'] / 1e6:,.2f} MB in 4-bit; the base loaded in NF4 holds "
            f"{four_bit / 1e6:,.2f} MB (measure it before prepare_model_for_kbit_training casts weights to fp32)")
    require(abs(four_bit - predicted) <= PREDICTION_TOLERANCE * predicted,
            f"the 4-bit base holds {four_bit / 1e6:,.2f} MB, but NF4 linear layers should give "
            f"{predicted / 1e6:,.2f} MB")
    ratio, expected = full / four_bit, full / predicted
    return (f"{full / 1e6:,.1f} MB -> {four_bit / 1e6:,.1f} MB in 4-bit: {ratio:.2f}x smaller "
            f"(expected {expected:.2f}x from the architecture)")


def check_run(outputs: Path, profile, requirements: dict) -> str:
    """The run's metadata, against what the saved config says the base is and what the profile asks for."""
    from shared.training import memory

    run = read_json(outputs / "run.json", "the run's metadata")
    config = read_json(outputs / "base_config.json", "the base's config")
    require(isinstance(run, dict) and isinstance(config, dict), "run.json and base_config.json must be JSON objects")
    require(same_base(run.get("base_model"), profile.qlora_model),
            f"run.json's base is {run.get('base_model')!r}; the {profile.name} profile's QLoRA base is "
            f"{profile.qlora_model!r}")
    require(run.get("loaded_in_4bit") is True, "run.json says the base was not loaded in 4-bit")
    require(run.get("quant_type") == "nf4", f"run.json says the weights were {run.get('quant_type')!r}, not NF4")
    compute = str(profile.torch_dtype).removeprefix("torch.")
    require(run.get("compute_dtype") == compute,
            f"run.json says the 4-bit layers computed in {run.get('compute_dtype')}; the {profile.name} profile "
            f"says {compute} here (bnb_4bit_compute_dtype=profile.torch_dtype)")
    try:
        counted = memory.parameters_from_config(config)
    except Exception as error:
        raise CheckFailed(f"base_config.json does not describe a model ({type(error).__name__}: {error})") from error
    stated = run.get("base_parameters")
    require(_finite(stated) and abs(stated - counted) <= 0.001 * counted,
            f"run.json says the base has {stated!r} parameters; its config gives {counted:,}")
    require(counted >= requirements["min_base_parameters"],
            f"the base has {counted / 1e9:.2f}B parameters; at least {requirements['min_base_parameters'] / 1e9:g}B "
            "expected")
    require(run.get("hidden_size") == config.get("hidden_size"),
            f"run.json's hidden size {run.get('hidden_size')!r} is not the config's {config.get('hidden_size')!r}")
    gpus = run.get("gpus_used")
    require(gpus == requirements["gpus_used"],
            f"run.json says the model was on {gpus!r} GPU(s); {requirements['gpus_used']} expected")
    require(_finite(run.get("train_seconds")) and run["train_seconds"] > 0, "run.json has no training time")
    detail = f"{counted / 1e9:.2f}B parameters" if counted >= 1e9 else f"{counted / 1e6:.1f}M parameters"
    detail += f", {run['quant_type']}, compute {run.get('compute_dtype')}, trained in {run['train_seconds']:.0f} s"
    if requirements["gpus_used"]:
        peak = run.get("peak_gpu_memory_bytes")
        require(_finite(peak) and peak > 0, "run.json has no peak GPU memory")
        # The figure is the notebook's own measurement; it cannot be below what the 4-bit base alone holds.
        weights = memory.predicted_four_bit_bytes(config, profile.torch_dtype)
        require(peak >= 0.9 * weights, f"run.json says training peaked at {peak / 1e9:.2f} GB, less than the "
                                       f"{weights / 1e9:.2f} GB the base's 4-bit weights alone hold")
        detail += f", on {run.get('gpu_name')} peaking at {peak / 1e9:.1f} GB"
    return detail


def check_adapter_shapes(outputs: Path) -> str:
    from shared.checking import artefacts

    config = read_json(outputs / "base_config.json", "the base's config")
    folder = outputs / "adapter"
    require((folder / "adapter_config.json").exists(), f"no saved adapter ({folder.name}/adapter_config.json)")
    try:
        shapes = artefacts.adapter_tensors(folder)
    except Exception as error:  # a missing or corrupt file raises several kinds
        raise CheckFailed(f"the adapter's weights do not read ({type(error).__name__}: {str(error)[:200]})") from error
    try:
        problems = artefacts.adapter_shape_problems(shapes, config)
    except Exception as error:
        raise CheckFailed(f"base_config.json does not describe a model ({type(error).__name__}: {error})") from error
    require(not problems, f"{len(problems)} problem(s), e.g. {problems[0]}" if problems else "")
    layers = {key.split(".lora_")[0] for key in shapes if ".lora_" in key}
    ranks = {shape[0] for key, shape in shapes.items() if ".lora_A." in key}
    ranks_shown = ", ".join(map(str, sorted(ranks)))
    return f"{len(layers)} adapted layers, rank {ranks_shown}, hidden size {config['hidden_size']}"


def reload_and_measure(outputs: Path, profile) -> dict:
    """Put the saved adapter on the base loaded in NF4 here; compute held-out accuracy with the course's metric."""
    from shared.checking.artefacts import load_saved_adapter
    from shared.models import load_tokenizer
    from shared.training import quantisation

    folder = outputs / "adapter"
    require((folder / "adapter_config.json").exists(), f"no saved adapter ({folder.name}/): run section 8")
    model = load_saved_adapter(folder, profile, profile.qlora_model, four_bit=True)["model"]
    tokenizer = load_tokenizer(folder if (folder / "tokenizer_config.json").exists() else profile.qlora_model,
                               profile)
    quantisation.keep_training_layout(model)  # the layout the notebook trained and evaluated with: the same kernels
    require("Linear4bit" in {type(m).__name__ for m in model.modules()},
            "the base did not load in 4-bit (no Linear4bit layers)")
    config = read_json(outputs / "base_config.json", "the base's config")
    base_config = model.get_base_model().config
    require(config.get("hidden_size") == base_config.hidden_size,
            f"base_config.json's hidden size {config.get('hidden_size')} is not the base's {base_config.hidden_size}")
    return measure_model(model, tokenizer, profile)


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG))
