"""4-bit NF4 in numbers: the 16 levels built from the normal distribution, bitsandbytes' own NF4 (the reference
a hand-written version is checked against), the error a grid makes, and weights as a 4-bit model computes with them.

    levels = nf4_levels_from_normal()                  # the 16 NF4 levels, built as the QLoRA paper builds them
    approx = bnb_quantize_dequantize(weight)           # bitsandbytes: quantise to NF4 and back (CPU or GPU)
    relative_error(weight, approx)                     # ||W - W_hat|| / ||W||
"""

from __future__ import annotations

import json
import math
from pathlib import Path


NF4_BLOCKSIZE = 64             # values that share one absmax scale (the paper's and bitsandbytes' default)


DOUBLE_QUANT_BLOCKSIZE = 256   # absmax scales that share one fp32 scale once they are quantised to 8 bit


NF4_OFFSET = 0.9677083         # the outermost quantile NF4 uses: (1 - 1/(2*15) + 1 - 1/(2*16)) / 2


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


def bits_per_parameter(blocksize: int = NF4_BLOCKSIZE, double_quant: bool = True,
                       second_blocksize: int = DOUBLE_QUANT_BLOCKSIZE) -> float:
    """What one quantised weight costs in bits: its 4-bit code plus its share of the block's scale.

    One fp32 absmax per 64 weights adds 32/64 = 0.5 bit. Double quantisation stores that absmax in 8 bits,
    with one fp32 scale per 256 of them: 8/64 + 32/(64*256) = 0.127 bit.
    """
    if double_quant:
        return 4 + 8 / blocksize + 32 / (blocksize * second_blocksize)
    return 4 + 32 / blocksize
