"""4-bit quantisation in numbers: the NF4 levels, bitsandbytes' own NF4 (the reference a hand-written version is
checked against), what a model costs in memory, and what a QLoRA run records about itself.

    levels = nf4_levels_from_normal()                  # the 16 NF4 levels, built as the QLoRA paper builds them
    approx = bnb_quantize_dequantize(weight)           # bitsandbytes: quantise to NF4 and back (CPU or GPU)
    relative_error(weight, approx)                     # ||W - W_hat|| / ||W||
    footprint_bytes(model)                             # weights + buffers + the 4-bit layers' scales
    run_metadata(model, profile, ...)                  # base, its size, 4-bit or not, GPUs, peak memory, seconds
"""

from __future__ import annotations

import json
import math
from pathlib import Path

NF4_BLOCKSIZE = 64             # values that share one absmax scale (the paper's and bitsandbytes' default)
DOUBLE_QUANT_BLOCKSIZE = 256   # absmax scales that share one fp32 scale once they are quantised to 8 bit
NF4_OFFSET = 0.9677083         # the outermost quantile NF4 uses: (1 - 1/(2*15) + 1 - 1/(2*16)) / 2
QUANTISED = "4-bit weights"
CONSTANTS = "quantisation constants"
LINEAR = "linear-layer weights"
OTHER = "other weights"


# -- the 16 levels -------------------------------------------------------------------------------------------
def nf4_levels_from_normal(offset: float = NF4_OFFSET):
    """The NF4 levels as the QLoRA paper builds them: 8 quantiles of N(0, 1) for the positive side, 7 for the
    negative side, an exact zero between, all divided by the largest so they span [-1, 1].

    Equal areas of the normal curve between neighbouring levels: each level is used about equally often by
    normally distributed weights, so no code is wasted where weights rarely are.
    """
    import torch

    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values
    return (levels / levels.max()).float()


def bitsandbytes_nf4_levels():
    """The table bitsandbytes quantises to (float32, sorted)."""
    import bitsandbytes.functional as bnbf

    return bnbf.get_4bit_type("nf4", device="cpu").float()


def uniform_levels(n: int = 16):
    """n evenly spaced levels on [-1, 1]: what a plain 4-bit integer grid with an absmax scale can represent."""
    import torch

    return torch.linspace(-1.0, 1.0, n)


# -- bitsandbytes as the reference ---------------------------------------------------------------------------
def bnb_quantize(weight, blocksize: int = NF4_BLOCKSIZE):
    """bitsandbytes' NF4 codes (one level index 0..15 per value of ``weight.flatten()``) and absmax per block.

    bitsandbytes packs two 4-bit codes per byte; they are unpacked here so they can be read one per value.
    """
    import bitsandbytes.functional as bnbf
    import torch

    flat = weight.detach().float().reshape(-1).cpu()
    packed, state = bnbf.quantize_4bit(flat, blocksize=blocksize, quant_type="nf4", compress_statistics=False)
    packed = packed.reshape(-1)
    codes = torch.stack([packed >> 4, packed & 0xF], dim=1).reshape(-1)[:flat.numel()]
    return codes.to(torch.uint8), state.absmax.float()


def bnb_quantize_dequantize(weight, blocksize: int = NF4_BLOCKSIZE, double_quant: bool = False):
    """What bitsandbytes' NF4 keeps of a weight: quantise_4bit, then dequantize_4bit (float32, same shape).

    double_quant: also quantise the absmax scales to 8 bit (``compress_statistics``), as QLoRA's loader does.
    """
    import bitsandbytes.functional as bnbf

    # Flattened first: bitsandbytes 0.50's native CPU dequantize_4bit mislays the scales of blocks that straddle
    # two rows (a 64 x 96 matrix, blocks of 64). On one long row, its blocks and NF4's are the same.
    values = weight.detach().float().cpu()
    packed, state = bnbf.quantize_4bit(values.reshape(-1), blocksize=blocksize, quant_type="nf4",
                                       compress_statistics=double_quant)
    return bnbf.dequantize_4bit(packed, state).float().reshape(values.shape)


def relative_error(weight, approx) -> float:
    """||W - W_hat||_F / ||W||_F, in float64: the share of the weight matrix quantisation lost."""
    w, a = weight.detach().double().cpu(), approx.detach().double().cpu().reshape(weight.shape)
    return float((w - a).norm() / w.norm())


def block_scaled(weight, blocksize: int = NF4_BLOCKSIZE):
    """Each value divided by its block's absmax: what NF4 rounds to one of its 16 levels (a flat tensor)."""
    import torch

    flat = weight.detach().float().reshape(-1).cpu()
    padded = torch.nn.functional.pad(flat, (0, -flat.numel() % blocksize))
    blocks = padded.view(-1, blocksize)
    scaled = blocks / blocks.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
    return scaled.reshape(-1)[:flat.numel()]


# -- weights straight from a checkpoint, and as a 4-bit model computes with them ---------------------------
class CheckpointError(RuntimeError):
    """A tensor could not be read from a checkpoint; the message says which and why."""


def _checkpoint_file(name: str | Path, filename: str) -> Path | None:
    folder = Path(name)
    if folder.is_dir():
        path = folder / filename
        return path if path.exists() else None
    try:  # a hub model: the files from_pretrained downloaded are in the local cache
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(str(name), filename))
    except Exception:
        return None


def checkpoint_weight(name: str | Path, tensor_name: str):
    """One tensor of a saved model, read from its safetensors file(s) without loading the model (float32)."""
    from safetensors import safe_open

    index = _checkpoint_file(name, "model.safetensors.index.json")
    shard = "model.safetensors"
    if index is not None:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        if tensor_name not in weight_map:
            raise CheckpointError(f"{name} has no tensor {tensor_name!r}")
        shard = weight_map[tensor_name]
    path = _checkpoint_file(name, shard)
    if path is None:
        raise CheckpointError(f"{name} has no {shard}: load the model once so its files are downloaded")
    with safe_open(str(path), framework="pt") as tensors:
        if tensor_name not in tensors.keys():
            raise CheckpointError(f"{name} has no tensor {tensor_name!r}")
        return tensors.get_tensor(tensor_name).float()


def dequantized_weight(model, tensor_name: str):
    """A 4-bit layer's weight as the model computes with it: its NF4 codes times its (double-quantised) scales."""
    import copy

    import bitsandbytes.functional as bnbf
    import torch

    weight = model.get_parameter(tensor_name)
    state = getattr(weight, "quant_state", None)
    if state is None:
        raise ValueError(f"{tensor_name} is not a 4-bit weight (no quant_state)")
    flat = copy.copy(state)  # as one long row: see bnb_quantize_dequantize
    flat.shape = torch.Size([math.prod(state.shape)])
    return bnbf.dequantize_4bit(weight.data, flat).float().cpu().reshape(state.shape)


def keep_training_layout(model):
    """Keep the 4-bit layers in the layout that passes gradients back, whatever runs first.

    On a CPU with AVX512-BF16, bitsandbytes repacks a 4-bit layer for faster inference the first time it runs
    in eval mode (``support_avx512bf16_for_cpu``); the repacked layer has no backward pass, so gradients would
    stop there if the model is trained afterwards. A model evaluated before training keeps the plain layout.
    GPUs are unaffected. Returns the model.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


# -- memory ----------------------------------------------------------------------------------------------------
def _nbytes(tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _quant_state_tensors(state) -> list:
    """The tensors a bitsandbytes QuantState keeps beside the packed codes: scales, code tables, offset."""
    import torch

    found = []
    for value in (state.absmax, state.code, getattr(state, "offset", None)):
        if isinstance(value, torch.Tensor):
            found.append(value)
    nested = getattr(state, "state2", None)
    if nested is not None:
        found.extend(_quant_state_tensors(nested))
    return found


def footprint_breakdown(model) -> dict[str, int]:
    """Bytes a model holds, by kind: 4-bit weights (two codes per byte), their quantisation constants (absmax
    scales, code tables), and everything else (embeddings, norms, buffers, full-precision linear layers).
    A tensor shared by several layers (tied weights, a common code table) is counted once."""
    seen: set = set()
    sizes = {QUANTISED: 0, CONSTANTS: 0, OTHER: 0}

    def add(kind, tensor):
        key = (tensor.device, tensor.data_ptr(), _nbytes(tensor))
        if tensor.device.type != "meta" and key in seen:
            return
        seen.add(key)
        sizes[kind] += _nbytes(tensor)

    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        if state is None:
            add(OTHER, param)
            continue
        add(QUANTISED, param)
        for tensor in _quant_state_tensors(state):
            add(CONSTANTS, tensor)
    for buffer in model.buffers():
        add(OTHER, buffer)
    return sizes


def footprint_bytes(model) -> int:
    """Everything the weights of a model cost in memory, 4-bit scales included (activations not counted)."""
    return sum(footprint_breakdown(model).values())


def empty_model(name_or_config, dtype=None):
    """The model's architecture with no memory behind its weights (on PyTorch's meta device): sizes, shapes,
    parameter counts of a model of any size, without loading or downloading its weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if isinstance(name_or_config, dict):
        settings = dict(name_or_config)
        config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    elif isinstance(name_or_config, (str, Path)):
        config = AutoConfig.from_pretrained(str(name_or_config))
    else:
        config = name_or_config
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)


def _quantisable_linears(model):
    """The linear layers a 4-bit loader quantises: all but the output head (which stays in full precision)."""
    import torch

    head = model.get_output_embeddings()
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head]


def full_precision_breakdown(name_or_config, dtype) -> dict[str, int]:
    """Bytes of the model's weights at `dtype` (e.g. float32), split into linear layers and the rest."""
    model = empty_model(name_or_config, dtype)
    linear_ids = {id(module.weight) for _, module in _quantisable_linears(model)}
    sizes = {LINEAR: 0, OTHER: 0}
    seen = set()
    for param in [*model.parameters(), *model.buffers()]:
        if id(param) in seen:
            continue
        seen.add(id(param))
        sizes[LINEAR if id(param) in linear_ids else OTHER] += _nbytes(param)
    return sizes


def bits_per_parameter(blocksize: int = NF4_BLOCKSIZE, double_quant: bool = True,
                       second_blocksize: int = DOUBLE_QUANT_BLOCKSIZE) -> float:
    """What one quantised weight costs in bits: its 4-bit code plus its share of the block's scale.

    One fp32 absmax per 64 weights adds 32/64 = 0.5 bit. Double quantisation stores that absmax in 8 bits,
    with one fp32 scale per 256 of them: 8/64 + 32/(64*256) = 0.127 bit.
    """
    if double_quant:
        return 4 + 8 / blocksize + 32 / (blocksize * second_blocksize)
    return 4 + 32 / blocksize


def predicted_four_bit_bytes(name_or_config, dtype, blocksize: int = NF4_BLOCKSIZE, double_quant: bool = True
                             ) -> int:
    """What the model should cost with its linear layers in NF4 and everything else at `dtype`."""
    model = empty_model(name_or_config, dtype)
    linear_ids = {id(module.weight) for _, module in _quantisable_linears(model)}
    quantised = sum(p.numel() for p in model.parameters() if id(p) in linear_ids)
    rest = sum(_nbytes(p) for p in model.parameters() if id(p) not in linear_ids)
    rest += sum(_nbytes(b) for b in model.buffers())
    return round(quantised * bits_per_parameter(blocksize, double_quant) / 8 + rest)


# -- what a run records ------------------------------------------------------------------------------------------
def base_parameter_count(model) -> int:
    """Parameters of the base model: 4-bit weights counted by their real shape (not two per byte), adapters and
    other trainable additions left out."""
    total = 0
    for name, param in model.named_parameters():
        if "lora_" in name or "modules_to_save" in name:
            continue
        state = getattr(param, "quant_state", None)
        total += math.prod(state.shape) if state is not None else param.numel()
    return total


def parameters_from_config(config: dict) -> int:
    """Parameters of the model a config describes, counted on the meta device (no weights, no download)."""
    return sum(p.numel() for p in empty_model(config).parameters())


def quantisation_of(model) -> dict:
    """How the model's weights are stored, read from its layers (not from what the loader was asked for)."""
    four_bit = [p for p in model.parameters() if getattr(p, "quant_state", None) is not None]
    states = [p.quant_state for p in four_bit]
    compute = {str(m.compute_dtype).replace("torch.", "") for m in model.modules()
               if type(m).__name__ == "Linear4bit" and getattr(m, "compute_dtype", None) is not None}
    return {
        "loaded_in_4bit": bool(four_bit),
        "quant_type": states[0].quant_type if states else None,
        "double_quant": bool(states) and all(getattr(s, "nested", False) for s in states),
        "blocksize": states[0].blocksize if states else None,
        "compute_dtype": sorted(compute)[0] if len(compute) == 1 else (sorted(compute) or None),
        "four_bit_layers": len(four_bit),
    }


def reset_peak_gpu_memory() -> None:
    """Start measuring peak GPU memory from here (nothing to do without a GPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gpu_memory_bytes() -> int | None:
    """The most GPU memory tensors held since the last reset (None without a GPU)."""
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "transformers", "peft", "trl", "bitsandbytes"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def run_metadata(model, profile, base_model: str, train_seconds: float, peak_gpu_memory_bytes: int | None,
                 lora_config=None) -> dict:
    """What a QLoRA run was, read from the trained model itself: which base and how big, how its weights were
    stored, on which device(s), how much GPU memory it peaked at and how long training took."""
    import torch

    devices = {p.device for p in model.parameters()}
    cuda_devices = sorted({d.index or 0 for d in devices if d.type == "cuda"})
    config = model.config if not hasattr(model, "get_base_model") else model.get_base_model().config
    metadata = {
        "profile": profile.name,
        "base_model": str(base_model),
        "base_parameters": base_parameter_count(model),
        "hidden_size": int(getattr(config, "hidden_size", 0)),
        **quantisation_of(model),
        "device": "cuda" if cuda_devices else "cpu",
        "gpus_used": len(cuda_devices),
        "gpu_name": torch.cuda.get_device_name(cuda_devices[0]) if cuda_devices else None,
        "peak_gpu_memory_bytes": peak_gpu_memory_bytes,
        "train_seconds": round(float(train_seconds), 1),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "versions": _versions(),
    }
    if lora_config is not None:
        metadata["lora"] = {"r": lora_config.r, "alpha": lora_config.lora_alpha,
                            "target_modules": sorted(lora_config.target_modules)}
    return metadata


def base_config(model) -> dict:
    """The base model's config as a plain dict (saved beside the adapter: the checker recounts the base from it)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.to_dict()
    config.pop("quantization_config", None)
    return json.loads(json.dumps(config, default=str))


# -- the saved adapter, against the base it was trained on ------------------------------------------------------
def adapter_tensors(adapter_dir: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors in a saved PEFT adapter (read without loading them)."""
    from safetensors import safe_open

    with safe_open(str(Path(adapter_dir) / "adapter_model.safetensors"), framework="pt") as tensors:
        return {key: tuple(tensors.get_slice(key).get_shape()) for key in tensors.keys()}


def adapter_shape_problems(shapes: dict[str, tuple[int, ...]], config: dict) -> list[str]:
    """Where a LoRA adapter does not fit the base a config describes: each lora_A must read the layer's input
    size, each lora_B must write its output size, and the two must share one rank."""
    model = empty_model(config)
    linears = dict(model.named_modules())
    problems, ranks = [], {}
    for key, shape in shapes.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker not in key:
                continue
            layer = key.split(marker)[0].removeprefix("base_model.model.")
            module = linears.get(layer)
            if module is None or not hasattr(module, "in_features"):
                problems.append(f"{layer} is not a linear layer of this base")
                continue
            if len(shape) != 2:
                problems.append(f"{key} has shape {shape}, not a matrix")
                continue
            rank, expected = (shape[0], module.in_features) if part == "lora_A" else (shape[1], module.out_features)
            size = shape[1] if part == "lora_A" else shape[0]
            if size != expected:
                side = "input" if part == "lora_A" else "output"
                problems.append(f"{key}: {size} features, but {layer} has {expected} {side} features")
            ranks.setdefault(layer, set()).add(rank)
    problems += [f"{layer}: lora_A and lora_B disagree on the rank ({sorted(r)})" for layer, r in ranks.items()
                 if len(r) > 1]
    if not ranks:
        problems.append("the adapter holds no LoRA matrices")
    return problems


# -- earlier rungs, for comparison ---------------------------------------------------------------------------
def earlier_runs(outputs_root: Path, rungs=("02-sft", "03-lora")) -> dict[str, dict | None]:
    """metrics.json of earlier rungs when they have been run (None where not): read only, never created."""
    found = {}
    for rung in rungs:
        path = Path(outputs_root) / rung / "metrics.json"
        try:
            found[rung] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found[rung] = None
    return found


# -- pictures --------------------------------------------------------------------------------------------------
def _pyplot():
    from shared.plots import _pyplot as pyplot

    return pyplot()


def footprint_plot(breakdowns: dict[str, dict[str, int]], title: str = "what the weights cost in memory"):
    """Stacked bars, one per way of storing the model: bytes by kind (MB on the axis)."""
    plt = _pyplot()
    _, ax = plt.subplots(figsize=(6, 3))
    names = list(breakdowns)
    kinds = list(dict.fromkeys(kind for sizes in breakdowns.values() for kind in sizes))
    bottoms = [0.0] * len(names)
    for kind in kinds:
        values = [breakdowns[name].get(kind, 0) / 1e6 for name in names]
        ax.barh(names, values, left=bottoms, label=kind)
        bottoms = [b + v for b, v in zip(bottoms, values)]
    for row, total in enumerate(bottoms):
        ax.text(total, row, f" {total:,.1f} MB", va="center", fontsize=8)
    ax.set_xlabel("MB")
    ax.set_xlim(0, max(bottoms) * 1.25)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return ax.figure


def levels_plot(scaled, grids: dict, title: str = "weights / block absmax, and the levels they round to"):
    """A histogram of block-scaled weights with each grid's levels marked below it."""
    plt = _pyplot()
    _, ax = plt.subplots(figsize=(7, 3))
    ax.hist(scaled.numpy(), bins=120, range=(-1, 1), color="lightgray")
    top = ax.get_ylim()[1]
    for row, (name, levels) in enumerate(grids.items()):
        y = -top * (0.08 + 0.08 * row)
        ax.scatter(levels.numpy(), [y] * len(levels), marker="|", s=200, label=f"{name} ({len(levels)} levels)")
    ax.set_ylim(-top * (0.12 + 0.08 * len(grids)), top)
    ax.set_xlabel("value / absmax of its block of 64")
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    return ax.figure


def is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
