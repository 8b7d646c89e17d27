"""LoRA helpers: target modules, a ``LoraConfig`` builder, training-state memory, PEFT references, the sweep.

Rung 03 teaches LoRA with these; rung 04 (QLoRA) reuses them on a 4-bit base. The public API:

* ``ATTENTION``, ``MLP``, ``ALL_LINEAR``, ``TARGETS`` -- the Llama projection names LoRA can adapt, by group;
* ``lora_config(r, alpha, targets, dropout)`` -- the course's ``peft.LoraConfig`` (causal LM, no bias);
* ``training_state_bytes(model)`` -- what training keeps in memory besides activations: frozen weights,
  trainable weights, their gradients and AdamW's two moments, in bytes, from the model's real dtypes;
* ``peft_lora_linear(weight, lora_A, lora_B, alpha, bias)`` -- PEFT's own LoRA ``Linear`` with given values
  (the reference a hand-written forward is checked against);
* ``peft_trainable_count(model_config, r, targets)`` -- PEFT's count of trainable parameters for a config;
* ``full_sft_point()`` -- rung 02's saved full fine-tune figures, or ``None`` when it has not been run;
* ``run_sweep(profile, tokenizer, configs)`` and ``plot_sweep(...)`` -- short LoRA runs over rank, alpha and
  target modules, and accuracy against trainable parameters and memory.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

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


# -- memory --------------------------------------------------------------------------------------------
def _tensor_bytes(tensor) -> int:
    """Bytes of a parameter as stored; a bitsandbytes 4-bit weight also keeps its block scales (absmax)."""
    size = tensor.numel() * tensor.element_size()
    state = getattr(tensor, "quant_state", None)
    while state is not None:  # double quantisation nests a second state for the scales
        absmax = getattr(state, "absmax", None)
        if absmax is not None:
            size += absmax.numel() * absmax.element_size()
        state = getattr(state, "state2", None)
    return size


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
    frozen = sum(_tensor_bytes(b) for b in model.buffers())
    trainable = trainable_values = 0
    for parameter in model.parameters():
        if parameter.requires_grad:
            trainable += _tensor_bytes(parameter)
            trainable_values += parameter.numel()
        else:
            frozen += _tensor_bytes(parameter)
    moments = 2 * (trainable if moment_bytes is None else trainable_values * moment_bytes)
    parts = {"frozen_weights": frozen, "trainable_weights": trainable, "gradients": trainable,
             "optimizer_moments": moments}
    return {**parts, "total": sum(parts.values())}


def megabytes(n_bytes: int) -> float:
    return n_bytes / 2 ** 20


# -- PEFT references -------------------------------------------------------------------------------------
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


# -- the comparison with rung 02 ---------------------------------------------------------------------------
def full_sft_point(profile, path: str | Path | None = None) -> dict | None:
    """Rung 02's held-out accuracy per task after full SFT, read from its saved ``metrics.json``.

    `path` defaults to ``outputs_dir("02-sft") / "metrics.json"``. ``None`` when that file is missing, was
    made with another profile, or does not hold valid figures: the figures are never made up.
    """
    from shared.evals import is_valid_accuracy
    from shared.paths import outputs_dir

    path = Path(path) if path is not None else outputs_dir("02-sft") / "metrics.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        after = saved["after"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(saved, dict) or saved.get("profile") != profile.name:
        return None
    if not isinstance(after, dict) or not after or not all(is_valid_accuracy(v) for v in after.values()):
        return None
    return {task: float(value) for task, value in after.items()}


def mean_accuracy(accuracies: dict[str, float]) -> float:
    return sum(accuracies.values()) / len(accuracies)


# -- the sweep ---------------------------------------------------------------------------------------------
def sweep_name(config: dict) -> str:
    return f"{config['targets']} r={config['r']} alpha={config['alpha']:g}"


def run_sweep(profile, tokenizer, configs: list[dict], output_dir: str | Path | None = None) -> list[dict]:
    """Train one short LoRA adapter per config (dicts with ``r``, ``alpha``, ``targets``) and score it.

    Each run is the course's LoRA recipe (the profile's ``"lora"`` stage) shortened by the ``"lora_sweep"``
    stage, and is scored on ``eval_examples_per_task`` held-out examples per task (the same subset for every
    run). Returns one dict per run: the config, trainable parameters (PEFT's count), training-state memory
    (``training_state_bytes``), accuracy per task, their mean and the training seconds. On a CUDA GPU,
    ``measured_peak_bytes`` is the peak GPU memory while training (activations included); elsewhere ``None``.
    """
    import gc
    import tempfile

    import torch

    from shared import evals
    from shared.models import load_model
    from shared.sft import sft_trainer

    settings = profile.train("lora_sweep")
    eval_limit = settings.pop("eval_examples_per_task")
    results = []
    with tempfile.TemporaryDirectory(prefix="lora-sweep-") as scratch:
        for config in configs:
            torch.manual_seed(0)  # the adapter's A starts from the same random draw in every run
            model = load_model(profile=profile)
            trainer = sft_trainer(model, tokenizer, profile, "lora", output_dir or scratch,
                                  peft_config=lora_config(config["r"], config["alpha"], config["targets"]),
                                  **settings)
            memory = training_state_bytes(trainer.model)
            trainable = int(trainer.model.get_nb_trainable_parameters()[0])
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            seconds = trainer.train().metrics["train_runtime"]
            peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
            scores = evals.accuracies(evals.evaluate_model(trainer.model, tokenizer, split="heldout",
                                                           limit=eval_limit))
            results.append({"name": sweep_name(config), "r": config["r"], "alpha": config["alpha"],
                            "targets": config["targets"], "trainable_parameters": trainable,
                            "memory_bytes": memory["total"], "memory": memory, "measured_peak_bytes": peak,
                            "accuracy": scores, "mean_accuracy": round(mean_accuracy(scores), 4),
                            "train_seconds": round(seconds, 1), "eval_examples_per_task": eval_limit})
            del trainer, model  # one model at a time: free this one before the next loads
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return results


def plot_memory(memory: dict[str, dict[str, int]], title: str = "what training keeps in memory"):
    """Stacked bars, one per run: the parts of ``training_state_bytes`` (run name -> parts), in MB."""
    from shared.plots import _pyplot

    plt = _pyplot()
    parts = [("frozen_weights", "frozen weights"), ("trainable_weights", "trainable weights"),
             ("gradients", "gradients"), ("optimizer_moments", "AdamW moments")]
    figure, ax = plt.subplots(figsize=(6, 3.2))
    names = list(memory)
    bottoms = [0.0] * len(names)
    for key, label in parts:
        values = [megabytes(memory[name][key]) for name in names]
        ax.bar(names, values, bottom=bottoms, label=label)
        bottoms = [b + v for b, v in zip(bottoms, values)]
    for x, total in enumerate(bottoms):
        ax.annotate(f"{total:.1f} MB", (x, total), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("MB (activations excluded)")
    ax.set_ylim(0, max(bottoms) * 1.15)
    ax.set_title(title)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_sweep(results: list[dict], points: dict[str, dict] | None = None):
    """Mean held-out accuracy against trainable parameters (left) and training-state memory (right).

    `results`: from ``run_sweep`` (one marker per target set, labelled by rank and alpha). `points`: more runs
    to show, name -> {"trainable_parameters", "memory_bytes", "mean_accuracy"} (e.g. the full LoRA run and
    rung 02's full fine-tune).
    """
    from shared.plots import _pyplot

    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    markers = {"attention": "o", "all-linear": "s"}
    for ax, key, label in ((axes[0], "trainable_parameters", "trainable parameters"),
                           (axes[1], "memory_bytes", "training-state memory (MB, activations excluded)")):
        scale = megabytes if key == "memory_bytes" else (lambda n: n)
        for targets in dict.fromkeys(r["targets"] for r in results):
            runs = [r for r in results if r["targets"] == targets]
            ax.scatter([scale(r[key]) for r in runs], [r["mean_accuracy"] for r in runs],
                       marker=markers.get(targets, "^"), label=f"LoRA on {targets} (short run)")
            for r in runs:
                ax.annotate(f"r{r['r']} a{r['alpha']:g}", (scale(r[key]), r["mean_accuracy"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        for (name, point), marker in zip((points or {}).items(), "*PXD"):
            ax.scatter([scale(point[key])], [point["mean_accuracy"]], marker=marker, s=120, label=name)
        if key == "trainable_parameters":  # parameters span orders of magnitude; memory does not
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    highest = max([r["mean_accuracy"] for r in results] + [p["mean_accuracy"] for p in (points or {}).values()])
    axes[0].set_ylabel("mean held-out accuracy")
    axes[0].set_ylim(0, min(1.05, highest + 0.15))
    axes[1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return figure


def is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
