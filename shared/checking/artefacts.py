"""Saved adapters against the base they claim: the tensors a PEFT adapter holds, and where they do not fit."""

from __future__ import annotations

from pathlib import Path

from shared.training.memory import empty_model


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
