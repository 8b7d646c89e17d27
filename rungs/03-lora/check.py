"""Checker for rung 03 (LoRA): `make check RUNG=03 [NOTEBOOK=path]`.

It runs a copy of the notebook, then verifies rather than trusts:
* the learner's `lora_forward` is compared with PEFT's own LoRA `Linear` on shapes, ranks, alphas and values the
  notebook never shows; `count_lora_parameters` with PEFT's own count on model configs the notebook never shows;
* `add_lora_adapter` is given small random Llama models of configurations the notebook never shows (grouped-query
  attention, biases, a given head_dim, rsLoRA) and must return the adapter the course's `lora_config` would build:
  a causal-LM PeftModel whose only trainable tensors are lora_A (r, in) and lora_B (out, r) of the named modules
  in every layer, B zero, every base weight frozen and unchanged, the update scaled by alpha / r (alpha / sqrt(r)
  with rsLoRA) -- measured on the layers' own forward pass, not read from a config;
* `merge_adapter` is given a PEFT model built here with a non-zero B and must return a plain transformers model with
  no LoRA module left whose logits are the adapter model's (and whose weights are W + scale * B A);
* the saved adapter is opened and reloaded on a fresh, unmodified base model: it must be a LoRA adapter (only A
  and B matrices, base weights untouched), and its held-out accuracy is measured here with the course's metric;
* the saved figures (accuracy, trainable parameters, memory) and the sweep's results are recomputed and compared.

How a model crosses into the graded functions' process and back: graded functions run in a child process and
their arguments and return values are pickled (``shared.checking.sandbox``). A PEFT model pickles whole -- its
classes by name, its tensors by value, each parameter with its ``requires_grad`` -- so the checker sends a model
it built and gets back the model object itself, rebuilt here from the library classes this process imports. Every
criterion is then measured on that object in the checker's own process (which tensors require a gradient, their
shapes and values, the layers' forward pass, the logits); nothing is taken from a summary the learner's code
computed. A returned object of a class defined in the notebook cannot be rebuilt here, and fails.
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
# tiny -- measured with the solution (r=16, alpha=32, all linear layers, the "lora" stage): closed QA 98%,
#         extraction 80%, arithmetic 99%; full SFT in rung 02 reaches 96%, 95%, 96%. Extraction is held lower: an
#         adapter copies a stranger's name less surely (80-92% over training seeds; see the rung's README).
# gpu  -- first estimates, not yet measured for LoRA (rung 04's policy). A hub model never read the tiny world, so
#         it cannot answer closed-QA questions about its people: no threshold. Extraction and word problems are
#         skills a fine-tuned SmolLM2-360M can learn from the training split; 60% each is rung 02's gpu target.
THRESHOLDS = {
    "tiny": {"closed_qa": 0.90, "extraction": 0.60, "arithmetic": 0.90},
    "gpu": {"extraction": 0.60, "arithmetic": 0.60},
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

_ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# add_lora_adapter: (Llama config the notebook does not show, r, alpha, target modules, rsLoRA).
ADAPTER_CASES = [
    (dict(hidden_size=96, intermediate_size=200, num_attention_heads=6, num_key_value_heads=2,
          num_hidden_layers=3), 4, 8, ["q_proj", "k_proj", "v_proj"], False),          # grouped-query attention
    (dict(hidden_size=64, intermediate_size=160, num_attention_heads=4, num_key_value_heads=1, head_dim=24,
          num_hidden_layers=2, attention_bias=True, mlp_bias=True), 8, 4, list(_ALL), False),  # biases to leave
    (dict(hidden_size=80, intermediate_size=144, num_attention_heads=5, num_key_value_heads=5,
          num_hidden_layers=2), 9, 6, ["o_proj", "down_proj"], True),                  # rsLoRA: 6 / 3, not 6 / 9
    (dict(hidden_size=48, intermediate_size=112, num_attention_heads=4, num_key_value_heads=2,
          num_hidden_layers=4, tie_word_embeddings=True), 1, 3.5, ["gate_proj", "up_proj"], False),
]
# merge_adapter: (Llama config, r, alpha, target modules, rsLoRA), each adapter built here with B drawn at random.
MERGE_CASES = [
    (dict(hidden_size=64, intermediate_size=144, num_attention_heads=8, num_key_value_heads=2,
          num_hidden_layers=2, attention_bias=True), 4, 12, list(_ALL), False),
    (dict(hidden_size=72, intermediate_size=128, num_attention_heads=6, num_key_value_heads=3,
          num_hidden_layers=3), 6, 6, ["q_proj", "v_proj", "down_proj"], True),
]
MERGE_TOLERANCE = 1e-4  # float32: |merged - adapter logits| <= MERGE_TOLERANCE * (1 + max |adapter logits|)
ADAPTER_TOLERANCE = 1e-5  # a LoRA layer's output against W x + b + scale * B A x, relative to its largest value

# The references each graded function is checked against, which it may therefore not call.
_PEFT = Forbidden("it is yours to write; PEFT is what it is checked against", modules=("peft", "shared.training.lora"))
# add_lora_adapter and merge_adapter are written with PEFT itself; the course's adapter builders (lora_config, the
# trainers that wrap a model given a peft_config) are what the checker compares with.
_COURSE_HELPERS = "the course's own adapter helpers are what it is checked against"
_COURSE_MODULES = ("shared.training", "trl")
FORBIDDEN = {"lora_forward": _PEFT, "count_lora_parameters": _PEFT,
             "add_lora_adapter": Forbidden(f"it is yours to write with PEFT's LoraConfig and get_peft_model; "
                                           f"{_COURSE_HELPERS}", modules=_COURSE_MODULES),
             "merge_adapter": Forbidden(f"it is yours to write with PEFT's merge_and_unload; {_COURSE_HELPERS}",
                                        modules=_COURSE_MODULES)}


def check(ctx: Context) -> None:
    ctx.run_notebook()
    check_graded(ctx)
    ctx.from_the_run(verify_outputs)  # what the notebook saved: checked once it ran to the end
    ctx.review("written answer: rank, alpha and target modules", ctx.answers().get("rank-alpha-targets"),
               hint="Write a few sentences of your own in section 8.")


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
    ctx.criterion("add_lora_adapter builds the LoRA adapter asked for on unseen models",
                  lambda: check_add_adapter(graded["add_lora_adapter"]),
                  hint="Section 3's list says what each LoraConfig setting does: build one from the function's "
                       "arguments, with the settings it names for the course's adapters, and wrap the model with "
                       "get_peft_model. The line above names the setting that differs.")
    ctx.criterion("merge_adapter returns a plain model that computes what the adapter model does",
                  lambda: check_merge(graded["merge_adapter"]),
                  hint="PEFT's merge_and_unload folds (alpha / r) B A into each weight and returns the base model "
                       "without LoRA layers; re-read section 5.")


def verify_outputs(ctx: Context) -> None:
    """The criteria about what the notebook saved: metrics, the adapter, the sweep, and whether they agree."""
    outputs = ctx.outputs()
    saved = ctx.collect("metrics were saved and are valid numbers", lambda: read_lora_metrics(outputs),
                        hint="Run section 9 (it writes metrics.json) and keep its keys.")
    measured = ctx.collect("the saved adapter is a LoRA adapter that reloads on the unmodified base",
                           lambda: reload_adapter(outputs),
                           hint="Section 4 saves it with trainer.save_model on the PEFT model; train it on the "
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
                       "side by side (section 4).")
    ctx.criterion("not trained on the held-out split (new questions at check time)",
                  lambda: check_not_trained_on_heldout(measured.get("accuracy", {}), measured.get("fresh", {})),
                  hint=FRESH_HINT)
    ctx.criterion("saved figures agree with the adapter", lambda: check_figures(saved, measured, outputs),
                  hint="metrics.json must hold what the notebook measured, for the adapter it saved: no hand edits.")
    ctx.criterion("the sweep's results are complete and consistent", lambda: check_sweep(outputs),
                  hint="Run section 7 unchanged (it writes sweep.json): both target sets, several ranks and "
                       "alphas, and the counts and memory run_sweep measured.")
    ctx.criterion(f"the sweep's accuracies, measured again on {SWEEP_SPOT_CHECKS} of its saved adapters, agree",
                  lambda: check_sweep_accuracy(ctx, outputs),
                  hint="Run section 7 unchanged (it writes sweep.json): both target sets, several ranks and "
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


def _random_llama(sizes: dict, seed: int):
    """A small Llama model with random weights drawn from `seed` (the caller's random state is left alone)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(LlamaConfig(vocab_size=64, **sizes)).eval()


def _token_ids(seed: int):
    import torch

    return torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(seed))


def _case(sizes: dict, r: int, alpha: float, targets: list[str], rslora: bool) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in sizes.items())
    return f"{shown}; r={r}, alpha={alpha:g}, targets {targets}" + (", use_rslora=True" if rslora else "")


def _largest_gap(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


def check_add_adapter(add_lora_adapter) -> str:
    """The returned model, measured here: what trains, its shapes and values, and each LoRA layer's forward."""
    import re

    import torch
    from peft import PeftModel, PeftModelForCausalLM
    from peft.tuners.lora import LoraLayer

    for index, (sizes, r, alpha, targets, rslora) in enumerate(ADAPTER_CASES):
        case = _case(sizes, r, alpha, targets, rslora)
        base = _random_llama(sizes, seed=100 + index)
        named = {name: (module.in_features, module.out_features) for name, module in base.named_modules()
                 if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets}
        expected = {}
        for name, (n_in, n_out) in named.items():
            expected[f"{name}.lora_A"], expected[f"{name}.lora_B"] = (r, n_in), (n_out, r)
        weights = {name: parameter.detach().clone() for name, parameter in base.named_parameters()}
        ids = _token_ids(200 + index)
        with torch.no_grad():
            base_logits = base(ids).logits
        got = add_lora_adapter(base, r, alpha, list(targets), **({"use_rslora": True} if rslora else {}))

        require(isinstance(got, PeftModel), f"must return the PeftModel that get_peft_model returns, returned "
                                            f"{type(got).__name__} ({case})")
        require(isinstance(got, PeftModelForCausalLM), f"returned a {type(got).__name__}: an adapter for a causal "
                                                       f"LM (task_type='CAUSAL_LM') is a PeftModelForCausalLM ({case})")
        trainable, not_asked, others = {}, set(), []
        for name, parameter in got.named_parameters():
            if not parameter.requires_grad:
                continue
            match = re.fullmatch(r"base_model\.model\.(.+)\.(lora_[AB])\.[^.]+\.weight", name)
            if match and match.group(1) in named:
                trainable.setdefault(f"{match.group(1)}.{match.group(2)}", []).append(tuple(parameter.shape))
            elif match:
                not_asked.add(match.group(1).rsplit(".", 1)[-1])
            else:
                others.append(name)
        require(not not_asked, f"LoRA adapters on {', '.join(sorted(not_asked))}, which were not asked for: "
                               f"target_modules names the layers that get one, here {', '.join(targets)} ({case})")
        example = others[0] if others else ""
        require(not others, f"{len(others)} tensor(s) train besides the LoRA matrices, e.g. {example}: only lora_A "
                            f"and lora_B of the named modules may train -- no bias, no modules_to_save, no DoRA "
                            f"({case})")
        missing = sorted(set(expected) - set(trainable))
        require(not missing, f"{len(missing)} of the {len(expected)} LoRA matrices expected do not train, e.g. "
                             f"{missing[0] if missing else ''}: every named module of every layer gets one A and one "
                             f"B ({case})")
        for key, shapes in trainable.items():
            require(len(shapes) == 1, f"{key}: {len(shapes)} trainable adapters on one layer, expected one ({case})")
            require(shapes[0] == expected[key], f"{key} has shape {shapes[0]}, expected {expected[key]} "
                                                f"({'(r, in)' if key.endswith('A') else '(out, r)'}; {case})")
        for name, parameter in got.named_parameters():
            if parameter.requires_grad:
                continue
            plain = name.removeprefix("base_model.model.").replace(".base_layer", "")
            require(plain in weights, f"{name} is neither a base weight nor a trainable LoRA matrix ({case})")
            require(torch.equal(parameter.detach(), weights[plain]), f"base weight {plain} was changed ({case})")
        b_max = max(p.abs().max().item() for n, p in got.named_parameters() if ".lora_B." in n)
        require(b_max == 0, f"B is not zero (largest |B| {b_max:.3g}): it must start at zero, so that the adapted "
                            f"model starts as the base model ({case})")
        got.eval()
        with torch.no_grad():
            gap = _largest_gap(got(ids).logits, base_logits)
        require(gap <= ADAPTER_TOLERANCE * (1 + base_logits.abs().max().item()),
                f"with B at zero the adapted model should give the base model's logits; they differ by {gap:.3g} "
                f"({case})")
        scale, rule = (alpha / math.sqrt(r), "alpha / sqrt(r)") if rslora else (alpha / r, "alpha / r")
        for name in named:
            layer = got.get_submodule(f"base_model.model.{name}")
            require(isinstance(layer, LoraLayer), f"{name} is a {type(layer).__name__}, not one of PEFT's LoRA "
                                                  f"layers ({case})")
            active = list(layer.active_adapters)
            require(len(active) == 1, f"{name}: {len(active)} active adapters, expected one ({case})")
            adapter = active[0]
            dropout = layer.lora_dropout[adapter]
            require(isinstance(dropout, torch.nn.Identity),
                    f"{name}: lora_dropout is {dropout}; the course's adapters use none (lora_dropout=0.0) ({case})")
            measured = _measured_scale(layer, adapter, seed=300 + index)
            require(abs(measured - scale) <= 1e-4 * scale,
                    f"{name}: the update B A x is scaled by {measured:.4g}; {rule} = {scale:.4g} expected ({case})")
    return (f"{len(ADAPTER_CASES)} unseen models (grouped-query attention, biases, rsLoRA): a causal-LM PeftModel, "
            "only A (r, in) and B (out, r) train, B zero, base frozen, scale alpha / r or alpha / sqrt(r)")


def _measured_scale(layer, adapter: str, seed: int) -> float:
    """The factor the layer's own forward puts on B A x, with B given random values here (training mode)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    lora_A, lora_B = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
    x = torch.randn(3, lora_A.shape[1], generator=generator)
    with torch.no_grad():
        lora_B.copy_(torch.randn(lora_B.shape, generator=generator))
        layer.train()
        update = (x @ lora_A.T) @ lora_B.T
        change = layer(x) - layer.get_base_layer()(x)
        layer.eval()
    factor = float((change * update).sum() / (update * update).sum())
    require(_largest_gap(change, factor * update) <= ADAPTER_TOLERANCE * (1 + change.abs().max().item()),
            "a LoRA layer's output is not its frozen layer's plus a multiple of B A x")
    return factor


def check_merge(merge_adapter) -> str:
    """An adapter built here with B drawn at random: the merged model must compute what the adapter model does."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from peft.tuners.lora import LoraLayer
    from transformers import LlamaForCausalLM

    for index, (sizes, r, alpha, targets, rslora) in enumerate(MERGE_CASES):
        case = _case(sizes, r, alpha, targets, rslora)
        base = _random_llama(sizes, seed=400 + index)
        names = sorted(name for name, _ in base.named_parameters())
        config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0, bias="none",
                            use_rslora=rslora, task_type="CAUSAL_LM")
        with torch.random.fork_rng():
            torch.manual_seed(500 + index)
            adapted = get_peft_model(base, config)
            for name, parameter in adapted.named_parameters():
                if ".lora_B." in name:
                    torch.nn.init.normal_(parameter, std=0.2)
        adapted.eval()
        scale = alpha / math.sqrt(r) if rslora else alpha / r
        merged_weights = {}
        for name, layer in adapted.named_modules():
            if isinstance(layer, LoraLayer):
                update = layer.lora_B["default"].weight @ layer.lora_A["default"].weight
                plain = name.removeprefix("base_model.model.") + ".weight"
                merged_weights[plain] = (layer.get_base_layer().weight + scale * update).detach().clone()
        ids = _token_ids(600 + index)
        with torch.no_grad():
            expected = adapted(ids).logits
            with adapted.disable_adapter():
                without = adapted(ids).logits
        allowed = MERGE_TOLERANCE * (1 + expected.abs().max().item())
        assert _largest_gap(expected, without) > 100 * allowed  # the checker's own case: the adapter must matter

        got = merge_adapter(adapted)
        require(not isinstance(got, PeftModel), "returned a PeftModel: merging folds the update into the weights "
                                                f"and returns the plain model inside (merge_and_unload) ({case})")
        require(isinstance(got, LlamaForCausalLM), f"returned a {type(got).__name__}, not the base model's own class "
                                                   f"(LlamaForCausalLM here) ({case})")
        layers = [name for name, module in got.named_modules() if isinstance(module, LoraLayer)]
        require(not layers, f"{len(layers)} LoRA layer(s) left in the merged model, e.g. {layers[0] if layers else ''}"
                            f": merging folds each into its weight and takes it out ({case})")
        left = [name for name, _ in got.named_modules() if "lora_" in name or name.endswith("base_layer")]
        require(not left, f"{len(left)} LoRA part(s) left in the merged model, e.g. {left[0] if left else ''}: "
                          f"merging takes them out ({case})")
        got_names = sorted(name for name, _ in got.named_parameters())
        require(got_names == names, f"the merged model's parameters are not the base model's (e.g. "
                                    f"{sorted(set(got_names) ^ set(names))[:1]}) ({case})")
        got.eval()
        with torch.no_grad():
            logits = got(ids).logits
        gap = _largest_gap(logits, expected)
        require(not _largest_gap(logits, without) <= allowed,
                f"gives the base model's logits, not the adapter model's: the adapter's update was dropped "
                f"(unload removes an adapter, merge_and_unload keeps its change) ({case})")
        require(gap <= allowed, f"logits differ from the adapter model's by up to {gap:.3g} (allowed {allowed:.1g}) "
                                f"({case})")
        for name, weight in merged_weights.items():
            gap = _largest_gap(got.get_parameter(name).detach(), weight)
            require(gap <= ADAPTER_TOLERANCE * (1 + weight.abs().max().item()),
                    f"{name} is not W + scale * B A (differs by {gap:.3g}) ({case})")
    return (f"{len(MERGE_CASES)} adapters built here with B non-zero (rsLoRA among them): a plain LlamaForCausalLM, "
            "no LoRA modules, the adapter model's logits, W + scale * B A in every adapted layer")


# -- what the notebook saved -------------------------------------------------------------------------
def _profile():
    from shared.profiles import get_profile

    return get_profile(announce=False)


def read_lora_metrics(outputs: Path) -> dict:
    metrics = read_metrics(outputs)
    for key in ("lora", "trainable_parameters", "memory_bytes"):
        require(key in metrics, f"metrics.json has no {key!r}: keep the keys section 9 writes")
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
    from shared.training.lora import TARGETS, sweep_folder

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
                                 "section 7 unchanged (run_sweep saves each adapter)")
        adapter = load_saved_adapter(folder, profile, profile.base_model)
        described = {"r": run["r"], "alpha": run["alpha"], "targets": sorted(TARGETS[run["targets"]])}
        require(adapter["config"] == described,
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
