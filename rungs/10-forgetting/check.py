"""Checker for rung 10 (catastrophic forgetting): `make check RUNG=10 [NOTEBOOK=path]`.

It runs a copy of the notebook, then verifies rather than trusts:
* the learner's `replay_mixture`, `fisher_diagonal` and `ewc_penalty` are tested on lists, models and examples
  the notebook never uses, against the course's references (the penalty's gradient included);
* the SFT model, the unmitigated fine-tune and the learner's remedy are reloaded and measured here on every
  held-out question (and the new task on problems made now); the remedy must win back at least half of what the
  unmitigated fine-tune lost of the old tasks, its new-task accuracy within 5 points of the unmitigated one's;
* the unmitigated fine-tune is the one the bar is measured against, so the checker trains its own (the profile's
  recipe, from the same start) and the learner's must agree with it: a run made to forget more, or to learn less
  of the new task, would lower the bar.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere, even before `pip install -e`

from shared.checking import (CheckFailed, Context, inside, main, read_json, refusal, require,  # noqa: E402
                             require_measured)
from shared.checking.figures import AGREEMENT, check_seed  # noqa: E402
from shared.checking.guards import Forbidden  # noqa: E402
from shared.checking.sandbox import value_and_gradients, want_parameter_gradients  # noqa: E402
from shared.numbers import is_finite_number, is_fraction  # noqa: E402

RUNG = "10"
# The rung's bars, the same on every profile: the remedy wins back RECOVERY of the old tasks' loss (B, measured
# here on every held-out question and every person's facts) while its new-task accuracy (A) stays within A_GAP of
# the unmitigated fine-tune's. Measured (tiny profile, the solution's replay at 0.75, this checker): B recovered
# 70 / 68 / 73% at training seeds 0 / 1 / 2, A 0.0 / -1.0 / +0.7 points from the unmitigated run's, which lost
# 34 / 27 / 28 points of B (rungs/10-forgetting/README.md). Seed 0 on a second CPU: 74% recovered, A -0.2 points.
RECOVERY = 0.5
A_GAP = 0.05
# Below this loss of B there is nothing to recover: the "unmitigated" model did not forget (or is not one).
MIN_FORGETTING = 0.15
# New two-step problems (FT_CHECK_SEED) against the held-out ones: a remedy trained on the held-out problems
# scores far above new ones (rung 07's checker uses the same test). A for the A_GAP bar is measured on the 100
# held-out problems and these together: on 100 alone two models that solve the same share differ by a few points
# by chance (the solution's replay at seed 1: 93% of the held-out problems, 95% of 300 new ones).
FRESH_GAP = 0.10
FRESH_PROBLEMS = 300
# The checker's own unmitigated run against the learner's: the same recipe, seed and start give the same model on
# one machine (0 points apart at seeds 0/1/2); other machines and GPU kernels round differently. Another recipe
# is further off: the sweep's mildest remedy, replay at 0.1, keeps 14 points more of B (seed 0, 50 questions).
REPRODUCED = 0.04

FORBIDDEN = {
    "replay_mixture": Forbidden("the mixture is yours to write; the course's is what it is checked against",
                                functions=("shared.training.forgetting.replay_mixture",)),
    "fisher_diagonal": Forbidden("the Fisher estimate is yours to write; the course's is what it is checked "
                                 "against", functions=("shared.training.forgetting.fisher_diagonal",)),
    "ewc_penalty": Forbidden("the penalty is yours to write; the course's is what it is checked against",
                             functions=("shared.training.forgetting.ewc_penalty",)),
}


def check(ctx: Context) -> None:
    ctx.run_notebook()
    check_graded(ctx)
    ctx.from_the_run(verify_outputs)
    answers = ctx.answers()
    ctx.review("written answer: the remedy you chose", answers.get("my-remedy"),
               hint="Write a few sentences of your own in section 7.")
    ctx.review("written answer: which old task each remedy kept", answers.get("which-task"),
               hint="Write a few sentences of your own in section 7, from section 5's table.")


def check_graded(ctx: Context) -> None:
    graded = ctx.graded(list(FORBIDDEN), forbidden=FORBIDDEN)
    ctx.criterion("replay_mixture keeps every new example and draws the old ones asked for, on unseen lists",
                  lambda: check_replay(graded["replay_mixture"]),
                  hint="Every new example once and round(fraction * len(new)) old ones drawn without replacement, "
                       "all shuffled, one random.Random(seed) for the draw and the shuffle; ValueError for a fraction "
                       "below 0 or more old examples than there are.")
    ctx.criterion("fisher_diagonal estimates the diagonal empirical Fisher, on an unseen model and examples",
                  lambda: check_fisher(graded["fisher_diagonal"]),
                  hint="For each example: zero_grad, answer_loss(...).backward(), add grad ** 2 per trainable "
                       "parameter; divide by the number of examples; eval mode while measuring, then as it was.")
    ctx.criterion("ewc_penalty computes sum F (theta - anchor)^2 with its gradient, on unseen cases",
                  lambda: check_penalty(graded["ewc_penalty"]),
                  hint="Sum over the parameters named in fisher of (fisher[name] * (p - anchor[name]) ** 2).sum(); "
                       "keep it a tensor attached to the weights (no .item(), no .detach()).")


# -- the graded functions ------------------------------------------------------------------------------------
def check_replay(replay_mixture) -> str:
    new = [{"id": f"new-{i}", "task": "two_step"} for i in range(37)]
    old = [{"id": f"old-{i}", "task": "closed_qa"} for i in range(90)]
    for fraction, seed in ((0.3, 5), (1.0, 0), (0.0, 2), (2.4, 11)):
        mixture = replay_mixture(list(new), list(old), fraction, seed)
        require(isinstance(mixture, list), f"must return a list, returned {type(mixture).__name__}")
        ids = [e["id"] for e in mixture]
        kept = [i for i in ids if i.startswith("new-")]
        drawn = [i for i in ids if i.startswith("old-")]
        require(sorted(kept) == sorted(e["id"] for e in new),
                f"fraction {fraction}: every new example must be there once ({len(kept)} of {len(new)} found)")
        require(len(drawn) == round(fraction * len(new)),
                f"fraction {fraction} of {len(new)} new examples: {len(drawn)} old ones, expected "
                f"{round(fraction * len(new))}")
        require(len(set(drawn)) == len(drawn), f"fraction {fraction}: an old example drawn twice (draw without "
                                               "replacement: rng.sample)")
        again = [e["id"] for e in replay_mixture(list(new), list(old), fraction, seed)]
        require(again == ids, f"fraction {fraction}, seed {seed}: a second call gave another order: use "
                              "random.Random(seed) for the draw and the shuffle")
        if fraction > 0:
            require(ids[:len(new)] != [e["id"] for e in new], f"fraction {fraction}: the mixture is not shuffled "
                                                              "(the new examples come first, in order)")
    other = [e["id"] for e in replay_mixture(list(new), list(old), 0.3, 6)]
    require(other != [e["id"] for e in replay_mixture(list(new), list(old), 0.3, 5)],
            "seeds 5 and 6 gave the same mixture: the seed must decide the draw")
    for fraction, why in ((-0.1, "a fraction below 0"), (3.0, "more old examples than there are")):
        result = refusal(lambda: replay_mixture(list(new), list(old), fraction, 0),
                         describe=lambda mixture: f"{len(mixture)} examples")
        require(not result, f"{why} ({fraction}) {result}: raise ValueError saying so")
    return "4 unseen mixtures (fractions 0 to 2.4), seeded, and two impossible ones refused"


def _unseen_model():
    """A small Llama the notebook never saw: the tiny base's architecture at a quarter of its width, seeded; its
    trainable parameters, and the tiny tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from shared.models import load_tokenizer
    from shared.profiles import PROFILES

    tokenizer = load_tokenizer(profile=PROFILES["tiny"])
    torch.manual_seed(1010)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    model.model.layers[1].mlp.down_proj.weight.requires_grad_(False)   # a frozen weight has no Fisher entry
    return model, tokenizer


def _fisher_examples():
    import random

    from shared.world import data

    rows = data.load_task("closed_qa", "validation") + data.load_task("arithmetic", "validation")
    return random.Random(1011).sample(rows, 9)


def check_fisher(fisher_diagonal) -> str:
    import torch

    from shared.training.forgetting import fisher_diagonal as reference

    model, tokenizer = _unseen_model()
    model.train()
    examples = _fisher_examples()
    got = fisher_diagonal(model, tokenizer, examples)
    expected = reference(model, tokenizer, examples)
    require(isinstance(got, dict), f"must return a dict (parameter name -> tensor), returned {type(got).__name__}")
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    require(not missing and not extra, "one entry per trainable parameter: " + "; ".join(
        part for part in (f"missing {missing[:3]}" if missing else "",
                          f"not trainable or unknown {extra[:3]}" if extra else "") if part))
    for name, value in expected.items():
        mine = got[name]
        require(isinstance(mine, torch.Tensor) and mine.shape == value.shape,
                f"{name}: expected a tensor of shape {tuple(value.shape)}")
        require(torch.allclose(mine.double(), value.double(), rtol=1e-4, atol=1e-12),
                f"{name}: differs from the course's Fisher by up to {float((mine.double() - value.double()).abs().max()):.3g} "
                f"(entries up to {float(value.abs().max()):.3g}); summed over every weight yours is "
                f"{sum(float(got[n].sum()) for n in expected if isinstance(got[n], torch.Tensor)):.4g}, expected {sum(float(v.sum()) for v in expected.values()):.4g}")
    one = fisher_diagonal(model, tokenizer, examples[:1])
    single = reference(model, tokenizer, examples[:1])
    require(all(torch.allclose(one[n].double(), single[n].double(), rtol=1e-4, atol=1e-12) for n in single),
            "one example alone: not the squared gradient of its loss")
    return f"{len(expected)} trainable parameters of an unseen model (one frozen), {len(examples)} unseen examples"


def check_penalty(ewc_penalty) -> str:
    import torch

    from shared.training.forgetting import ewc_penalty as reference

    model, _ = _unseen_model()
    want_parameter_gradients(model)   # each call returns the penalty and its gradient to every trainable weight
    generator = torch.Generator().manual_seed(1012)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    names = [name for name, _ in named]
    fisher = {name: torch.rand(p.shape, generator=generator) * 1e-3 for name, p in named[::2]}  # every other one
    anchor = {name: p.detach().clone() + 0.05 * torch.randn(p.shape, generator=generator)
              for name, p in model.named_parameters()}
    at_anchor = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainable = [p for _, p in named]
    got, gradients = value_and_gradients(ewc_penalty(model, fisher, anchor), trainable)
    expected = reference(model, fisher, anchor)   # kept attached: its gradients are compared below
    want = float(expected.detach())
    require(isinstance(got, torch.Tensor) and got.numel() == 1, f"must return a one-number tensor, returned {got!r}")
    require(abs(float(got) - want) <= 1e-5 * abs(want),
            f"penalty {float(got):.6g}, expected {want:.6g} (only the parameters named in fisher count)")
    zero, _ = value_and_gradients(ewc_penalty(model, fisher, at_anchor), trainable)
    require(abs(float(zero)) <= 1e-12, f"at the anchor the penalty must be 0, got {float(zero):.3g}")
    expected_gradients = torch.autograd.grad(expected, trainable, allow_unused=True)
    for name, mine, want in zip(names, gradients, expected_gradients):
        if want is None:
            require(mine is None or float(mine.abs().max()) == 0.0, f"{name} is not in fisher, yet has a gradient")
            continue
        require(mine is not None, f"the penalty carries no gradient back to {name}: keep it attached to the weights "
                                  "(no .item(), no .detach())")
        require(torch.allclose(mine, want, rtol=1e-4, atol=1e-12), f"{name}: the gradient is not 2 F (theta - anchor)")
    return f"{len(fisher)} of {len(names)} parameters in the Fisher, 0 at the anchor, its gradient to every weight"


# -- what the run saved ---------------------------------------------------------------------------------
ROLES = ("start", "unmitigated", "mitigated")


def verify_outputs(ctx: Context) -> None:
    outputs = ctx.outputs()
    saved = ctx.collect("metrics were saved and name the three models", lambda: read_saved(outputs, ctx),
                        hint="Run sections 6 and 8 and keep metrics.json's keys.")

    def measure_all() -> dict:
        require(bool(saved), "needs the saved metrics, which name the models (see above)")
        # Each model on its own, by its files' content: the same measurement whichever role it plays.
        measured = {role: ctx.measure([path for path in saved["paths"][role] if path is not None],
                                      lambda role=role: measure_saved(role, *saved["paths"][role], ctx.profile),
                                      settings=(check_seed(),))
                    for role in ROLES}
        start_folder = saved["paths"]["start"][0]
        measured["reference"] = ctx.measure(
            [start_folder], lambda: measure_unmitigated_run(start_folder, ctx.profile),
            settings=(check_seed(), ctx.profile.seed, "the checker's unmitigated run"))   # the seed trains it
        return measured

    measured = ctx.collect("the three models reload, and the checker measures A and B on all of them", measure_all,
                           hint="Keep the models where section 6 saved them; do not move or edit them.")
    ctx.criterion("the unmitigated fine-tune is the profile's recipe: the checker's own run of it agrees",
                  lambda: check_reproduced(measured),
                  hint="Section 1 trains it: the SFT model, the two-step training problems alone, the profile's "
                       "'forget' stage as it is. Change the remedies, not the run they are measured against.")
    ctx.criterion("the unmitigated fine-tune learned the new task and forgot the old ones",
                  lambda: check_forgot(measured),
                  hint="Section 1 fine-tunes the SFT model on the two-step problems alone (the profile's 'forget' "
                       "stage); save that model as it came out.")
    ctx.criterion(f"your remedy wins back at least {RECOVERY:.0%} of B's loss, A within {A_GAP * 100:.0f} points",
                  lambda: check_recovery(measured),
                  hint="Pick a stronger remedy or strength from section 5's table (its B recovered column), one "
                       "whose A stays close to the unmitigated run's.")
    ctx.criterion("your remedy scores new two-step problems about as well as the held-out ones",
                  lambda: check_fresh(measured),
                  hint="Train on the training problems only: the held-out ones are for measuring.")
    ctx.criterion("the saved figures agree with the models", lambda: check_agree(saved, measured),
                  hint="metrics.json must hold what section 6 measured: no hand edits.")


def read_saved(outputs: Path, ctx: Context) -> dict:
    metrics = read_json(outputs / "metrics.json", "metrics")
    models, final = metrics.get("models"), metrics.get("final")
    require(isinstance(models, dict) and all(isinstance(models.get(role), dict) for role in ROLES),
            f"metrics.json must name the {', '.join(ROLES)} models")
    require(isinstance(final, dict) and all(isinstance(final.get(role), dict) for role in ROLES),
            f"metrics.json must hold the final figures of the {', '.join(ROLES)} models")
    for role in ROLES:
        for key in ("A", "B"):
            require(is_fraction(final[role].get(key)), f"metrics.json final[{role!r}][{key!r}] is "
                                                       f"{final[role].get(key)!r}, not a number between 0 and 1")
    require(metrics.get("remedy") in ("replay", "EWC", "LoRA"), f"metrics.json remedy is {metrics.get('remedy')!r}")
    paths = {role: _model_paths(models[role], role, ctx) for role in ROLES}
    require(len({paths[role] for role in ROLES}) == 3, "the three models must be three different models")
    return {**metrics, "paths": paths}


def _model_paths(model: dict, role: str, ctx: Context) -> tuple:
    """(folder, adapter) of a saved model description, both inside the run's outputs folder."""
    resolved = []
    for key in ("folder", "adapter"):
        value = model.get(key)
        if value is None and key == "adapter":
            resolved.append(None)
            continue
        require(isinstance(value, str) and value, f"metrics.json names no {key} for the {role} model")
        path = ctx.outputs_root / value
        require(inside(path, ctx.outputs_root),
                f"metrics.json names {value} as the {role} model's {key}: the checker uses only models this run "
                "trained or earlier rungs saved in the same outputs folder")
        resolved.append(path)
    return tuple(resolved)


def measure_model(model, tokenizer) -> dict:
    """A and B as the notebook measures them (every held-out question), and A on new problems (FT_CHECK_SEED)."""
    from shared.evaluation.evals import evaluate_task
    from shared.training.forgetting import NEW_TASK, a_and_b
    from shared.world.word_problems import fresh_problems

    figures = a_and_b(model, tokenizer)
    fresh = fresh_problems(check_seed(), FRESH_PROBLEMS)
    figures["fresh_A"] = evaluate_task(model, tokenizer, NEW_TASK, examples=fresh).accuracy
    return figures


def measure_saved(role: str, folder: Path, adapter: Path | None, profile) -> dict:
    from shared.training.runs import SavedModel

    model = SavedModel(role, "", folder, adapter=adapter)
    try:
        loaded, tokenizer = model.load(profile), model.load_tokenizer(profile)
    except Exception as error:
        raise CheckFailed(f"the {role} model ({folder}{' + ' + str(adapter) if adapter else ''}) does not "
                          f"load: {type(error).__name__}: {str(error)[:160]}") from error
    return measure_model(loaded, tokenizer)


def measure_unmitigated_run(start_folder: Path, profile) -> dict:
    """The unmitigated fine-tune as the profile defines it, trained here and measured: the start model, the
    two-step training problems alone, the 'forget' stage (the training seed is the learner's, FT_SEED)."""
    import tempfile

    from shared.models import load_model, load_tokenizer
    from shared.training.forgetting import NEW_TASK
    from shared.training.sft import sft_trainer
    from shared.world import data

    tokenizer = load_tokenizer(start_folder, profile=profile)
    examples = data.load_task(NEW_TASK, "train")[:profile.train("forget")["examples_per_task"]]
    with tempfile.TemporaryDirectory() as scratch:
        trainer = sft_trainer(load_model(start_folder, profile=profile), tokenizer, profile, "forget", scratch,
                              examples=examples)
        trainer.train()
    return measure_model(trainer.model, tokenizer)


def check_reproduced(measured: dict) -> str:
    mine, reference = require_measured(measured)["unmitigated"], measured["reference"]
    gaps = {"A": abs(a_on_all_problems(mine) - a_on_all_problems(reference)), "B": abs(mine["B"] - reference["B"])}
    shown = (f"yours: A {a_on_all_problems(mine):.1%}, B {mine['B']:.1%}; the checker's: "
             f"A {a_on_all_problems(reference):.1%}, B {reference['B']:.1%}")
    require(max(gaps.values()) <= REPRODUCED, f"{shown} -- more than {REPRODUCED * 100:.0f} points apart: not the "
                                              "profile's unmitigated fine-tune of the start model")
    return shown


def check_forgot(measured: dict) -> str:
    start, plain = require_measured(measured)["start"], measured["unmitigated"]
    require(start["B"] - plain["B"] >= MIN_FORGETTING,
            f"B {start['B']:.1%} before, {plain['B']:.1%} after the unmitigated fine-tune: it lost less than "
            f"{MIN_FORGETTING:.0%}, so there is nothing for a remedy to win back")
    require(plain["A"] - start["A"] >= 0.5, f"A {start['A']:.0%} before, {plain['A']:.0%} after: the unmitigated "
                                            "fine-tune did not learn the new task")
    return f"A {start['A']:.0%} -> {plain['A']:.0%}, B {start['B']:.1%} -> {plain['B']:.1%}"


def a_on_all_problems(figures: dict) -> float:
    """A on the held-out problems and the new ones together (each problem counted alike)."""
    from shared.world.word_problems import SPLIT_SIZES

    heldout = SPLIT_SIZES["heldout"]
    return (figures["A"] * heldout + figures["fresh_A"] * FRESH_PROBLEMS) / (heldout + FRESH_PROBLEMS)


def check_recovery(measured: dict) -> str:
    start, plain, mine = (require_measured(measured)[role] for role in ROLES)
    lost = start["B"] - plain["B"]
    require(lost > 0, "the unmitigated fine-tune lost nothing of B (see above)")
    recovered = (mine["B"] - plain["B"]) / lost
    a_plain, a_mine = a_on_all_problems(plain), a_on_all_problems(mine)
    shown = (f"B {plain['B']:.1%} unmitigated, {mine['B']:.1%} yours ({recovered:.0%} of the {lost * 100:.1f} points "
             f"lost won back); A {a_plain:.1%} unmitigated, {a_mine:.1%} yours "
             f"({heldout_and_new()} problems)")
    short = ([f"needed {RECOVERY:.0%} won back"] if recovered < RECOVERY else []) + (
        [f"A is {(a_plain - a_mine) * 100:.1f} points below, at most {A_GAP * 100:.0f} allowed"]
        if a_mine < a_plain - A_GAP else [])
    require(not short, f"{shown}; " + "; and ".join(short))
    return shown


def heldout_and_new() -> str:
    from shared.world.word_problems import SPLIT_SIZES

    return f"{SPLIT_SIZES['heldout']} held-out and {FRESH_PROBLEMS} new"


def check_fresh(measured: dict) -> str:
    mine = require_measured(measured)["mitigated"]
    require(mine["A"] - mine["fresh_A"] <= FRESH_GAP,
            f"{mine['A']:.0%} of the held-out two-step problems but {mine['fresh_A']:.0%} of {FRESH_PROBLEMS} new "
            "ones like them: was it trained on the held-out problems?")
    return f"{mine['fresh_A']:.0%} of {FRESH_PROBLEMS} new problems (FT_CHECK_SEED), {mine['A']:.0%} held out"


def check_agree(saved: dict, measured: dict) -> str:
    measured = require_measured(measured)
    require(bool(saved), "needs the saved figures (see above)")
    for role in ROLES:
        for key, value in measured[role].items():
            said = saved["final"][role].get(key)
            if key == "fresh_A":
                continue
            require(is_finite_number(said) and abs(said - value) <= AGREEMENT,
                    f"metrics.json says the {role} model's {key} is {said!r}; measured again, {value:.1%}")
    return f"within {AGREEMENT:.0%}"


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG))
