"""What a notebook saved -- a fine-tuned model or a LoRA adapter -- loaded and validated the same way by every
checker: it loads, it is what it claims to be, it fits the base it names, and it was trained.

    model, tokenizer = load_saved_model(outputs / "model", profile)                # rung 02
    adapter = load_saved_adapter(outputs / "adapter", profile, profile.base_model)  # rungs 03, 04 (four_bit=True)

A base is identified by what it holds, not by the path it was saved from: an adapter trained in another clone
of the course (its config names that clone's ``data/tiny-base``) is on the same base if the files are the same.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from shared.checking import CheckFailed, read_json, require
from shared.training.lora import ALL_LINEAR
from shared.training.memory import empty_model


def load_failure(what: str, error: Exception) -> CheckFailed:
    # corrupt files raise many kinds (OSError, SafetensorError, JSON errors...): all mean "save it again"
    return CheckFailed(f"the saved {what} does not load ({type(error).__name__}: {str(error)[:200]})")


# -- which base is it? -------------------------------------------------------------------------------------
def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [folder / shard for shard in shards]
    return [folder / "model.safetensors"]


def model_identity(name: str | Path) -> tuple:
    """What a model is: for a folder on disk, its architecture (config.json without the fields a save rewrites)
    and the sha256 of its weight files; for a hub name, the name itself."""
    from shared.checking.integrity import content_key

    folder = Path(str(name))
    if not folder.is_dir():
        return ("hub", str(name))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for volatile in ("_name_or_path", "transformers_version", "name_or_path"):
        config.pop(volatile, None)
    return ("local", json.dumps(config, sort_keys=True), content_key(_weight_files(folder)))


def same_base(recorded, expected) -> bool:
    """Is the base an adapter records the one this profile trains on? By content, wherever it lies."""
    if not isinstance(recorded, str) or not recorded:
        return False
    if recorded == str(expected):
        return True
    try:
        return model_identity(recorded) == model_identity(expected)
    except (OSError, ValueError, KeyError):
        return False


# -- a fine-tuned model ------------------------------------------------------------------------------------
def load_saved_model(folder: Path, profile, hint: str = "run the section that saves it"):
    """(model, tokenizer) from a folder a notebook saved with trainer.save_model; the weights must differ from
    the profile's base model (else nothing was fine-tuned)."""
    from shared.models import load_model, load_tokenizer

    require(folder.is_dir(), f"no saved model folder ({folder.name}/): {hint}")
    try:
        tokenizer = load_tokenizer(folder, profile)
        model = load_model(folder, profile)
    except Exception as error:
        raise load_failure("model", error) from error
    base = load_model(profile=profile)
    changed = any((p - q).abs().max().item() > 0 for p, q in zip(model.parameters(), base.parameters()))
    require(changed, "the saved weights equal the base model's: was the fine-tuned model saved?")
    return model, tokenizer


# -- a LoRA adapter ----------------------------------------------------------------------------------------
def adapter_settings(folder: Path, profile, base_model) -> dict:
    """r, alpha and target modules from adapter_config.json, which must describe a LoRA adapter on `base_model`."""
    require(folder.is_dir(), f"no saved adapter folder ({folder.name}/): run the section that trains it to the end")
    config = read_json(folder / "adapter_config.json", "the adapter's configuration")
    require(config.get("peft_type") == "LORA", f"adapter_config.json says peft_type {config.get('peft_type')!r}: "
                                               "not a LoRA adapter")
    r, alpha, targets = config.get("r"), config.get("lora_alpha"), config.get("target_modules")
    require(isinstance(r, int) and r > 0, f"adapter_config.json r is {r!r}, not a positive rank")
    require(isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and math.isfinite(alpha) and alpha > 0,
            f"adapter_config.json lora_alpha is {alpha!r}")
    targets = sorted(targets) if isinstance(targets, (list, tuple)) else targets
    require(isinstance(targets, list) and targets and set(targets) <= set(ALL_LINEAR),
            f"adapter_config.json target_modules is {config.get('target_modules')!r}: expected some of "
            f"{list(ALL_LINEAR)}")
    recorded = config.get("base_model_name_or_path")
    require(same_base(recorded, base_model),
            f"the adapter was trained on {recorded!r}, not on this profile's base model {str(base_model)!r} "
            "(compared by content: config and weights)")
    return {"r": r, "alpha": alpha, "targets": targets}


def load_saved_adapter(folder: Path, profile, base_model, four_bit: bool = False) -> dict:
    """Open a saved adapter, check it is LoRA and nothing else, put it on a fresh base (in NF4 with `four_bit`),
    and check it was trained and left the base untouched. Returns the model and what was read."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    from shared.models import load_model

    settings = adapter_settings(folder, profile, base_model)
    weights_file = folder / "adapter_model.safetensors"
    require(weights_file.exists(), "the adapter's weights (adapter_model.safetensors) are missing")
    try:
        saved_weights = load_file(str(weights_file))
        model = load_model(base_model, profile, four_bit=four_bit, adapter=folder, trainable_adapter=True)
    except Exception as error:
        raise load_failure("adapter", error) from error
    others = [name for name in saved_weights if "lora_A" not in name and "lora_B" not in name]
    require(not others, f"the adapter also saves {len(others)} other tensors (e.g. {others[0] if others else ''}): "
                        "a LoRA adapter holds only A and B matrices (no modules_to_save, no full weights)")
    loaded = get_peft_model_state_dict(model)
    require(set(loaded) == set(saved_weights),
            f"the adapter's tensors do not match the base model's layers ({len(set(saved_weights) - set(loaded))} "
            "not placed): was it trained on another base model?")
    require(all(torch.equal(loaded[name].cpu(), saved_weights[name].cpu()) for name in saved_weights),
            "the adapter's weights did not load as saved")
    require(any(saved_weights[name].abs().max() > 0 for name in saved_weights if "lora_B" in name),
            "every B matrix is zero: the adapter was never trained, it changes nothing")
    base = load_model(base_model, profile, four_bit=four_bit)
    base_weights = dict(base.named_parameters())
    for name, tensor in model.get_base_model().named_parameters():
        if "lora_" in name:
            continue
        plain = name.replace(".base_layer", "")
        require(plain in base_weights and torch.equal(tensor.detach().cpu(), base_weights[plain].detach().cpu()),
                f"base weight {plain} differs from the unmodified base model's")
    return {"model": model, "base": base, "config": settings}


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


def copied_from(folder: Path, outputs_root: Path, rung_outputs: Path) -> str | None:
    """Where else under the outputs folder the same weights as `folder`'s lie -- another rung's model passed off
    as this rung's -- or None."""
    from shared.checking import inside
    from shared.checking.integrity import content_key

    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return None
    mine = content_key(weights[:1])[0][0][1]
    for other in outputs_root.rglob(weights[0].name):
        if not inside(other, rung_outputs) and content_key([other])[0][0][1] == mine:
            return str(other.parent.relative_to(outputs_root))
    return None
