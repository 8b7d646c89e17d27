"""What a model costs in memory: its weights as stored (4-bit codes and their scales counted the same way
everywhere), what training keeps besides activations, the size of any model worked out on the meta device
without its weights, and the peak GPU memory of a run.

    footprint_breakdown(model)      # bytes by kind: 4-bit weights, quantisation constants, other weights
    training_state_bytes(model)     # frozen weights, trainable weights, gradients, AdamW moments
    predicted_four_bit_bytes(name)  # what a model should cost in NF4, from its config alone
    rl_memory(policy, value, frozen)  # what PPO and GRPO hold for their models (rl_memory_worked_out: a 7B)
"""

from __future__ import annotations

import math
from pathlib import Path

from shared.training.quantisation import NF4_BLOCKSIZE, bits_per_parameter


QUANTISED = "4-bit weights"


CONSTANTS = "quantisation constants"


LINEAR = "linear-layer weights"


OTHER = "other weights"


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


def _stored_bytes():
    """A counter of the bytes a tensor holds as stored: a bitsandbytes 4-bit weight with its quantisation
    constants (scales, code table, offset, nested for double quantisation). A tensor shared by several layers
    (tied weights, a common code table) counts once per counter."""
    seen: set = set()

    def count(tensor, with_constants: bool = True) -> int:
        tensors = [tensor]
        state = getattr(tensor, "quant_state", None)
        if with_constants and state is not None:
            tensors += _quant_state_tensors(state)
        total = 0
        for t in tensors:
            key = (t.device, t.data_ptr(), _nbytes(t))
            if t.device.type != "meta" and key in seen:
                continue
            seen.add(key)
            total += _nbytes(t)
        return total

    return count


def footprint_breakdown(model) -> dict[str, int]:
    """Bytes a model holds, by kind: 4-bit weights (two codes per byte), their quantisation constants (absmax
    scales, code tables), and everything else (embeddings, norms, buffers, full-precision linear layers)."""
    stored = _stored_bytes()
    sizes = {QUANTISED: 0, CONSTANTS: 0, OTHER: 0}
    for param in model.parameters():
        if getattr(param, "quant_state", None) is None:
            sizes[OTHER] += stored(param)
            continue
        sizes[QUANTISED] += stored(param, with_constants=False)
        sizes[CONSTANTS] += stored(param)  # the codes are counted already: only the constants are new
    for buffer in model.buffers():
        sizes[OTHER] += stored(buffer)
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


def predicted_four_bit_bytes(name_or_config, dtype, blocksize: int = NF4_BLOCKSIZE, double_quant: bool = True
                             ) -> int:
    """What the model should cost with its linear layers in NF4 and everything else at `dtype`."""
    model = empty_model(name_or_config, dtype)
    linear_ids = {id(module.weight) for _, module in _quantisable_linears(model)}
    quantised = sum(p.numel() for p in model.parameters() if id(p) in linear_ids)
    rest = sum(_nbytes(p) for p in model.parameters() if id(p) not in linear_ids)
    rest += sum(_nbytes(b) for b in model.buffers())
    return round(quantised * bits_per_parameter(blocksize, double_quant) / 8 + rest)


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


def reset_peak_gpu_memory() -> None:
    """Start measuring peak GPU memory from here (nothing to do without a GPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gpu_memory_bytes() -> int | None:
    """The most GPU memory tensors held since the last reset (None without a GPU)."""
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


def training_state_bytes(model, moment_bytes: int | None = None) -> dict[str, int]:
    """Bytes training keeps for the model's weights, by part (activations are NOT included):

    * ``frozen_weights``: parameters that do not train, and buffers;
    * ``trainable_weights``: parameters with ``requires_grad``;
    * ``gradients``: one per trainable value, in its dtype;
    * ``optimizer_moments``: AdamW's two running averages per trainable value, in its dtype
      (or `moment_bytes` each, e.g. 1 for an 8-bit optimizer);
    * ``total``: the sum.

    Activations (and temporary buffers) depend on batch size and sequence length, and are left out.
    """
    stored = _stored_bytes()  # the same count as footprint_breakdown: 4-bit codes with their scales, shared once
    frozen = sum(stored(b) for b in model.buffers())
    trainable = trainable_values = 0
    for parameter in model.parameters():
        if parameter.requires_grad:
            trainable += stored(parameter)
            trainable_values += parameter.numel()
        else:
            frozen += stored(parameter)
    moments = 2 * (trainable if moment_bytes is None else trainable_values * moment_bytes)
    parts = {"frozen_weights": frozen, "trainable_weights": trainable, "gradients": trainable,
             "optimizer_moments": moments}
    return {**parts, "total": sum(parts.values())}


def megabytes(n_bytes: int) -> float:
    return n_bytes / 2 ** 20


# Qwen2.5-7B's shape (its config.json): 7,615,616,512 parameters, counted on the meta device without weights.
QWEN25_7B = dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                 num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768,
                 rms_norm_eps=1e-6, tie_word_embeddings=False)
# Bytes per parameter in bf16 mixed-precision training with AdamW: bf16 weights and gradients (2 + 2), an fp32
# master copy (4) and two fp32 moments (4 + 4) -- the 16 bytes of the ZeRO paper (Rajbhandari et al. 2020). A
# model that only runs forward keeps its bf16 weights (2).
TRAINED_BYTES_PER_PARAMETER = 16
FROZEN_BYTES_PER_PARAMETER = 2


def rl_memory(policy: int, value: int, frozen: int, reward_model: int | None = None) -> dict[str, dict[str, int]]:
    """What PPO and GRPO hold for their models (activations and generated text left out), by part, in bytes:
    `policy` and `value` are training states (weights, gradients, optimizer moments), `frozen` one copy of the
    model that only runs forward (the reference), `reward_model` a frozen reward model (the policy's size
    unless given). GRPO scores answers with a function here, so it holds no reward model."""
    reward_model = frozen if reward_model is None else reward_model
    return {
        "PPO": {"policy (trained)": policy, "value model (trained)": value, "reward model": reward_model,
                "reference": frozen},
        "GRPO, beta > 0": {"policy (trained)": policy, "reference": frozen},
        "GRPO, beta = 0": {"policy (trained)": policy},
    }


def rl_memory_worked_out(parameters: int) -> dict[str, dict[str, int]]:
    """rl_memory for a model of `parameters` parameters trained in bf16 mixed precision with AdamW, the value
    model its own size (as in InstructGPT's recipe), every frozen model in bf16."""
    trained = parameters * TRAINED_BYTES_PER_PARAMETER
    return rl_memory(trained, trained, parameters * FROZEN_BYTES_PER_PARAMETER)
