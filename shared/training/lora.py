"""LoRA helpers: target modules, a ``LoraConfig`` builder, PEFT references, the rank/alpha/target sweep.

Rung 03 teaches LoRA with these; rung 04 (QLoRA) reuses them on a 4-bit base. The public API:

* ``ATTENTION``, ``MLP``, ``ALL_LINEAR``, ``TARGETS`` -- the Llama projection names LoRA can adapt, by group;
* ``lora_config(r, alpha, targets, dropout)`` -- the course's ``peft.LoraConfig`` (causal LM, no bias);
* ``peft_lora_linear(weight, lora_A, lora_B, alpha, bias)`` -- PEFT's own LoRA ``Linear`` with given values
  (the reference a hand-written forward is checked against);
* ``peft_trainable_count(model_config, r, targets)`` -- PEFT's count of trainable parameters for a config;
* ``run_sweep(profile, tokenizer, configs)`` -- short LoRA runs over rank, alpha and target modules
  (``shared.plots.sweep`` draws them against trainable parameters and memory).

Memory (``training_state_bytes``) is in ``shared.training.memory``; rung 02's figures in ``shared.training.runs``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from shared.training.memory import training_state_bytes


# The linear layers of a Llama block (and of most current decoder models) that LoRA can adapt.
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


MLP = ("gate_proj", "up_proj", "down_proj")


ALL_LINEAR = ATTENTION + MLP


TARGETS = {"attention": ATTENTION, "all-linear": ALL_LINEAR}


def target_modules(targets) -> list[str]:
    """A target set by name ("attention", "all-linear") or an explicit list of module names, as a list."""
    if isinstance(targets, str):
        if targets not in TARGETS:
            raise ValueError(f"unknown target set {targets!r}; use one of {', '.join(TARGETS)} or a list of "
                             f"module names such as {list(ATTENTION)}")
        return list(TARGETS[targets])
    names = list(targets)
    if not names:
        raise ValueError("target modules: give at least one module name")
    return names


def lora_config(r: int = 16, alpha: float = 32, targets="all-linear", dropout: float = 0.0):
    """The course's LoRA adapter: rank `r`, scaling ``alpha / r``, on `targets` (a set name or module names).

    No dropout by default: runs are short and the data small, and it keeps a run deterministic to compare.
    """
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, target_modules=target_modules(targets), lora_dropout=dropout,
                      bias="none", task_type="CAUSAL_LM")


def peft_lora_linear(weight, lora_A, lora_B, alpha: float, bias=None):
    """PEFT's LoRA ``Linear`` around an ``nn.Linear`` holding `weight` (out, in) and `bias`, with the
    adapter's A (r, in) and B (out, r) set to the given values. Call it on x (..., in)."""
    import torch
    from peft import LoraConfig
    from peft.tuners.lora import Linear as LoraLinear

    out_features, in_features = weight.shape
    r = lora_A.shape[0]
    if lora_A.shape != (r, in_features) or lora_B.shape != (out_features, r):
        raise ValueError(f"shapes do not fit: weight {tuple(weight.shape)}, A {tuple(lora_A.shape)}, "
                         f"B {tuple(lora_B.shape)} (expected A ({r}, {in_features}), B ({out_features}, {r}))")
    base = torch.nn.Linear(in_features, out_features, bias=bias is not None, dtype=weight.dtype)
    layer = LoraLinear(base, "default", config=LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0),
                       r=r, lora_alpha=alpha)
    layer.to(weight.dtype)
    with torch.no_grad():
        base.weight.copy_(weight)
        if bias is not None:
            base.bias.copy_(bias)
        layer.lora_A["default"].weight.copy_(lora_A)
        layer.lora_B["default"].weight.copy_(lora_B)
    return layer.eval()


def peft_trainable_count(model_config, r: int, targets) -> int:
    """PEFT's own count (``get_nb_trainable_parameters``) of a LoRA adapter's parameters for a model built
    from `model_config` (a transformers config). The model is built on the meta device: no memory, no time."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(model_config)
        peft_model = get_peft_model(model, lora_config(r=r, alpha=r, targets=targets))
    return int(peft_model.get_nb_trainable_parameters()[0])


def mean_accuracy(accuracies: dict[str, float]) -> float:
    return sum(accuracies.values()) / len(accuracies)


def sweep_name(config: dict) -> str:
    return f"{config['targets']} r={config['r']} alpha={config['alpha']:g}"


def sweep_folder(config: dict) -> str:
    """The folder name a sweep run's adapter is saved under, e.g. ``all-linear-r8-alpha16``."""
    return f"{config['targets']}-r{config['r']}-alpha{config['alpha']:g}"


def run_sweep(profile, tokenizer, configs: list[dict], output_dir: str | Path | None = None,
              save_to: str | Path | None = None) -> list[dict]:
    """Train one short LoRA adapter per config (dicts with ``r``, ``alpha``, ``targets``, and optionally
    ``series``: the name the sweep's plot groups the run under, "LoRA on <targets>" by default) and score it.

    Each run is the course's LoRA recipe (the profile's ``"lora"`` stage) shortened by the ``"lora_sweep"``
    stage, and is scored on ``eval_examples_per_task`` held-out examples per task (the same subset for every
    run). Returns one dict per run: the config, trainable parameters (PEFT's count), training-state memory
    (``training_state_bytes``), accuracy per task, their mean and the training seconds. On a CUDA GPU,
    ``measured_peak_bytes`` is the peak GPU memory while training (activations included); elsewhere ``None``.
    With `save_to`, each run's adapter is saved in a folder of its own there (``sweep_folder``), so that its
    figures can be measured again from the adapter (the checker does).
    """
    import gc
    import tempfile

    import torch

    from shared.evaluation import evals
    from shared.models import load_model
    from shared.training.memory import peak_gpu_memory_bytes, reset_peak_gpu_memory
    from shared.training.sft import sft_trainer

    settings = profile.train("lora_sweep")
    eval_limit = settings.pop("eval_examples_per_task")
    results = []
    with tempfile.TemporaryDirectory(prefix="lora-sweep-") as scratch:
        for config in configs:
            torch.manual_seed(profile.seed)  # the adapter's A starts from the same random draw in every run
            model = load_model(profile=profile)
            trainer = sft_trainer(model, tokenizer, profile, "lora", output_dir or scratch,
                                  peft_config=lora_config(config["r"], config["alpha"], config["targets"]),
                                  **settings)
            memory = training_state_bytes(trainer.model)
            trainable = int(trainer.model.get_nb_trainable_parameters()[0])
            reset_peak_gpu_memory()
            seconds = trainer.train().metrics["train_runtime"]
            peak = peak_gpu_memory_bytes()
            scores = evals.accuracies(evals.evaluate_model(trainer.model, tokenizer, split="heldout",
                                                           limit=eval_limit))
            results.append({"name": sweep_name(config), "r": config["r"], "alpha": config["alpha"],
                            "targets": config["targets"],
                            "series": config.get("series", f"LoRA on {config['targets']}"),
                            "trainable_parameters": trainable,
                            "memory_bytes": memory["total"], "memory": memory, "measured_peak_bytes": peak,
                            "accuracy": scores, "mean_accuracy": round(mean_accuracy(scores), 4),
                            "train_seconds": round(seconds, 1), "eval_examples_per_task": eval_limit})
            if save_to is not None:
                trainer.model.save_pretrained(str(Path(save_to) / sweep_folder(config)))
            del trainer, model  # one model at a time: free this one before the next loads
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return results
