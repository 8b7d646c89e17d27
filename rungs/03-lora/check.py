"""Checker for rung 03 (LoRA): `make check RUNG=03 [NOTEBOOK=path]`.

It runs a copy of the notebook, then verifies rather than trusts:
* the learner's `lora_forward` is compared with PEFT's own LoRA `Linear` on shapes, ranks, alphas and values the
  notebook never shows; `count_lora_parameters` with PEFT's own count on model configs the notebook never shows;
* the saved adapter is opened and reloaded on a fresh, unmodified base model: it must be a LoRA adapter (only A
  and B matrices, base weights untouched), and its held-out accuracy is measured here with the course's metric;
* the saved figures (accuracy, trainable parameters, memory) and the sweep's results are recomputed and compared.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere, even before `pip install -e`

from shared.checking import CheckFailed, Context, main, read_json, require  # noqa: E402
from shared.checking.figures import (FRESH_HINT, check_agreement, check_not_trained_on_heldout,  # noqa: E402
                                     check_thresholds, finite_fraction, measure_model, read_metrics)
from shared.checking.guards import Forbidden  # noqa: E402

RUNG = "03"
# Per profile and task: the held-out accuracy the reloaded adapter must reach (the base model scores 0% on each).
# Measured on the tiny profile with the solution (r=16, alpha=32, all linear layers, the "lora" stage):
# closed QA 98%, extraction 80%, arithmetic 99%; full SFT in rung 02 reaches 96%, 95%, 96%. Extraction is held
# lower: an adapter copies a stranger's name less surely (80-92% over training seeds; see the rung's README).
# The gpu figures are rung 02's gpu target, not yet measured for LoRA.
THRESHOLDS = {
    "tiny": {"closed_qa": 0.90, "extraction": 0.60, "arithmetic": 0.90},
    "gpu": {"closed_qa": 0.60, "extraction": 0.60, "arithmetic": 0.60},
}
# lora_forward against PEFT, in float32: |ours - PEFT| <= FORWARD_TOLERANCE * (1 + max |PEFT|) everywhere.
FORWARD_TOLERANCE = 1e-5
# The sweep's accuracies are measured again on this many of its saved adapters (which: drawn from the check seed),
# on the same held-out subset; a batch may flip a tie, so one answer per task may differ.
SWEEP_SPOT_CHECKS = 2
# Recomputed memory may differ from the saved figure by this fraction (a trainer may cast adapter weights).
MEMORY_TOLERANCE = 0.02

# Cases the notebook does not show: (leading batch shape, in, out, r, alpha, with bias, value scale).
FORWARD_CASES = [
    ((5,), 3, 2, 1, 1, True, 1.0),
    ((2, 7), 16, 9, 4, 16, False, 1.0),      # alpha / r = 4
    ((3, 2, 4), 8, 12, 8, 2, True, 1.0),     # alpha / r = 0.25, three batch dimensions
    ((1,), 33, 5, 3, 7.5, True, 10.0),       # alpha not an integer, alpha / r differs from alpha / sqrt(r)
    ((), 10, 10, 2, 2, False, 1.0),          # one vector, no batch dimension
    ((4, 6), 24, 40, 12, 48, True, 0.1),     # wider out than in
]
# Llama configs the notebook does not show, with a rank and target modules for each.
COUNT_CASES = [
    (dict(hidden_size=192, intermediate_size=520, num_attention_heads=12, num_key_value_heads=4,
          num_hidden_layers=3), 8, ["k_proj", "v_proj"]),
    (dict(hidden_size=128, intermediate_size=300, num_attention_heads=4, num_key_value_heads=2, head_dim=48,
          num_hidden_layers=2), 3, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    (dict(hidden_size=96, intermediate_size=256, num_attention_heads=6, num_key_value_heads=1,
          num_hidden_layers=5), 16, ["q_proj", "o_proj", "down_proj"]),
    (dict(hidden_size=64, intermediate_size=176, num_attention_heads=4, num_key_value_heads=4,
          num_hidden_layers=1), 1, ["gate_proj", "up_proj"]),
    (dict(hidden_size=160, intermediate_size=448, num_attention_heads=10, num_key_value_heads=5,
          num_hidden_layers=2), 32, ["q_proj", "k_proj", "v_proj", "o_proj"]),
]


from shared.training.lora import TARGETS as TARGET_SETS  # noqa: E402

# The references each graded function is checked against, which it may therefore not call.
_PEFT = Forbidden("it is yours to write; PEFT is what it is checked against", modules=("peft", "shared.training.lora"))
FORBIDDEN = {"lora_forward": _PEFT, "count_lora_parameters": _PEFT}


def check(ctx: Context) -> None:
    ctx.run_notebook()
    check_graded(ctx)
    verify_outputs(ctx)
    ctx.review("written answer: rank, alpha and target modules", ctx.answers().get("rank-alpha-targets"),
               hint="Write a few sentences of your own in section 6.")


def check_graded(ctx: Context) -> None:
    """The learner's functions, run in their own process, on cases the notebook never shows."""
    graded = ctx.graded(list(FORBIDDEN), forbidden=FORBIDDEN)
    ctx.criterion("lora_forward matches PEFT's LoRA layer on unseen shapes and values",
                  lambda: check_lora_forward(graded["lora_forward"]),
                  hint="W x + b + (alpha / r) * B (A x), for x with any leading batch dimensions and bias None "
                       "or a vector; re-read section 1.")
    ctx.criterion("count_lora_parameters matches PEFT's count on unseen model configs",
                  lambda: check_count(graded["count_lora_parameters"]),
                  hint="r * (in + out) per targeted projection per layer; k_proj and v_proj have "
                       "num_key_value_heads * head_dim outputs, and head_dim may be given in the config.")


def verify_outputs(ctx: Context) -> None:
    """The criteria about what the notebook saved: metrics, the adapter, the sweep, and whether they agree."""
    outputs = ctx.outputs()
    saved = ctx.collect("metrics were saved and are valid numbers", lambda: read_lora_metrics(outputs),
                        hint="Run section 7 (it writes metrics.json) and keep its keys.")
    measured = ctx.collect("the saved adapter is a LoRA adapter that reloads on the unmodified base",
                           lambda: reload_adapter(outputs),
                           hint="Section 3 saves it with trainer.save_model on the PEFT model; train it on the "
                                "profile's base model and do not move or edit the files.")
    if measured:
        try:
            figures = ctx.measure([outputs / "adapter"], lambda: measure_model(
                measured["model"], measured["tokenizer"], measured["profile"]))
            measured.update(accuracy=figures["heldout"], fresh=figures["fresh"])
        except Exception as error:  # reported by the threshold criterion below
            measured["error"] = f"{type(error).__name__}: {error}"
    thresholds = THRESHOLDS[ctx.profile.name]  # the checker's own profile: never one a notebook wrote down
    shown = ", ".join(f"{task} {value:.0%}" for task, value in thresholds.items())
    ctx.criterion(f"held-out accuracy of the adapter, recomputed by the checker, reaches {shown}",
                  lambda: check_thresholds(accuracy_of(measured), thresholds),
                  hint="Train with the profile's settings on all three tasks; if one task lags, read its answers "
                       "side by side (section 3).")
    ctx.criterion("not trained on the held-out split (new questions at check time)",
                  lambda: check_not_trained_on_heldout(measured.get("accuracy", {}), measured.get("fresh", {})),
                  hint=FRESH_HINT)
    ctx.criterion("saved figures agree with the adapter", lambda: check_figures(saved, measured, outputs),
                  hint="metrics.json must hold what the notebook measured, for the adapter it saved: no hand edits.")
    ctx.criterion("the sweep's results are complete and consistent", lambda: check_sweep(outputs),
                  hint="Run section 5 unchanged (it writes sweep.json): both target sets, several ranks and "
                       "alphas, and the counts and memory run_sweep measured.")
    ctx.criterion(f"the sweep's accuracies, measured again on {SWEEP_SPOT_CHECKS} of its saved adapters, agree",
                  lambda: check_sweep_accuracy(ctx, outputs),
                  hint="Run section 5 unchanged (it writes sweep.json): both target sets, several ranks and "
                       "alphas, and the counts and memory run_sweep measured.")


# -- graded functions --------------------------------------------------------------------------------
def check_lora_forward(lora_forward) -> str:
    import torch

    from shared.training.lora import peft_lora_linear

    generator = torch.Generator().manual_seed(3)
    for batch, n_in, n_out, r, alpha, with_bias, scale in FORWARD_CASES:
        def draw(*shape):
            return scale * torch.randn(*shape, generator=generator)

        weight, lora_A, lora_B = draw(n_out, n_in), draw(r, n_in), draw(n_out, r)
        bias = draw(n_out) if with_bias else None
        x = draw(*batch, n_in)
        with torch.no_grad():
            expected = peft_lora_linear(weight, lora_A, lora_B, alpha, bias=bias)(x)
            got = lora_forward(x.clone(), weight.clone(), None if bias is None else bias.clone(), lora_A.clone(),
                               lora_B.clone(), alpha, r)
        case = (f"x {tuple(x.shape)}, weight {tuple(weight.shape)}, r={r}, alpha={alpha:g}, "
                f"{'with' if with_bias else 'no'} bias")
        require(isinstance(got, torch.Tensor), f"must return a tensor, returned {type(got).__name__} ({case})")
        require(tuple(got.shape) == tuple(expected.shape),
                f"output shape {tuple(got.shape)}, PEFT's {tuple(expected.shape)} ({case})")
        difference = (got.detach().float() - expected).abs().max().item()
        allowed = FORWARD_TOLERANCE * (1 + expected.abs().max().item())
        require(math.isfinite(difference) and difference <= allowed,
                f"differs from PEFT by up to {difference:.3g} (allowed {allowed:.1g}) for {case}")
    return f"{len(FORWARD_CASES)} unseen cases, within {FORWARD_TOLERANCE:g} x (1 + max |output|)"


def check_count(count_lora_parameters) -> str:
    from transformers import LlamaConfig

    from shared.training.lora import peft_trainable_count

    for sizes, r, targets in COUNT_CASES:
        config = LlamaConfig(vocab_size=64, **sizes)
        expected = peft_trainable_count(config, r, targets)
        got = count_lora_parameters(LlamaConfig(vocab_size=64, **sizes), r, list(targets))
        case = ", ".join(f"{k}={v}" for k, v in sizes.items()) + f"; r={r}, targets {targets}"
        require(isinstance(got, int) or (hasattr(got, "item") and float(got).is_integer()),
                f"must return an int, returned {got!r}")
        require(int(got) == expected, f"counted {int(got)}, PEFT counts {expected} ({case})")
    return f"{len(COUNT_CASES)} unseen configs, grouped-query attention among them"


# -- what the notebook saved -------------------------------------------------------------------------
def _profile():
    from shared.profiles import get_profile

    return get_profile(announce=False)


def read_lora_metrics(outputs: Path) -> dict:
    metrics = read_metrics(outputs)
    for key in ("lora", "trainable_parameters", "memory_bytes"):
        require(key in metrics, f"metrics.json has no {key!r}: keep the keys section 7 writes")
    require(isinstance(metrics["trainable_parameters"], int) and metrics["trainable_parameters"] > 0,
            f"metrics.json trainable_parameters is {metrics['trainable_parameters']!r}, not a positive count")
    memory = metrics["memory_bytes"]
    require(isinstance(memory, dict) and all(isinstance(memory.get(k), dict) for k in ("lora", "full")),
            "metrics.json memory_bytes needs 'lora' and 'full' parts")
    for run, parts in memory.items():
        for part, value in parts.items():
            require(isinstance(value, int) and value >= 0, f"metrics.json memory_bytes[{run!r}][{part!r}] is "
                                                           f"{value!r}, not a number of bytes")
    if metrics.get("full_sft") is not None:
        require(isinstance(metrics["full_sft"], dict), "metrics.json full_sft must be figures per task or null")
        for task, value in metrics["full_sft"].items():
            finite_fraction(value, f"metrics.json full_sft[{task!r}]")
    return metrics


def reload_adapter(outputs: Path) -> dict:
    """Open the adapter, check it is LoRA and nothing else, put it on a fresh base, and measure what it trains."""
    from shared.checking.artefacts import load_saved_adapter
    from shared.models import load_tokenizer
    from shared.training.memory import training_state_bytes

    profile = _profile()
    adapter = load_saved_adapter(outputs / "adapter", profile, profile.base_model)
    model = adapter["model"]
    return {"model": model, "tokenizer": load_tokenizer(profile=profile), "profile": profile,
            "config": adapter["config"], "trainable_parameters": int(model.get_nb_trainable_parameters()[0]),
            "memory": training_state_bytes(model), "full_memory": training_state_bytes(adapter["base"])}


def accuracy_of(measured: dict) -> dict:
    require("error" not in measured, f"the adapter could not be evaluated: {measured.get('error')}")
    require("accuracy" in measured, "no accuracy could be measured (see the failure above)")
    return measured["accuracy"]


def _close(saved: int, recomputed: int) -> bool:
    return abs(saved - recomputed) <= MEMORY_TOLERANCE * max(1, recomputed)


def check_figures(saved: dict, measured: dict, outputs: Path) -> str:
    from shared.training.runs import full_sft_point

    require(bool(saved) and "accuracy" in measured, "needs both the saved figures and the recomputed ones "
                                                    "(see above)")
    # Rung 02's figures come from its metrics.json beside this rung's outputs; the checker's fresh folder has
    # none, so there the notebook must say so (null), never supply numbers of its own.
    rung_02 = full_sft_point(measured["profile"], outputs.parent / "02-sft" / "metrics.json")
    require(saved.get("full_sft") == rung_02,
            f"metrics.json full_sft is {saved.get('full_sft')!r}, but rung 02's saved figures here are "
            f"{rung_02 if rung_02 is not None else 'absent (null expected)'}: read them with lora.full_sft_point, "
            "never type them in")
    agreement = check_agreement(saved, measured["accuracy"])
    require(saved["trainable_parameters"] == measured["trainable_parameters"],
            f"metrics.json says {saved['trainable_parameters']} trainable parameters, the adapter has "
            f"{measured['trainable_parameters']}")
    lora = saved["lora"] if isinstance(saved["lora"], dict) else {}
    config = measured["config"]
    saved_targets = lora.get("targets")
    if isinstance(saved_targets, str):
        from shared.training.lora import TARGETS

        saved_targets = list(TARGETS.get(saved_targets, [saved_targets]))
    require(lora.get("r") == config["r"] and lora.get("alpha") == config["alpha"]
            and sorted(saved_targets or []) == config["targets"],
            f"metrics.json lora {lora!r} does not describe the saved adapter (r={config['r']}, "
            f"alpha={config['alpha']:g}, targets {config['targets']})")
    for run, recomputed in (("lora", measured["memory"]), ("full", measured["full_memory"])):
        figure = saved["memory_bytes"][run].get("total")
        require(isinstance(figure, int) and _close(figure, recomputed["total"]),
                f"metrics.json memory_bytes[{run!r}] total is {figure!r}; recomputed: {recomputed['total']} bytes")
    return f"accuracy {agreement}; {measured['trainable_parameters']} trainable parameters; memory"


def check_sweep(outputs: Path) -> str:
    """sweep.json: finite accuracies, both target sets, several ranks and alphas, counts and memory recomputed."""
    from peft import get_peft_model

    from shared.numbers import is_fraction
    from shared.training.lora import TARGETS, lora_config, mean_accuracy, peft_trainable_count
    from shared.training.memory import training_state_bytes
    from shared.models import load_model

    runs = read_json(outputs / "sweep.json", "the sweep")
    require(isinstance(runs, list) and len(runs) >= 4, "sweep.json should hold a list of at least 4 runs")
    profile = _profile()
    base_config = load_model(profile=profile).config
    memory_cache: dict = {}
    for run in runs:
        require(isinstance(run, dict), "each run in sweep.json must be an object")
        label = run.get("name", run)
        r, alpha, targets = run.get("r"), run.get("alpha"), run.get("targets")
        require(isinstance(r, int) and r > 0 and isinstance(alpha, (int, float)) and math.isfinite(alpha)
                and alpha > 0 and targets in TARGETS, f"run {label}: r, alpha or targets missing or invalid")
        accuracy = run.get("accuracy")
        require(isinstance(accuracy, dict) and accuracy and all(is_fraction(v) for v in accuracy.values()),
                f"run {label}: accuracy {accuracy!r} is not a fraction per task")
        mean = run.get("mean_accuracy")
        require(is_fraction(mean) and abs(mean - mean_accuracy(accuracy)) <= 1e-3,
                f"run {label}: mean_accuracy {mean!r} is not the mean of its accuracies")
        expected = peft_trainable_count(base_config, r, targets)
        require(run.get("trainable_parameters") == expected,
                f"run {label}: {run.get('trainable_parameters')!r} trainable parameters saved, PEFT counts {expected}")
        key = (r, targets)
        if key not in memory_cache:
            adapted = get_peft_model(load_model(profile=profile), lora_config(r, alpha, targets))
            memory_cache[key] = training_state_bytes(adapted)["total"]
            del adapted  # one model at a time (on a GPU, too)
        figure = run.get("memory_bytes")
        require(isinstance(figure, int) and _close(figure, memory_cache[key]),
                f"run {label}: memory_bytes {figure!r}, recomputed {memory_cache[key]}")
    require({run["targets"] for run in runs} == set(TARGETS), f"the sweep should cover both target sets "
                                                              f"({', '.join(TARGETS)})")
    require(len({run["r"] for run in runs}) >= 2, "the sweep should try at least two ranks")
    require(len({run["alpha"] / run["r"] for run in runs}) >= 2, "the sweep should try at least two alpha / r")
    return f"{len(runs)} runs; trainable parameters and memory recomputed"


def check_sweep_accuracy(ctx: Context, outputs: Path) -> str:
    """Reload some of the sweep's adapters (chosen from the check seed) and score them as run_sweep did."""
    import random

    from shared.checking.artefacts import load_saved_adapter
    from shared.checking.figures import check_seed
    from shared.evaluation import evals
    from shared.models import load_tokenizer
    from shared.training.lora import sweep_folder

    runs = read_json(outputs / "sweep.json", "the sweep")
    require(isinstance(runs, list) and runs and all(isinstance(run, dict) for run in runs),
            "sweep.json should hold a list of runs")
    profile = _profile()
    limit = profile.train("lora_sweep")["eval_examples_per_task"]
    tokenizer = load_tokenizer(profile=profile)
    checked = []
    for run in random.Random(check_seed()).sample(runs, min(SWEEP_SPOT_CHECKS, len(runs))):
        try:
            folder = outputs / "sweep" / sweep_folder(run)
        except (KeyError, TypeError, ValueError):
            raise CheckFailed(f"run {run.get('name', run)}: r, alpha or targets missing") from None
        require(folder.is_dir(), f"run {run.get('name')}: no saved adapter ({folder.relative_to(outputs)}/): run "
                                 "section 5 unchanged (run_sweep saves each adapter)")
        adapter = load_saved_adapter(folder, profile, profile.base_model)
        require(adapter["config"] == {"r": run["r"], "alpha": run["alpha"], "targets": sorted(TARGET_SETS[run["targets"]])},
                f"run {run['name']}: the saved adapter is {adapter['config']}, not what sweep.json says")
        measured = ctx.measure([folder], lambda: evals.accuracies(
            evals.evaluate_model(adapter["model"], tokenizer, split="heldout", limit=limit)))
        allowed = 1 / limit + 1e-9  # one answer in the subset
        for task, value in measured.items():
            saved = run.get("accuracy", {}).get(task)
            require(isinstance(saved, (int, float)) and abs(saved - value) <= allowed,
                    f"run {run['name']}: sweep.json says {task} {saved!r}, its adapter scores {value:.1%}")
        checked.append(run["name"])
    return f"{'; '.join(checked)}: within one answer per task"


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG))
