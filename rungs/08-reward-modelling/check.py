"""Checker for rung 08 (reward modelling): `make check RUNG=08 [NOTEBOOK=path]`.

It runs a copy of the notebook, then verifies rather than trusts:
* the learner's `bradley_terry_loss`, `reward_config` and `reward_scores` are tested on cases the notebook never
  shows, against the course's references and TRL's own RewardTrainer;
* the saved reward model is reloaded and ranks the held-out pairs, and pairs made now, here; best-of-n is run
  again with the saved seed; DPO's implicit reward is recomputed from the models metrics.json names; the figures
  are compared with what the notebook saved.
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
from shared.numbers import is_finite_number  # noqa: E402

RUNG = "08"
# Per profile: held-out pairs the reward model must rank the right way, measured by the checker.
# tiny -- the notebook's recipe (the SFT model with a one-number head, every weight trained, the profile's
#         "reward" sizes); `make bench RUNG=08 SEEDS=0,1,2` (each seed trains its own SFT model too): see
#         rungs/08-reward-modelling/README.md. Inventions and wrongful abstentions are ranked right every time;
#         near misses near chance, which caps the whole near 88% (seed 0 on a second CPU: 89.2%, near misses
#         57%). The bar sits below the worst seed.
# gpu  -- a first estimate, not yet measured on a GPU.
THRESHOLDS = {"tiny": {"pairwise": 0.85}, "gpu": {"pairwise": 0.80}}
# New pairs about the held-out people (new inventions, near misses and phrasings, from FT_CHECK_SEED). Measured on
# the tiny profile: the recipe's model 87.8% held-out, 89.2% new; one trained 8 epochs on the held-out pairs
# themselves 97.8% held-out, 92.8% new (it memorised their answers). Trained on them for the recipe's 2 epochs it
# scores 92.2% and 91.9%: what it learned about those people holds for any pair about them, and no check can
# tell that from knowledge -- it only lifts the figure a few points above the honest 87-88%.
FRESH_GAP = 0.04
# Best-of-n is sampled again with the saved seed: the same answers on the same machine; a different CPU may
# round one logit differently, and from there the random stream draws other answers, so allow sampling noise.
BEST_OF_N_AGREEMENT = 0.06
BEST_OF_N = 16

CONFIG_CASES = [
    ({"learning_rate": 4.4e-4, "num_train_epochs": 3, "per_device_train_batch_size": 2, "warmup_steps": 0.2,
      "center_rewards_coefficient": 0.05}, {}),
    ({}, {"center_rewards_coefficient": None, "max_steps": 3, "logging_steps": 1, "max_length": 64,
          "learning_rate": 7e-5}),
]

FORBIDDEN = {
    "bradley_terry_loss": Forbidden("the Bradley-Terry loss is yours to write; the course's and TRL's are what it "
                                    "is checked against", modules=("trl",),
                                    functions=("shared.training.preference.bradley_terry_loss",
                                               "shared.training.preference.trl_reward_losses")),
    "reward_config": Forbidden("the RewardConfig is yours to write; the course's recipe is what it is checked "
                               "against", functions=("shared.training.preference.reward_trainer",
                                                     "shared.training.recipe.common_config_kwargs")),
    "reward_scores": Forbidden("scoring with the reward model is yours to write; the course's is what it is "
                               "checked against", modules=("trl",),
                               functions=("shared.evaluation.rewards.reward_scores",
                                          "shared.training.preference.trl_reward_losses")),
}


def check(ctx: Context) -> None:
    ctx.run_notebook()
    check_graded(ctx)
    ctx.from_the_run(verify_outputs)
    answers = ctx.answers()
    ctx.review("written answer: why RLHF needs a reward model, and how DPO does without", answers.get(
        "why-reward-model"), hint="Write a few sentences of your own in section 6.")
    ctx.review("written answer: what best-of-n showed", answers.get("best-of-n"),
               hint="Write a few sentences of your own in section 6, from what section 4 measured.")


def check_graded(ctx: Context) -> None:
    graded = ctx.graded(list(FORBIDDEN), forbidden=FORBIDDEN)
    ctx.criterion("bradley_terry_loss computes TRL's reward-model loss on unseen cases, margins included",
                  lambda: check_bradley_terry_loss(graded["bradley_terry_loss"]),
                  hint="-logsigmoid(chosen_rewards - rejected_rewards - margin), one loss per pair; no margin "
                       "(None) means 0; torch.nn.functional.logsigmoid stays finite where log(sigmoid(.)) does not.")
    ctx.criterion("reward_config writes the profile's sizes and the changes asked into a RewardConfig",
                  lambda: check_reward_config(graded["reward_config"], ctx.profile),
                  hint="Start from {**profile.train('reward'), **changes} and pass every entry to RewardConfig "
                       "under its own name, beside the settings listed in section 2; the changes come last.")
    ctx.criterion("reward_scores gives TRL's reward model's score of each answer, on an unseen model",
                  lambda: check_reward_scores(graded["reward_scores"]),
                  hint="Each pair as chat_ids(tokenizer, [user prompt, assistant answer]); pad on the right with "
                       "tokenizer.pad_token_id; one row of logits per answer, logits[:, 0], in the order given.")


# -- the graded functions -----------------------------------------------------------------------------
def _loss_cases():
    import torch

    generator = torch.Generator().manual_seed(808)
    cases = []
    for n, scale, with_margin in ((7, 3.0, False), (5, 12.0, True), (4, 0.5, True)):
        chosen, rejected = (scale * torch.randn(n, generator=generator, dtype=torch.float64) for _ in range(2))
        margin = torch.rand(n, generator=generator, dtype=torch.float64) * 2 if with_margin else None
        cases.append((chosen, rejected, margin))
    # Differences far beyond what float64 sigmoid can hold: log(sigmoid(-900)) is -inf, logsigmoid is -900.
    cases.append((torch.tensor([-900.0, 900.0], dtype=torch.float64), torch.tensor([0.0, 0.0], dtype=torch.float64),
                  None))
    return cases


def check_bradley_terry_loss(loss_fn) -> str:
    import torch

    from shared.training.preference import bradley_terry_loss as reference

    cases = _loss_cases()
    for number, (chosen, rejected, margin) in enumerate(cases, 1):
        args = (chosen.clone(), rejected.clone()) + ((margin.clone(),) if margin is not None else ())
        got = loss_fn(*args)
        require(isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(chosen.shape),
                f"case {number}: must return one loss per pair, a tensor of shape {tuple(chosen.shape)}")
        require(bool(torch.isfinite(got).all()), f"case {number}: non-finite losses {got.tolist()} (score "
                                                 "differences of hundreds are allowed: use logsigmoid)")
        expected = reference(chosen, rejected, margin)
        worst = float((got.double() - expected).abs().max())
        with_margin = "with" if margin is not None else "without"
        require(worst <= 1e-6, f"case {number} ({with_margin} a margin): off by up to {worst:.3g} "
                               f"(expected {[round(v, 5) for v in expected.tolist()]})")
    equal = torch.tensor([0.3, -2.0, 7.0], dtype=torch.float64)
    start = loss_fn(equal, equal.clone())
    require(torch.allclose(start.double(), torch.full((3,), math.log(2), dtype=torch.float64), atol=1e-9),
            f"two answers scored equal must give log 2, got {start.tolist()}")
    # The gradient's direction, by finite differences (the function runs in a process of its own): a higher
    # chosen score lowers the loss, a higher rejected score raises it.
    chosen, rejected, step = (torch.tensor([0.5, -1.0], dtype=torch.float64),
                              torch.tensor([1.0, -3.0], dtype=torch.float64), 1e-4)
    d_chosen = (loss_fn(chosen + step, rejected) - loss_fn(chosen - step, rejected)).double() / (2 * step)
    d_rejected = (loss_fn(chosen, rejected + step) - loss_fn(chosen, rejected - step)).double() / (2 * step)
    require(bool((d_chosen < 0).all() and (d_rejected > 0).all()),
            f"a gradient step must raise the chosen score and lower the rejected one: d loss / d chosen "
            f"{[round(v, 4) for v in d_chosen.tolist()]}, d loss / d rejected {[round(v, 4) for v in d_rejected.tolist()]}")
    trl_pairs = check_against_trl(loss_fn)
    return f"{len(cases)} unseen cases, log 2 for equal scores, the gradient's direction, TRL's loss on {trl_pairs} pairs"


def _unseen_reward_model():
    """A reward model no notebook has: the tiny base with a one-number head, every weight nudged (seeded)."""
    from shared.models import load_tokenizer
    from shared.profiles import PROFILES
    from shared.training.preference import load_reward_model, nudged_copy

    tiny = PROFILES["tiny"]
    return nudged_copy(load_reward_model(tiny), scale=0.05, seed=88), load_tokenizer(profile=tiny)


def check_against_trl(loss_fn) -> int:
    """The learner's loss on TRL's own batches, margins included: RewardTrainer's loss on each pair."""
    import torch

    from shared.training.preference import trl_reward_losses
    from shared.world import data

    model, tokenizer = _unseen_reward_model()
    rows = data.load_task("abstention", "validation")[-5:]
    pairs = [{**pair, "margin": margin} for pair, margin in zip(rows, [0.0, 1.5, 0.3, 0.0, 0.8])]
    for pair in trl_reward_losses(model, tokenizer, pairs):
        with torch.no_grad():
            chosen, rejected = model(input_ids=pair.input_ids, attention_mask=pair.attention_mask).logits[:, 0]
        got = float(loss_fn(chosen[None].double(), rejected[None].double(),
                            torch.tensor([pair.margin], dtype=torch.float64)).sum())
        require(abs(got - pair.loss) <= 1e-5 * max(1.0, abs(pair.loss)),
                f"on a real pair with margin {pair.margin:g} TRL's RewardTrainer computes {pair.loss:.6f}, "
                f"yours {got:.6f}")
    return len(pairs)


def expected_config(profile, output_dir: str, changes: dict) -> dict:
    """What the RewardConfig must say, field by field: section 2's list (its fixed settings are every rung's)."""
    return {**fixed_trainer_settings(profile, output_dir), **profile.train("reward"), **changes}


def check_reward_config(reward_config, profile) -> str:
    from trl import RewardConfig

    return check_config_cases(reward_config, profile, "reward", hidden.cases(RUNG, "CONFIG_CASES", CONFIG_CASES),
                              expected_config, RewardConfig)


def _scoring_cases() -> tuple[list[str], list[str]]:
    """Prompts and answers of many lengths, more than one batch of them, and one answer with no text at all."""
    import random

    from shared.world import data

    rng = random.Random(8080)
    rows = data.load_task("abstention", "validation") + data.load_task("closed_qa", "validation")
    picked = rng.sample(rows, 90)
    prompts = [row["prompt"] for row in picked]
    answers = [row.get("chosen") or row.get("answer") for row in picked]
    answers[3] = ""
    answers[17] = answers[17] + " " + " ".join(rng.choice(answers[:40]) for _ in range(5))  # a long run-on
    return prompts, answers


def check_reward_scores(reward_scores) -> str:
    import torch

    from shared.evaluation.rewards import reward_scores as reference

    model, tokenizer = _unseen_reward_model()
    prompts, answers = _scoring_cases()
    got = reward_scores(model, tokenizer, prompts, answers)
    require(isinstance(got, torch.Tensor), f"must return a tensor, returned {type(got).__name__}")
    require(tuple(got.shape) == (len(prompts),), f"shape {tuple(got.shape)} for {len(prompts)} answers: expected "
                                                 f"({len(prompts)},), one score per answer")
    expected = reference(model, tokenizer, prompts, answers)
    worst = float((got.double() - expected.double()).abs().max())
    first = int((got.double() - expected.double()).abs().argmax())
    require(worst <= 1e-4, f"off by up to {worst:.3g} (answer {first + 1}, {answers[first][:40]!r}: expected "
                           f"{float(expected[first]):.4f}, got {float(got[first]):.4f})")
    single = reward_scores(model, tokenizer, prompts[5:6], answers[5:6])
    require(tuple(single.shape) == (1,) and abs(float(single[0]) - float(expected[5])) <= 1e-4,
            f"one answer on its own scores {single.tolist()}, in a batch {float(expected[5]):.4f}")
    return f"{len(prompts)} unseen answers (an empty one and a long one among them), on an unseen model"


# -- what the run saved ---------------------------------------------------------------------------------
def verify_outputs(ctx: Context) -> None:
    outputs = ctx.outputs()
    saved = ctx.collect("metrics were saved and are valid numbers", lambda: read_saved(outputs),
                        hint="Run section 7 (it writes metrics.json) and keep its keys.")

    def measure_all() -> dict:
        require(bool(saved), "needs the saved metrics, which name the models to measure (see above)")
        # Where the models lie is checked before the cache is asked: a byte-identical copy elsewhere must not pass.
        for key in ("sft_model", "dpo_model", "dpo_reference"):
            require(inside(saved[key], ctx.outputs_root),
                    f"metrics.json names {saved[key]} as {key}: the checker uses only models this run trained "
                    "or earlier rungs saved in the same outputs folder")
        files = [outputs / "reward-model", saved["sft_model"], saved["dpo_model"], saved["dpo_reference"]]
        return ctx.measure(files, lambda: reload_and_measure(outputs, saved, ctx.profile),
                           settings=(saved["beta"], saved["best_of_n"]["seed"], check_seed()))

    measured = ctx.collect(
        "the saved reward model reloads: one score per answer, on the SFT model's architecture", measure_all,
        hint="Section 7 saves the reward model with save_pretrained; do not move or edit it, nor the models "
             "metrics.json names.")
    bars = THRESHOLDS[ctx.profile.name]  # the checker's own profile: never one a notebook wrote down
    ctx.criterion(f"ranks at least {bars['pairwise']:.0%} of the held-out pairs the right way",
                  lambda: check_pairwise(measured, bars),
                  hint="Train with the profile's sizes (section 2) on the training pairs, and save that model.")
    ctx.criterion("ranks new pairs about as well as the held-out ones (it never trained on them)",
                  lambda: check_fresh(measured),
                  hint="Train on the train split only: the held-out pairs are for measuring.")
    ctx.criterion("best-of-n, sampled again with the saved seed, gives the saved figures",
                  lambda: check_best_of_n(saved, measured),
                  hint="Keep section 4 as it is (n = 16, the SFT model, your reward_scores) and save its curve.")
    ctx.criterion("DPO's implicit reward, recomputed from the models metrics.json names, agrees",
                  lambda: check_implicit(saved, measured),
                  hint="Section 5 reads rung 06's model (or trains its recipe); save what it measured.")
    ctx.criterion("saved figures agree with the reward model", lambda: check_saved_agree(saved, measured),
                  hint="metrics.json must hold what the notebook measured: no hand edits.")


def read_saved(outputs: Path) -> dict:
    metrics = read_json(outputs / "metrics.json", "metrics")
    accuracy = metrics.get("pairwise_accuracy")
    require(isinstance(accuracy, dict) and isinstance(accuracy.get("held-out"), dict),
            "metrics.json has no 'pairwise_accuracy' figures for the held-out pairs")
    finite_fraction(accuracy["held-out"].get("all"), "metrics.json pairwise_accuracy['held-out']['all']")
    implicit = metrics.get("implicit_reward_accuracy")
    require(isinstance(implicit, dict), "metrics.json has no 'implicit_reward_accuracy' figures")
    finite_fraction(implicit.get("all"), "metrics.json implicit_reward_accuracy['all']")
    beta = metrics.get("beta")
    require(isinstance(beta, (int, float)) and not isinstance(beta, bool) and math.isfinite(beta) and beta > 0,
            f"metrics.json beta is {beta!r}, not a positive number")
    curve = metrics.get("best_of_n")
    require(isinstance(curve, dict) and isinstance(curve.get("seed"), int) and not isinstance(curve.get("seed"), bool)
            and curve.get("n") == [1, 2, 4, 8, 16], "metrics.json best_of_n must hold the seed and n = 1 ... 16")
    for group in ("recorded", "unrecorded"):
        values = (curve.get("judge") or {}).get(group)
        require(isinstance(values, list) and len(values) == 5,
                f"metrics.json best_of_n['judge'][{group!r}] must hold one figure per n")
        for value in values:
            finite_fraction(value, f"metrics.json best_of_n['judge'][{group!r}]")
    folders = {}
    for key in ("sft_model", "dpo_model", "dpo_reference"):
        folder = metrics.get(key)
        require(isinstance(folder, str) and folder, f"metrics.json does not name the {key.replace('_', ' ')}")
        folders[key] = outputs.parent / folder  # relative to the outputs folder
    return {**metrics, **folders}


def load_reward_model(folder: Path, profile):
    """The saved reward model: a sequence-classification model with one output, shaped like the SFT model."""
    from transformers import AutoModelForSequenceClassification

    from shared.checking.artefacts import load_failure
    from shared.models import load_tokenizer

    require((folder / "config.json").is_file(), f"no saved reward model ({folder.name}/config.json is missing): "
                                                "run section 7")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=profile.torch_dtype)
        tokenizer = load_tokenizer(folder, profile)
    except Exception as error:
        raise load_failure("reward model", error) from error
    require(model.config.num_labels == 1, f"the saved model gives {model.config.num_labels} numbers per answer: "
                                          "a reward model gives one (num_labels=1)")
    require(model.config.pad_token_id == tokenizer.pad_token_id,
            "the saved model's pad_token_id is not the tokenizer's: it would read its score at the wrong token")
    return model.eval(), tokenizer


def reload_and_measure(outputs: Path, saved: dict, profile) -> dict:
    """The reward model ranks the held-out pairs and new ones; best-of-n again; DPO's implicit reward again."""
    import torch

    from shared.checking.artefacts import load_saved_model
    from shared.evaluation.rewards import best_of_n, implicit_rewards, pairwise_accuracy, reward_scores
    from shared.models import load_model
    from shared.world import data, preferences
    from shared.world.generator import build_world

    reward_model, tokenizer = load_reward_model(outputs / "reward-model", profile)
    sft_model, _ = load_saved_model(saved["sft_model"], profile, hint="the SFT model the notebook started from")
    body = {name: p.shape for name, p in reward_model.base_model.named_parameters()}
    require(body == {name: p.shape for name, p in sft_model.base_model.named_parameters()},
            "the reward model's network is not shaped like the SFT model's: it was not made from it")

    def ranked(pairs: list[dict]) -> dict:
        prompts = [pair["prompt"] for pair in pairs]
        return pairwise_accuracy(reward_scores(reward_model, tokenizer, prompts, [p["chosen"] for p in pairs]),
                                 reward_scores(reward_model, tokenizer, prompts, [p["rejected"] for p in pairs]),
                                 pairs)

    heldout = data.load_task("abstention", "heldout")
    fresh = preferences.abstention_pairs(build_world(), seed=check_seed())["heldout"]
    curve = best_of_n(sft_model, tokenizer, heldout, n=BEST_OF_N, seed=saved["best_of_n"]["seed"],
                      judge=preferences.judge,
                      score=lambda prompts, answers: reward_scores(reward_model, tokenizer, prompts, answers))
    try:
        policy = load_model(saved["dpo_reference"], profile, adapter=saved["dpo_model"])
        reference = load_model(saved["dpo_reference"], profile)
    except Exception as error:
        raise CheckFailed(f"the DPO model metrics.json names does not load ({type(error).__name__}: "
                          f"{str(error)[:160]})") from error
    with torch.no_grad():
        implicit = pairwise_accuracy(*implicit_rewards(policy, reference, tokenizer, heldout, saved["beta"]), heldout)
    return {"heldout": ranked(heldout), "fresh": ranked(fresh), "best_of_n": {k: curve[k] for k in ("judge", "proxy")},
            "implicit": implicit}


def _by_kind(accuracy: dict) -> str:
    return ", ".join(f"{kind.replace('_', ' ')} {value:.0%}" for kind, value in accuracy.items() if kind != "all")


def check_pairwise(measured: dict, bars: dict) -> str:
    heldout = require_measured(measured)["heldout"]
    shown = f"{heldout['all']:.1%} of the held-out pairs ({_by_kind(heldout)})"
    require(heldout["all"] >= bars["pairwise"], f"{shown}; needed {bars['pairwise']:.0%}")
    return shown


def check_fresh(measured: dict) -> str:
    heldout, fresh = require_measured(measured)["heldout"]["all"], measured["fresh"]["all"]
    require(heldout - fresh <= FRESH_GAP,
            f"{heldout:.1%} of the held-out pairs but {fresh:.1%} of new pairs like them: was the reward model "
            "trained on the held-out pairs?")
    return f"{fresh:.1%} of new pairs about the held-out people (FT_CHECK_SEED), {heldout:.1%} of the held-out ones"


def check_best_of_n(saved: dict, measured: dict) -> str:
    require(bool(saved), "needs the saved figures (see above)")
    again = require_measured(measured)["best_of_n"]["judge"]
    for group in ("recorded", "unrecorded"):
        for n, said, found in zip([1, 2, 4, 8, 16], saved["best_of_n"]["judge"][group], again[group]):
            require(abs(said - found) <= BEST_OF_N_AGREEMENT,
                    f"metrics.json says best-of-{n} is judged right on {said:.1%} of the {group} questions; "
                    f"sampled again with seed {saved['best_of_n']['seed']}, {found:.1%}")
    recorded = again["recorded"]
    return f"right fact {recorded[0]:.0%} at n = 1, {recorded[-1]:.0%} at n = 16 (within {BEST_OF_N_AGREEMENT:.0%})"


def check_implicit(saved: dict, measured: dict) -> str:
    require(bool(saved), "needs the saved figures (see above)")
    found, said = require_measured(measured)["implicit"]["all"], saved["implicit_reward_accuracy"]["all"]
    require(abs(said - found) <= AGREEMENT, f"metrics.json says DPO's implicit reward ranks {said:.1%} of the held-out "
                                            f"pairs right; recomputed, {found:.1%}")
    return f"{found:.1%} of the held-out pairs ({_by_kind(measured['implicit'])})"


def check_saved_agree(saved: dict, measured: dict) -> str:
    require(bool(saved) and bool(measured), "needs both the saved figures and the recomputed ones (see above)")
    said, found = saved["pairwise_accuracy"]["held-out"], measured["heldout"]
    for kind, value in found.items():
        require(is_finite_number(said.get(kind)) and abs(said[kind] - value) <= AGREEMENT,
                f"metrics.json says the held-out pairs {kind.replace('_', ' ')}: {said.get(kind)!r}; the saved "
                f"reward model: {value:.1%}")
    return f"within {AGREEMENT:.0%}"


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG))
