"""Checker for rung 07 (GRPO): `make check RUNG=07 [NOTEBOOK=path]`.

It runs a copy of the notebook, then verifies rather than trusts:
* the learner's `group_advantages`, `grpo_loss`, `correctness_reward` and `grpo_config` are tested on cases the
  notebook never shows, against the course's references, the course's metric and TRL's own GRPOTrainer;
* the saved starting policy and GRPO policy are reloaded; both answer the held-out problems here, the GRPO
  policy answers new problems made now, pass@k is sampled again with the saved seed, and the figures are compared
  with what the notebook saved.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere, even before `pip install -e`

from shared.checking import (CheckFailed, Context, check_config_cases, fixed_trainer_settings, hidden, inside,  # noqa: E402
                             main, read_json, require, require_measured)
from shared.checking.figures import AGREEMENT, check_seed, finite_fraction  # noqa: E402
from shared.checking.guards import Forbidden  # noqa: E402

RUNG = "07"
# Per profile: held-out accuracy (greedy, the working checked step by step) the GRPO policy must gain over the
# policy it started from, and where that start must lie, measured by the checker.
# tiny -- the notebook's recipe (the SFT model primed on 240 worked problems, then GRPO on 400 prompts, 16
#         answers each, the profile's "grpo" sizes); `make bench RUNG=07 SEEDS=0,1,2`: see
#         rungs/07-grpo/README.md. The gain bar sits below the worst seed.
#         Each seed training its own rung 02 model too (the bench end to end), the start was 28 / 8 / 13% and
#         the gain +44 / +46 / +46 points: the start's lower bound sits below 8%.
# gpu  -- first estimates, not yet measured on a GPU.
THRESHOLDS = {"tiny": {"gain": 0.25, "start": (0.05, 0.60)}, "gpu": {"gain": 0.15, "start": (0.05, 0.70)}}
# New problems (new numbers and stories about the held-out strangers, from FT_CHECK_SEED): a policy that learned
# the skill scores on them as on the held-out split.
FRESH_GAP = 0.10
# pass@k is sampled again with the saved seed: the same answers on the same machine; a different CPU may round
# one logit differently, and from there the random stream draws other answers, so allow sampling noise.
PASS_AT_K_AGREEMENT = 0.06
N_SAMPLES = 16

CONFIG_CASES = [
    ({"learning_rate": 3.3e-5, "num_generations": 4, "per_device_train_batch_size": 8, "beta": 0.02,
      "loss_type": "grpo", "prompts": 17}, {}),
    ({}, {"scale_rewards": "none", "max_steps": 3, "logging_steps": 1, "max_completion_length": 9,
          "epsilon": 0.28}),
]

FORBIDDEN = {
    "group_advantages": Forbidden("the group-relative advantage is yours to write; the course's is what it is "
                                  "checked against", modules=("trl",),
                                  functions=("shared.training.grpo.group_advantages",)),
    "grpo_loss": Forbidden("GRPO's loss is yours to write; the course's and TRL's are what it is checked against",
                           modules=("trl",), functions=("shared.training.grpo.grpo_loss",
                                                        "shared.training.grpo.trl_grpo_loss")),
    "correctness_reward": Forbidden("the reward function is yours to write; the course's metric is what it is "
                                    "checked against",
                                    functions=("shared.evaluation.evals.task_reward", "shared.evaluation.evals.score",
                                               "shared.evaluation.evals.accuracy",
                                               "shared.evaluation.evals.task_metric")),
    "grpo_config": Forbidden("the GRPOConfig is yours to write; the course's recipe is what it is checked against",
                             functions=("shared.training.grpo.grpo_trainer", "shared.training.grpo.grpo_config",
                                        "shared.training.recipe.common_config_kwargs")),
}


def check(ctx: Context) -> None:
    ctx.run_notebook()
    check_graded(ctx)
    ctx.from_the_run(verify_outputs)
    answers = ctx.answers()
    ctx.review("written answer: what GRPO does without, and what it pays instead", answers.get("grpo-vs-ppo"),
               hint="Write a few sentences of your own in section 10, with the memory table of section 2.")
    ctx.review("written answer: what the pass@k curves say", answers.get("pass-at-k"),
               hint="Write a few sentences of your own in section 10, from what section 7 measured.")


def check_graded(ctx: Context) -> None:
    graded = ctx.graded(list(FORBIDDEN), forbidden=FORBIDDEN)
    ctx.criterion("group_advantages computes TRL's advantages on unseen rewards, with each scaling",
                  lambda: check_group_advantages(graded["group_advantages"]),
                  hint="Section 3's rules for each scale_rewards: which rewards a group is, what is subtracted, "
                       "what it is divided by (torch.std, as TRL) and what a group of one gives.")
    ctx.criterion("grpo_loss computes TRL's GRPO loss on unseen cases and on TRL's own batch, every loss type",
                  lambda: check_grpo_loss(graded["grpo_loss"]),
                  hint="Section 4: the per-token formula (clipped on both sides, the KL term weighted by the "
                       "ratio), then the table's averaging for each loss_type, counting only tokens where mask is "
                       "1; the message above says which loss_type and beta went wrong.")
    ctx.criterion("correctness_reward scores completions as the course's metric does, in both of TRL's formats",
                  lambda: check_correctness_reward(graded["correctness_reward"]),
                  hint="Take the text (a string, or the content of the last message), normalise it and the "
                       "reference the same way (lower case, one space, no surrounding spaces or final "
                       "punctuation), and compare; one float per completion.")
    ctx.criterion("grpo_config writes the profile's sizes and the changes asked into a GRPOConfig",
                  lambda: check_grpo_config(graded["grpo_config"], ctx.profile),
                  hint="Start from profile.train('grpo') without 'prompts', put changes on top, and pass every "
                       "entry to GRPOConfig under its own name, beside the settings listed in section 5.")


# -- the graded functions -----------------------------------------------------------------------------
def _advantage_cases():
    import torch

    generator = torch.Generator().manual_seed(707)
    cases = []
    for prompts, group, kind in ((3, 4, "binary"), (2, 8, "real"), (5, 2, "binary"), (1, 16, "real"),
                                 (4, 3, "binary")):
        if kind == "binary":
            rewards = (torch.rand(prompts * group, generator=generator) < 0.4).double()
        else:
            rewards = 3 * torch.randn(prompts * group, generator=generator, dtype=torch.float64)
        cases.append((rewards, group))
    return cases


def check_group_advantages(group_advantages) -> str:
    import torch

    from shared.training.grpo import SCALINGS
    from shared.training.grpo import group_advantages as reference

    cases = _advantage_cases()
    for number, (rewards, group) in enumerate(cases, 1):
        for scaling in SCALINGS:
            got = group_advantages(rewards.clone(), group, scaling)
            require(isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(rewards.shape),
                    f"case {number} ({scaling}): must return one advantage per reward, a tensor of shape "
                    f"{tuple(rewards.shape)}")
            expected = reference(rewards, group, scaling)
            worst = float((got.double() - expected).abs().max())
            require(worst <= 1e-6, f"case {number} ({len(rewards) // group} prompts x {group} answers, "
                                   f"scale_rewards={scaling!r}): off by up to {worst:.3g} (rewards "
                                   f"{[round(r, 2) for r in rewards.tolist()[:8]]}..., expected "
                                   f"{[round(a, 3) for a in expected.tolist()[:8]]}...)")
            sums = got.double().reshape(-1, group).sum(dim=1)
            require(bool((sums.abs() <= 1e-6).all()), f"case {number} ({scaling}): advantages must sum to zero in "
                                                      f"each group, got sums {[round(s, 4) for s in sums.tolist()]}")
    equal = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    for scaling in SCALINGS:
        got = group_advantages(equal, 3, scaling)
        require(bool((got.abs() <= 1e-9).all()), f"two groups of equal rewards ({scaling}) must give advantage 0 "
                                                 f"(nothing to learn), got {got.tolist()}")
    alone = group_advantages(torch.tensor([0.3, 1.0, 0.0], dtype=torch.float64), 1, "group")
    require(bool((alone.abs() <= 1e-9).all()), f"one answer per prompt must give advantage 0, got {alone.tolist()}")
    return f"{len(cases)} unseen batches x 3 scalings, zero sums, equal groups, groups of one"


def _loss_cases():
    """Random log-probabilities near each other (so some ratios leave [1 - eps, 1 + eps]), masks with answers
    of every length, a row with no tokens at all."""
    import torch

    generator = torch.Generator().manual_seed(7070)
    cases = []
    for batch, length, spread in ((4, 6, 0.4), (3, 9, 0.1), (6, 5, 0.8)):
        logps = -2 * torch.rand(batch, length, generator=generator, dtype=torch.float64)
        old = logps + spread * torch.randn(batch, length, generator=generator, dtype=torch.float64)
        ref = logps + spread * torch.randn(batch, length, generator=generator, dtype=torch.float64)
        advantages = torch.randn(batch, generator=generator, dtype=torch.float64)
        mask = torch.zeros(batch, length, dtype=torch.long)
        for row in range(batch):
            mask[row, :[length, 1, length - 2, 3, 0, 2][row % 6]] = 1
        cases.append((logps, old, ref, advantages, mask))
    return cases


LOSS_SETTINGS = [("grpo", 0.0, 0.2), ("grpo", 0.1, 0.2), ("bnpo", 0.05, 0.3), ("dapo", 0.0, 0.2),
                 ("dapo", 0.2, 0.1), ("dr_grpo", 0.0, 0.2), ("dr_grpo", 0.04, 0.25)]


def check_grpo_loss(grpo_loss) -> str:
    import torch

    from shared.training.grpo import grpo_loss as reference

    cases = _loss_cases()
    passed = []  # the settings every case has passed so far: what a failure's message can point away from
    # beta = 0 first, "grpo" first: a failure after those have passed says which part is off.
    for loss_type, beta, epsilon in sorted(LOSS_SETTINGS, key=lambda s: (s[1] != 0, s[0] != "grpo")):
        for number, (logps, old, ref, advantages, mask) in enumerate(cases, 1):
            settings = dict(ref_logps=ref.clone(), beta=beta, epsilon=epsilon, loss_type=loss_type,
                            max_completion_length=logps.shape[1] + 3)
            got = grpo_loss(logps.clone(), old.clone(), advantages.clone(), mask.clone(), **settings)
            require(isinstance(got, torch.Tensor) and got.dim() == 0,
                    f"case {number} ({loss_type}): must return a 0-d tensor, returned "
                    f"{type(got).__name__} {tuple(getattr(got, 'shape', ()))}")
            expected = float(reference(logps, old, advantages, mask, **settings))
            empty = [row for row in range(len(mask)) if not mask[row].any()]
            require(math.isfinite(float(got)) or not empty,
                    f"case {number} (loss_type={loss_type!r}): got {float(got)}; row(s) {empty} have no tokens "
                    "(mask all 0): count at least one token where you divide by a count, as TRL does")
            require(abs(float(got) - expected) <= 1e-9 * max(1.0, abs(expected)),
                    f"case {number} (loss_type={loss_type!r}, beta={beta}, epsilon={epsilon}): expected "
                    f"{expected:.8f}, got {float(got):.8f}{_where_to_look(passed, loss_type, beta)}")
        passed.append((loss_type, beta))
    logps, _, _, _, mask = cases[0]
    full = torch.ones_like(mask)
    advantages = torch.tensor([0.9, -0.3, -0.1, -0.5], dtype=torch.float64)
    at_one = float(grpo_loss(logps, logps.clone(), advantages, full, loss_type="grpo"))
    require(abs(at_one + float(advantages.mean())) <= 1e-9,
            f"with ratio 1 and beta 0 the loss must be -mean(advantages) = {-float(advantages.mean()):.6f}, "
            f"got {at_one:.6f}")
    gradients = check_gradients(grpo_loss, logps, mask)
    try:
        grpo_loss(logps, logps.clone(), advantages, mask, loss_type="dr_grpo")
    except Exception:  # noqa: BLE001 -- any clear error will do
        pass
    else:
        raise CheckFailed("loss_type='dr_grpo' without max_completion_length must raise an error, not guess one")
    trl_checked = check_against_trl(grpo_loss)
    return (f"{len(cases)} unseen batches x {len(LOSS_SETTINGS)} settings, -mean advantage at ratio 1, {gradients}, "
            f"TRL's GRPOTrainer on {trl_checked} batches")


def _where_to_look(passed: list, loss_type: str, beta: float) -> str:
    """A pointer for a failed loss case, from what already passed."""
    if beta and any(b == 0 and t == loss_type for t, b in passed):
        return f" -- the beta = 0 cases of {loss_type!r} pass: look at the KL term"
    if loss_type != "grpo" and any(t == "grpo" and b == beta for t, b in passed):
        return f" -- loss_type 'grpo' passes: look at how {loss_type!r} averages the tokens"
    return ""


def check_gradients(grpo_loss, logps, mask) -> str:
    """The gradient with respect to the policy's log-probabilities, by autograd in the learner's own process:
    the reference's for non-zero advantages (with the KL term), exactly zero for equal rewards."""
    import torch

    from shared.checking.sandbox import value_and_gradients
    from shared.training.grpo import grpo_loss as reference

    old = logps + 0.3 * torch.randn(logps.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = logps + 0.3 * torch.randn(logps.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for advantages, what in ((torch.tensor([0.9, -0.3, -0.1, -0.5], dtype=torch.float64), "non-zero advantages"),
                             (torch.zeros(4, dtype=torch.float64), "equal rewards (zero advantages)")):
        settings = dict(ref_logps=ref, beta=0.1 if what.startswith("non") else 0.0, loss_type="grpo")
        asked = logps.clone().requires_grad_(True)
        value, (gradient,) = value_and_gradients(grpo_loss(asked, old, advantages, mask, **settings), [asked])
        require(gradient is not None,
                f"with {what} the loss must be a function of logps that autograd can differentiate: no gradient "
                "reaches logps (a .detach(), .item() or a new tensor built from numbers cuts it off)")
        if what.startswith("equal"):
            require(abs(float(value)) <= 1e-12, f"with {what} and beta 0 the loss must be 0, got {float(value)}")
        leaf = logps.clone().requires_grad_(True)
        expected, = torch.autograd.grad(reference(leaf, old, advantages, mask, **settings), [leaf])
        worst = float((gradient.double() - expected).abs().max())
        require(worst <= 1e-9, f"with {what} the gradient with respect to logps is off by up to {worst:.3g}")
    return "the gradient (zero for equal rewards)"


def check_against_trl(grpo_loss) -> int:
    """The learner's loss on batches GRPOTrainer itself scores: a policy (the tiny base, every weight nudged)."""
    import torch

    from shared.models import load_model, load_tokenizer
    from shared.training.grpo import trl_grpo_loss
    from shared.training.preference import nudged_copy
    from shared.world import data

    policy, tokenizer = nudged_copy(load_model(), seed=77), load_tokenizer()
    rows = data.load_task("two_step", "validation")[-5:]
    completions = [rows[0]["answer"], "7 plus 2 is 9.", rows[2]["answer"] + " " + rows[3]["answer"], "",
                   rows[4]["answer"]]
    advantages = torch.tensor([0.8, -1.1, 0.3, -0.2, 1.4])
    settings = [("grpo", 0.0, 0.2), ("dapo", 0.1, 0.15), ("dr_grpo", 0.05, 0.2), ("bnpo", 0.0, 0.3)]
    for loss_type, beta, epsilon in settings:
        batch = trl_grpo_loss(policy, tokenizer, [r["prompt"] for r in rows], completions, advantages, seed=17,
                              beta=beta, loss_type=loss_type, epsilon=epsilon, max_completion_length=24)
        got = float(grpo_loss(batch.logps.double(), batch.inputs["old_per_token_logps"].double(),
                              advantages.double(), batch.inputs["completion_mask"],
                              ref_logps=batch.inputs["ref_per_token_logps"].double(), beta=beta, epsilon=epsilon,
                              loss_type=loss_type, max_completion_length=24))
        require(abs(got - batch.loss) <= 1e-5 * max(1.0, abs(batch.loss)),
                f"on a real batch (loss_type={loss_type!r}, beta={beta}) TRL's GRPOTrainer computes "
                f"{batch.loss:.6f}, yours {got:.6f}")
    return len(settings)


def _reward_cases() -> tuple[list, list[str]]:
    import random

    from shared.world import data

    rng = random.Random(7007)
    rows = rng.sample(data.load_task("two_step", "validation"), 14)
    answers = [row["answer"] for row in rows]
    # Right: as written, shouted, spaced out, without the final stop, with "!". Wrong: one step, the other
    # problem's answer, twice over, nothing, "was", a leading "...", "The", words around the right steps, the
    # stop between the steps gone (a pattern that reads the steps out of any text pays all of these).
    texts = [answers[0], answers[1].upper(), "  " + answers[2].replace(" ", "   ") + "  ", answers[3].rstrip("."),
             answers[4].split(". ")[0] + ".", answers[6], answers[6] + " " + answers[6], "", answers[8] + "!",
             answers[9].replace("is", "was"), "... " + answers[10], "The " + answers[11],
             "So " + answers[12].rstrip(".") + ", easy.", answers[13].replace(". ", " ")]
    texts[5] = answers[5].replace(answers[5].split()[2], str((int(answers[5].split()[2]) + 1) % 11), 1)
    completions = [[{"role": "assistant", "content": t}] if i % 2 == 0 else t for i, t in enumerate(texts)]
    return completions, answers


def check_correctness_reward(correctness_reward) -> str:
    from shared.evaluation.metrics.task_accuracy.task_accuracy import is_correct

    completions, answers = _reward_cases()
    got = correctness_reward(completions=completions, answer=answers, prompts=["?"] * len(answers),
                             completion_ids=[[1]] * len(answers), trainer_state=None, task=["two_step"] * len(answers))
    require(isinstance(got, list) and len(got) == len(answers),
            f"must return a list with one reward per completion ({len(answers)}), returned {type(got).__name__}"
            f"{' of ' + str(len(got)) if isinstance(got, list) else ''}")
    for completion, answer, reward in zip(completions, answers, got):
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        expected = float(is_correct(text, answer, "two_step"))
        require(isinstance(reward, (int, float)) and not isinstance(reward, bool) and reward == expected,
                f"{text!r} against {answer!r}: expected {expected}, got {reward!r}")
    return f"{len(answers)} unseen completions, as strings and as messages"


def expected_config(profile, output_dir: str, changes: dict) -> dict:
    """What the GRPOConfig must say, field by field: section 5's list (every rung's fixed settings but
    max_length, which GRPO has none of)."""
    fixed = {name: value for name, value in fixed_trainer_settings(profile, output_dir).items() if name != "max_length"}
    from shared.training.grpo import COURSE_ONLY

    sizes = {name: value for name, value in profile.train("grpo").items() if name not in COURSE_ONLY}
    return {**fixed, **sizes, **changes}


def check_grpo_config(grpo_config, profile) -> str:
    from trl import GRPOConfig

    return check_config_cases(grpo_config, profile, "grpo", hidden.cases(RUNG, "CONFIG_CASES", CONFIG_CASES),
                              expected_config, GRPOConfig)


# -- what the run saved ---------------------------------------------------------------------------------
def verify_outputs(ctx: Context) -> None:
    outputs = ctx.outputs()
    saved = ctx.collect("metrics were saved and are valid numbers", lambda: read_saved(outputs),
                        hint="Run section 11 (it writes metrics.json) and keep its keys.")

    def measure_both() -> dict:
        start = saved.get("start_folder")
        # Checked before the cache is asked: a byte-identical copy elsewhere must not pass as measured.
        require(start is not None and inside(start, ctx.outputs_root),
                f"metrics.json names {start} as the starting policy: the checker uses only a model this run "
                "trained")
        seed = saved["pass_at_k"]["seed"]
        # Each policy on its own, by its files' content: the same measurement whichever role a model plays.
        found = {role: ctx.measure([folder], lambda folder=folder: measure_policy(folder, ctx.profile, seed),
                                   settings=(seed, check_seed()))
                 for role, folder in (("start", start), ("after", outputs / "model"))}
        require(found["start"]["shape"] == found["after"]["shape"],
                "the GRPO policy is not shaped like the starting policy: it was not trained from it")
        return {"start": found["start"]["heldout"], "after": found["after"]["heldout"],
                "fresh": found["after"]["fresh"],
                "pass_at_k": {role: found[role]["pass_at_k"] for role in ("start", "after")}}

    measured = ctx.collect(
        "the saved starting policy and GRPO policy reload and answer the held-out problems", measure_both,
        hint="Section 11 saves the GRPO policy with save_model, section 1 the starting policy; do not move or "
             "edit them.")
    bars = THRESHOLDS[ctx.profile.name]  # the checker's own profile: never one a notebook wrote down
    low, high = bars["start"]
    ctx.criterion(f"the starting policy is section 1's: between {low:.0%} and {high:.0%} of the held-out problems "
                  "right", lambda: check_start(measured, bars),
                  hint="Prime the SFT model with the profile's 'prime' sizes (section 1) and save that model as "
                       "the start: the gain is measured from it.")
    ctx.criterion(f"GRPO gains at least {bars['gain'] * 100:.0f} points of held-out accuracy over its start",
                  lambda: check_gain(measured, bars),
                  hint="Train with the profile's GRPO sizes (section 6) from the starting policy, and save the "
                       "trained policy.")
    ctx.criterion("scores new problems about as well as the held-out ones (it never trained on them)",
                  lambda: check_fresh(measured),
                  hint="Train on the training prompts only: the held-out problems are for measuring.")
    ctx.criterion("pass@k, sampled again with the saved seed, gives the saved curves",
                  lambda: check_pass_at_k(saved, measured),
                  hint="Keep section 7 as it is (16 samples, the profile's seed) and save its curves.")
    ctx.criterion("saved figures agree with the models", lambda: check_saved_agree(saved, measured),
                  hint="metrics.json must hold what the notebook measured: no hand edits.")


def read_saved(outputs: Path) -> dict:
    metrics = read_json(outputs / "metrics.json", "metrics")
    accuracy = metrics.get("heldout_accuracy")
    require(isinstance(accuracy, dict), "metrics.json has no 'heldout_accuracy' figures")
    for key in ("sft", "start", "after"):
        finite_fraction(accuracy.get(key), f"metrics.json heldout_accuracy[{key!r}]")
    curves = metrics.get("pass_at_k")
    require(isinstance(curves, dict) and isinstance(curves.get("seed"), int) and not isinstance(curves["seed"], bool)
            and curves.get("n") == N_SAMPLES, f"metrics.json pass_at_k must hold the seed and n = {N_SAMPLES}")
    for key in ("start", "after"):
        curve = curves.get(key)
        require(isinstance(curve, dict) and set(curve) == {"1", "2", "4", "8", "16"},
                f"metrics.json pass_at_k[{key!r}] must hold pass@1, 2, 4, 8 and 16")
        for value in curve.values():
            finite_fraction(value, f"metrics.json pass_at_k[{key!r}]")
    folder = metrics.get("start_model")
    require(isinstance(folder, str) and folder, "metrics.json does not name the starting policy")
    return {**metrics, "start_folder": outputs.parent / folder}  # relative to the outputs folder


def measure_policy(folder: Path, profile, seed: int) -> dict:
    """One saved policy answers the held-out problems and new ones (greedy), and 16 samples of each held-out
    problem give its pass@k again."""
    from shared.checking.artefacts import load_saved_model
    from shared.evaluation.evals import evaluate_task
    from shared.evaluation.passk import pass_at_k_curve
    from shared.world import data, word_problems

    model, tokenizer = load_saved_model(folder, profile, hint="section 1 saves the starting policy, section 11 "
                                                              "the GRPO policy")
    heldout = data.load_task("two_step", "heldout")
    curve = pass_at_k_curve(model, tokenizer, heldout, n=N_SAMPLES, seed=seed)["pass_at_k"]
    return {"shape": {name: tuple(p.shape) for name, p in model.named_parameters()},
            "heldout": evaluate_task(model, tokenizer, "two_step", examples=heldout).accuracy,
            "fresh": evaluate_task(model, tokenizer, "two_step",
                                   examples=word_problems.fresh_problems(check_seed())).accuracy,
            "pass_at_k": {str(k): value for k, value in curve.items()}}


def check_start(measured: dict, bars: dict) -> str:
    value = require_measured(measured)["start"]
    low, high = bars["start"]
    require(low <= value <= high, f"the saved starting policy gets {value:.0%} right: "
                                  f"{'no room to learn from' if value < low else 'little left to gain'}; "
                                  f"expected {low:.0%}-{high:.0%}")
    return f"{value:.0%}"


def check_gain(measured: dict, bars: dict) -> str:
    start, after = require_measured(measured)["start"], measured["after"]
    gain = after - start
    shown = f"{start:.0%} -> {after:.0%} ({gain * 100:+.0f} points)"
    require(gain >= bars["gain"] - 1e-9, f"{shown}; needed {bars['gain'] * 100:+.0f}")
    return shown


def check_fresh(measured: dict) -> str:
    after, fresh = require_measured(measured)["after"], measured["fresh"]
    shown = f"held-out {after:.0%}, new problems {fresh:.0%}"
    require(after - fresh <= FRESH_GAP + 1e-9, f"{shown}: the held-out problems look learned by heart")
    return shown


def check_pass_at_k(saved: dict, measured: dict) -> str:
    require_measured(measured)
    require(bool(saved), "needs the saved curves as well as the recomputed ones")
    for name in ("start", "after"):
        for k, value in measured["pass_at_k"][name].items():
            said = saved["pass_at_k"][name][k]
            require(abs(said - value) <= PASS_AT_K_AGREEMENT,
                    f"metrics.json says pass@{k} of the {name} policy is {said:.1%}; sampled again: {value:.1%}")
    return f"within {PASS_AT_K_AGREEMENT:.0%}"


def check_saved_agree(saved: dict, measured: dict) -> str:
    require_measured(measured)
    require(bool(saved), "needs the saved figures as well as the recomputed ones")
    for key in ("start", "after"):
        said, found = saved["heldout_accuracy"][key], measured[key]
        require(abs(said - found) <= AGREEMENT,
                f"metrics.json says heldout_accuracy[{key!r}] {said:.1%}, the model scores {found:.1%}")
    require(math.isfinite(saved["heldout_accuracy"]["sft"]), "the SFT model's figure is missing")
    return f"within {AGREEMENT:.0%}"


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG))
