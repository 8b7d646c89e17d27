"""What a training run records about itself (read from the trained model, not from what the loader was asked
for), and what earlier rungs recorded, read only, for comparison."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shared.numbers import is_fraction
from shared.training.memory import base_parameter_count


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


def full_sft_point(profile, path: str | Path | None = None) -> dict | None:
    """Rung 02's held-out accuracy per task after full SFT, read from its saved ``metrics.json``.

    `path` defaults to ``outputs_dir("02-sft") / "metrics.json"``. ``None`` when that file is missing, was
    made with another profile, or does not hold valid figures: the figures are never made up.
    """
    from shared.paths import outputs_dir

    path = Path(path) if path is not None else outputs_dir("02-sft", create=False) / "metrics.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        after = saved["after"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(saved, dict) or saved.get("profile") != profile.name:
        return None
    if not isinstance(after, dict) or not after or not all(is_fraction(v) for v in after.values()):
        return None
    return {task: float(value) for task, value in after.items()}


# -- the models earlier rungs saved, for the evals rung to measure side by side ---------------------------------
@dataclass(frozen=True)
class SavedModel:
    """A model an earlier rung saved: a full model folder, or an adapter on the folder it was trained on."""
    name: str                   # how tables name it: "SFT", "LoRA", ...
    rung: str                   # "02-sft"
    folder: Path | None         # the weights (or, with an adapter, the base it goes on); None: the profile's base
    adapter: Path | None = None
    four_bit: bool = False      # the base loaded as NF4 (QLoRA)

    def load(self, profile):
        from shared.models import load_model

        return load_model(self.folder, profile=profile, four_bit=self.four_bit, adapter=self.adapter)

    def load_tokenizer(self, profile):
        """The tokenizer saved with it (each rung saves one beside its model or adapter), else the base's."""
        from shared.models import load_tokenizer

        saved = self.adapter or self.folder
        has_own = saved is not None and (Path(saved) / "tokenizer_config.json").is_file()
        return load_tokenizer(saved if has_own else self.folder, profile=profile)

    def describe(self, outputs_root: Path) -> dict:
        """What a notebook saves to name this model: paths inside the outputs folder relative to it (a checker
        finds them in its own), anything else (the profile's base model) as it is."""
        def where(path):
            if path is None:
                return None
            path, root = Path(path).resolve(), Path(outputs_root).resolve()
            return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)

        return {"name": self.name, "rung": self.rung, "folder": where(self.folder), "adapter": where(self.adapter),
                "four_bit": self.four_bit}


def _made_with(outputs: Path, rung: str, profile) -> dict | None:
    """metrics.json of a rung, when it was made with this profile; else None."""
    try:
        metrics = json.loads((outputs / rung / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("profile") == profile.name else None


def saved_models(profile, sft_folder: Path, dpo_adapter: Path, dpo_reference: Path,
                 outputs_root: Path | None = None) -> tuple[list[SavedModel], list[str]]:
    """The base model, the SFT and DPO models given (``sft.rung02_model`` and ``preference.rung06_model`` find
    them, or train their recipes), and every other fine-tune earlier rungs saved with this profile; and a line
    for each rung whose model is missing (what to run to add it). Read only: nothing is created or trained."""
    from shared.paths import outputs_dir

    root = (Path(outputs_root) if outputs_root is not None else outputs_dir("02-sft", create=False).parent).resolve()
    found, missing = [SavedModel("base", "", None), SavedModel("SFT", "02-sft", Path(sft_folder))], []

    def add(model: SavedModel, needs: str):
        saved = Path(model.adapter or model.folder)
        if _made_with(root, model.rung, profile) is not None and (saved / needs).is_file():
            found.append(model)
        else:
            missing.append(f"{model.name}: no model saved by rung {model.rung} with the {profile.name} profile "
                           f"(run rungs/{model.rung}/exercise.ipynb, or its solution, to add it)")

    add(SavedModel("LoRA", "03-lora", None, adapter=root / "03-lora" / "adapter"), "adapter_config.json")
    qlora_base = (_made_with(root, "04-qlora", profile) or {}).get("base_model", profile.qlora_model)
    add(SavedModel("QLoRA", "04-qlora", qlora_base, adapter=root / "04-qlora" / "adapter", four_bit=True),
        "adapter_config.json")
    found.append(SavedModel("DPO", "06-dpo", Path(dpo_reference), adapter=Path(dpo_adapter)))
    add(SavedModel("GRPO", "07-grpo", root / "07-grpo" / "model"), "config.json")
    return found, missing
