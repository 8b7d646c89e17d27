"""Checker for rung 06 (DPO): `make check RUNG=06 [NOTEBOOK=path]`.

It runs a copy of the notebook, then verifies rather than trusts:
* the learner's `sequence_logprobs`, `dpo_loss` and `dpo_config` are tested on cases the notebook never shows,
  against the course's references and TRL's own DPO loss;
* the saved adapter is put back on the SFT model it was trained from; both models answer the held-out questions
  here, the judge scores them, and the figures are compared with what the notebook saved.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere, even before `pip install -e`

from shared.checking import (CheckFailed, Context, check_config_cases, fixed_trainer_settings, hidden, inside,  # noqa: E402
                             main, read_json, require, require_measured)
from shared.checking.figures import AGREEMENT, finite_fraction  # noqa: E402
from shared.checking.guards import Forbidden  # noqa: E402

RUNG = "06"
# Per profile: what the DPO model must do on the held-out questions, measured by the checker.
# tiny -- the notebook's recipe (LoRA r 16, loss_type ["sigmoid", "sft"] with loss_weights [1.0, 2.0], the
#         profile's "dpo" sizes). `make bench RUNG=06 SEEDS=0,1,2` (each seed trains its own SFT model too):
#         abstains on the questions the world cannot answer 96.7 / 95.6 / 97.2%; recorded facts right 96.1 /
#         95.0 / 98.3% against the SFT models' 96.7 / 100 / 98.9% (a drop of 0.6 / 5.0 / 0.6 points); win-rate
#         against SFT on the unanswerable questions 98.3 / 97.8 / 98.6% (the SFT model abstains 0%, so each
#         abstention is a win). From one SFT model (seed 0), DPO seeds 0 / 1 / 2: abstains 96.7 / 95.6 / 95.0%,
#         recorded facts 96.1 / 93.3 / 95.0% (a drop of 0.6 / 3.3 / 1.7). With the SFT term at equal weight the
#         drops were 3.9 / 4.5 / 2.3. All nine pairings of SFT seed and DPO seed (rows: SFT 0 / 1 / 2; within a
#         row, DPO 0 / 1 / 2): drops 0.6 3.3 1.7 | 4.4 5.0 3.9 | 0.6 3.3 0.6, abstention 95.0-99.4%. Each bar
#         sits below the worst run: 85% abstention, a drop of at most 6 points, 80% win-rate. Seed 0 on a second
#         CPU (AVX-512 without BF16, the same code): abstains 95.6%, facts 93.3% (a drop of 3.3), win-rate 97.8%.
# gpu  -- first estimates, not yet measured on a GPU. A hub model never read the tiny world: it knows none of the
#         recorded facts before or after, so the drop bar only says it did not get worse.
# learnt_from_rejected -- the share of held-out pairs whose rejected answer abstains on a recorded fact where the
#         saved model's implicit reward (its log-ratio to the SFT model) prefers the fact. Preferred-FT, trained on
#         the chosen answers alone, abstains and keeps the facts as well as DPO does (section 5), but it makes
#         abstaining *more* likely, recorded questions included. From the seed-0 SFT model, seeds 0/1/2, 90 pairs
#         each: preferred-FT 0 / 0 / 0% (the abstention's log-ratio +132 nats on average), the recipe 100 / 100 /
#         100% (-89 / -74 / -83), DPO alone 100 / 100 / 100%. The bar sits far from both.
THRESHOLDS = {
    "tiny": {"abstains": 0.85, "recorded_drop": 0.06, "win_rate": 0.80, "learnt_from_rejected": 0.80},
    "gpu": {"abstains": 0.80, "recorded_drop": 0.06, "win_rate": 0.75, "learnt_from_rejected": 0.70},
}

# Sizes and changes the notebook never uses: (sizes put in the profile's "dpo" stage, changes passed as keyword
# arguments). dpo_config must carry each into the DPOConfig it returns.
CONFIG_CASES = [
    ({"learning_rate": 3.3e-4, "beta": 0.25, "num_train_epochs": 3, "per_device_train_batch_size": 2,
      "warmup_steps": 0.2}, {}),
    ({}, {"loss_type": ["ipo"], "beta": 0.7, "max_steps": 3, "logging_steps": 1, "max_length": 64}),
]

# The references each graded function is checked against, which it may therefore not call.
FORBIDDEN = {
    "sequence_logprobs": Forbidden("the sum over the answer tokens is yours to write; the course's is what it is "
                                   "checked against", modules=("trl",),
                                   functions=("shared.evaluation.logprobs.sequence_logprobs",
                                              "shared.evaluation.logprobs.completion_logprobs")),
    "dpo_loss": Forbidden("the DPO loss is yours to write; the course's and TRL's are what it is checked against",
                          modules=("trl",), functions=("shared.training.preference.dpo_loss",
                                                       "shared.training.preference.trl_dpo_losses")),
    "dpo_config": Forbidden("the DPOConfig is yours to write; the course's recipe is what it is checked against",
                            functions=("shared.training.preference.dpo_trainer",
                                       "shared.training.recipe.common_config_kwargs")),
}


def check(ctx: Context) -> None:
    ctx.run_notebook()
    check_graded(ctx)
    ctx.from_the_run(verify_outputs)
    answers = ctx.answers()
    ctx.review("written answer: the derivation of the DPO loss", answers.get("derivation"),
               hint="Write the steps in your own words in section 7.")
    ctx.review("written answer: what DPO alone did, and why", answers.get("dpo-alone"),
               hint="Write a few sentences of your own in section 7, from what sections 2 and 4 showed.")


def check_graded(ctx: Context) -> None:
    graded = ctx.graded(list(FORBIDDEN), forbidden=FORBIDDEN)
    ctx.criterion("sequence_logprobs sums the answer tokens' log-probabilities, in float64",
                  lambda: check_sequence_logprobs(graded["sequence_logprobs"]),
                  hint="Section 2's rules: which position's logits predict which token, what lines up with what, "
                       "and what the mask (not the labels) says counts; the failing case above shows how far off.")
    ctx.criterion("dpo_loss computes TRL's DPO loss on unseen cases, stable at extreme margins",
                  lambda: check_dpo_loss(graded["dpo_loss"]),
                  hint="Section 3, step 4: one loss per pair, from the two log-ratios (policy against reference) "
                       "and beta; torch.nn.functional.logsigmoid stays finite where log(sigmoid(.)) does not.")
    ctx.criterion("dpo_config writes the profile's sizes and the changes asked into a DPOConfig",
                  lambda: check_dpo_config(graded["dpo_config"], ctx.profile),
                  hint="Start from {**profile.train('dpo'), **changes} and pass every entry to DPOConfig under "
                       "its own name, beside the settings listed in section 4; the changes come last.")


# -- the graded functions -----------------------------------------------------------------------------
def _logprob_cases():
    """Random logits over a small vocabulary, masks of every shape (an answer in the middle, one at the end, a
    row with no answer at all), labels with -100 where the mask is 0 -- and, in the last batch, the prompt's own
    token ids there, as in TRL's batches: the mask, not the labels, says which tokens count."""
    import torch

    generator = torch.Generator().manual_seed(606)
    cases = []
    for number, (batch, seq, vocab) in enumerate(((3, 9, 13), (1, 4, 5), (4, 12, 50)), 1):
        logits = 4 * torch.randn(batch, seq, vocab, generator=generator, dtype=torch.float64)
        labels = torch.randint(0, vocab, (batch, seq), generator=generator)
        mask = torch.zeros(batch, seq, dtype=torch.long)
        for row in range(batch):
            start = [2, seq - 2, seq, 1][row % 4]
            end = seq if row % 2 == 0 else max(start, seq - 1)
            mask[row, start:end] = 1
        cases.append((logits, labels if number == 3 else labels.masked_fill(mask == 0, -100), mask))
    return cases


def check_sequence_logprobs(sequence_logprobs) -> str:
    import torch

    from shared.evaluation.logprobs import sequence_logprobs as reference

    cases = _logprob_cases()
    for number, (logits, labels, mask) in enumerate(cases, 1):
        got = sequence_logprobs(logits.clone(), labels.clone(), mask.clone())
        require(isinstance(got, torch.Tensor), f"must return a tensor, returned {type(got).__name__}")
        require(tuple(got.shape) == (logits.shape[0],), f"case {number}: shape {tuple(got.shape)}, expected "
                                                         f"({logits.shape[0]},): one sum per row")
        require(got.dtype == torch.float64, f"case {number}: dtype {got.dtype}, expected torch.float64")
        unfinite = [row for row, value in enumerate(got.tolist()) if not math.isfinite(value)]
        empty = [row for row in range(len(mask)) if not mask[row].any()]
        require(not unfinite, f"case {number}: row(s) {unfinite} gave {[got[r].item() for r in unfinite]}"
                              + (f"; row(s) {empty} have no answer token, and a sum over none is 0" if empty else ""))
        expected = reference(logits, labels, mask)
        worst = float((got - expected).abs().max())
        with_ids = ", the prompt's token ids in its labels" if bool((labels[mask == 0] >= 0).any()) else ""
        require(worst <= 1e-6, f"case {number} (batch {logits.shape[0]}, {int(mask.sum())} answer tokens"
                               f"{with_ids}): off by "
                               f"up to {worst:.3g} nats (expected {[round(v, 4) for v in expected.tolist()]}, got "
                               f"{[round(v, 4) for v in got.tolist()]})")
    empty = int((cases[0][2].sum(dim=1) == 0).sum())
    return (f"{len(cases)} unseen batches: -100 labels or the prompt's token ids, {empty} row without an answer "
            "among them")


def _loss_cases():
    import torch

    generator = torch.Generator().manual_seed(6060)
    cases = []
    for n, scale, beta in ((7, 20.0, 0.1), (5, 60.0, 0.5), (3, 5.0, 2.0)):
        tensors = [-scale * torch.rand(n, generator=generator, dtype=torch.float64) for _ in range(4)]
        cases.append((*tensors, beta))
    # Margins far beyond what float64 sigmoid can hold: log(sigmoid(-800)) is -inf, logsigmoid is -800.
    far = [torch.tensor(values, dtype=torch.float64) for values in ([-1.0, -2000.0], [-2000.0, -1.0], [-1.0, -1.0],
                                                                     [-1.0, -1.0])]
    cases.append((*far, 0.4))
    return cases


def check_dpo_loss(dpo_loss) -> str:
    import torch

    from shared.training.preference import dpo_loss as reference

    for number, (pc, pr, rc, rr, beta) in enumerate(_loss_cases(), 1):
        got = dpo_loss(pc.clone(), pr.clone(), rc.clone(), rr.clone(), beta)
        require(isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(pc.shape),
                f"case {number}: must return one loss per pair, a tensor of shape {tuple(pc.shape)}")
        require(bool(torch.isfinite(got).all()), f"case {number}: non-finite losses {got.tolist()} (margins of "
                                                 "hundreds of nats are allowed: use logsigmoid)")
        expected = reference(pc, pr, rc, rr, beta)
        # relative: a loss of hundreds of nats computed in float32 is right to its last 7 digits, not to 1e-6
        worst = float(((got.double() - expected).abs() / expected.abs().clamp(min=1.0)).max())
        require(worst <= 1e-6, f"case {number} (beta {beta}): off by up to {worst:.3g} (relative) "
                               f"(expected {[round(v, 5) for v in expected.tolist()]})")
    same = torch.tensor([-3.0, -40.0, -0.5], dtype=torch.float64)
    start = dpo_loss(same, same.flip(0), same, same.flip(0), 0.3)
    require(torch.allclose(start.double(), torch.full((3,), math.log(2), dtype=torch.float64), atol=1e-9),
            f"with the policy equal to the reference every loss must be log 2, got {start.tolist()}")
    # The gradient's direction, by finite differences (the function runs in a process of its own, so its
    # autograd graph cannot come back): a little more chosen log-probability lowers the loss, more rejected raises it.
    chosen, rejected = torch.tensor([-5.0, -9.0], dtype=torch.float64), torch.tensor([-6.0, -2.0], dtype=torch.float64)
    refs = (torch.tensor([-4.0, -9.5], dtype=torch.float64), torch.tensor([-6.5, -3.0], dtype=torch.float64))
    step = 1e-4

    def loss_at(c, r):
        return dpo_loss(c, r, *refs, 0.1).double()

    d_chosen = (loss_at(chosen + step, rejected) - loss_at(chosen - step, rejected)) / (2 * step)
    d_rejected = (loss_at(chosen, rejected + step) - loss_at(chosen, rejected - step)) / (2 * step)
    require(bool((d_chosen < 0).all() and (d_rejected > 0).all()),
            f"a gradient step must raise the chosen answers and lower the rejected ones: d loss / d chosen "
            f"{[round(v, 4) for v in d_chosen.tolist()]}, d loss / d rejected "
            f"{[round(v, 4) for v in d_rejected.tolist()]}")
    trl_pairs = check_against_trl(dpo_loss)
    return (f"{len(_loss_cases())} unseen cases, log 2 at the start, the gradient's direction, TRL's loss on "
            f"{trl_pairs} pairs")


def check_against_trl(dpo_loss) -> int:
    """The learner's loss on TRL's own batches: a policy (the tiny base, every weight nudged) against the base."""
    import torch

    from shared.evaluation.logprobs import sequence_logprobs
    from shared.models import load_model, load_tokenizer
    from shared.training.preference import nudged_copy, trl_dpo_losses
    from shared.world import data

    reference_model = load_model()
    policy = nudged_copy(reference_model, seed=66)
    rows = data.load_task("abstention", "validation")
    pairs = rows[-3:] + [r for r in rows if r["meta"]["kind"] == "invents"][-2:]
    for pair in trl_dpo_losses(policy, reference_model, load_tokenizer(), pairs, beta=0.3):
        with torch.no_grad():
            mine = sequence_logprobs(policy(input_ids=pair.input_ids, attention_mask=pair.attention_mask).logits,
                                     pair.input_ids, pair.completion_mask)
            ref = sequence_logprobs(reference_model(input_ids=pair.input_ids,
                                                    attention_mask=pair.attention_mask).logits,
                                    pair.input_ids, pair.completion_mask)
        got = float(dpo_loss(mine[:1], mine[1:], ref[:1], ref[1:], 0.3).sum())
        require(abs(got - pair.loss) <= 1e-5 * max(1.0, abs(pair.loss)),
                f"on a real pair TRL's DPOTrainer computes {pair.loss:.6f}, yours {got:.6f}")
    return len(pairs)


def expected_config(profile, output_dir: str, changes: dict) -> dict:
    """What the DPOConfig must say, field by field: section 4's list (its fixed settings are every rung's)."""
    return {**fixed_trainer_settings(profile, output_dir), **profile.train("dpo"), **changes}


def check_dpo_config(dpo_config, profile) -> str:
    from trl import DPOConfig

    return check_config_cases(dpo_config, profile, "dpo", hidden.cases(RUNG, "CONFIG_CASES", CONFIG_CASES),
                              expected_config, DPOConfig)


# -- what the run saved ---------------------------------------------------------------------------------
def verify_outputs(ctx: Context) -> None:
    outputs = ctx.outputs()
    saved = ctx.collect("metrics were saved and are valid numbers", lambda: read_saved(outputs),
                        hint="Run section 8 (it writes metrics.json) and keep its keys.")
    sft_folder = saved.get("sft_folder")
    def measure_both() -> dict:
        # Checked before the cache is asked: a byte-identical copy elsewhere must not pass as measured.
        require(sft_folder is not None and inside(sft_folder, ctx.outputs_root),
                f"metrics.json names {sft_folder} as the SFT model: the checker uses only a model this run trained "
                "or rung 02 saved in the same outputs folder")
        return ctx.measure([outputs / "model", sft_folder], lambda: reload_and_measure(outputs, saved, ctx.profile))

    measured = ctx.collect(
        "the saved adapter goes back on the SFT model it was trained from", measure_both,
        hint="Section 8 saves the adapter with save_pretrained; do not move or edit the files, nor the SFT model "
             "the notebook started from.")
    bars = THRESHOLDS[ctx.profile.name]  # the checker's own profile: never one a notebook wrote down
    ctx.criterion(f"abstains on at least {bars['abstains']:.0%} of the held-out questions the world cannot answer",
                  lambda: check_abstention(measured, bars),
                  hint="Section 4 shows why DPO alone does not get there; train the section 5 model and save it.")
    ctx.criterion(f"keeps the recorded facts: at most {bars['recorded_drop'] * 100:.0f} points below the SFT model",
                  lambda: check_recorded(measured, bars),
                  hint="Section 5 lists the recorded questions your model answers wrong: abstaining where the "
                       "world records the fact is wrong too, and so is a miscopied name. Keep the profile's sizes "
                       "(a higher learning rate or more epochs forget more).")
    ctx.criterion(f"beats the SFT model on at least {bars['win_rate']:.0%} of the unanswerable questions "
                  "(judged, ties half)", lambda: check_win_rate(measured, bars),
                  hint="The judge prefers the abstention to any invented answer: the model must abstain.")
    ctx.criterion("learnt from the rejected answers: on held-out recorded questions it finds abstaining less "
                  f"likely than the SFT model did, on at least {bars['learnt_from_rejected']:.0%} of them",
                  lambda: check_learnt_from_rejected(measured, bars),
                  hint="Save the model section 5 trained with DPOTrainer: a model fine-tuned on the chosen answers "
                       "alone abstains as well, but never learns what the rejected answers say.")
    ctx.criterion("saved figures agree with the models", lambda: check_saved_agree(saved, measured),
                  hint="metrics.json must hold what the notebook measured: no hand edits.")


def read_saved(outputs: Path) -> dict:
    metrics = read_json(outputs / "metrics.json", "metrics")
    for key in ("baseline", "after"):
        require(isinstance(metrics.get(key), dict), f"metrics.json has no {key!r} figures")
        for name in ("abstains_when_unrecorded", "right_when_recorded"):
            finite_fraction(metrics[key].get(name), f"metrics.json {key}[{name!r}]")
    finite_fraction(metrics.get("win_rate_unanswerable"), "metrics.json win_rate_unanswerable")
    folder = metrics.get("sft_model")
    require(isinstance(folder, str) and folder, "metrics.json does not name the SFT model it started from")
    return {**metrics, "sft_folder": outputs.parent / folder}  # relative to the outputs folder


def reload_and_measure(outputs: Path, saved: dict, profile) -> dict:
    """Both models answer the held-out questions here; the judge scores them."""
    from shared.checking.artefacts import load_saved_adapter, load_saved_model
    from shared.evaluation import rewards
    from shared.evaluation.generation import generate
    from shared.world import data, preferences

    sft_folder = saved["sft_folder"]
    sft_model, tokenizer = load_saved_model(sft_folder, profile, hint="the SFT model the notebook started from")
    loaded = load_saved_adapter(outputs / "model", profile, sft_folder)
    heldout = data.load_task("abstention", "heldout")
    prompts = [e["prompt"] for e in heldout]
    sft_answers = generate(sft_model, tokenizer, prompts, max_new_tokens=24)
    dpo_answers = generate(loaded["model"], tokenizer, prompts, max_new_tokens=24)
    unanswerable = [i for i, e in enumerate(heldout) if not e["meta"]["recorded"]]
    # The sign of the implicit reward's margin, whatever beta: which answer the adapter moved the model towards.
    chosen, rejected = rewards.implicit_rewards(loaded["model"], sft_model, tokenizer, heldout, beta=1.0)
    return {"implicit_accuracy": rewards.pairwise_accuracy(chosen, rejected, heldout),
            "sft": preferences.behaviour_scores(sft_answers, heldout),
            "dpo": preferences.behaviour_scores(dpo_answers, heldout),
            "win_rate": preferences.win_rate([dpo_answers[i] for i in unanswerable],
                                             [sft_answers[i] for i in unanswerable],
                                             [heldout[i] for i in unanswerable])}


def check_abstention(measured: dict, bars: dict) -> str:
    dpo, sft = require_measured(measured)["dpo"], measured["sft"]
    value = dpo["abstains_when_unrecorded"]
    require(value >= bars["abstains"], f"abstains on {value:.0%} (the SFT model: {sft['abstains_when_unrecorded']:.0%})"
                                       f"; needed {bars['abstains']:.0%}")
    return f"{value:.0%} (the SFT model: {sft['abstains_when_unrecorded']:.0%})"


def check_recorded(measured: dict, bars: dict) -> str:
    dpo, sft = require_measured(measured)["dpo"], measured["sft"]
    drop = sft["right_when_recorded"] - dpo["right_when_recorded"]
    shown = (f"{dpo['right_when_recorded']:.1%} right against the SFT model's {sft['right_when_recorded']:.1%}, "
             f"{dpo['abstains_when_recorded']:.0%} abstained")
    require(drop <= bars["recorded_drop"] + 1e-9, f"{shown}: {drop * 100:.1f} points lost")
    return shown


def check_win_rate(measured: dict, bars: dict) -> str:
    value = require_measured(measured)["win_rate"]
    require(value >= bars["win_rate"], f"win-rate {value:.0%}; needed {bars['win_rate']:.0%}")
    return f"{value:.0%}"


def check_learnt_from_rejected(measured: dict, bars: dict) -> str:
    accuracy = require_measured(measured)["implicit_accuracy"]
    value = accuracy["abstains_on_recorded"]
    shown = (f"the fact preferred over abstaining on {value:.0%} of those pairs (on all held-out pairs: "
             f"{accuracy['all']:.0%})")
    require(value >= bars["learnt_from_rejected"],
            f"{shown}; needed {bars['learnt_from_rejected']:.0%}: next to the SFT model, this model makes abstaining "
            "where the world records the fact more likely, as training on the chosen answers alone does")
    return shown


def check_saved_agree(saved: dict, measured: dict) -> str:
    require(bool(saved) and bool(measured), "needs both the saved figures and the recomputed ones (see above)")
    pairs = [("baseline", "sft"), ("after", "dpo")]
    for saved_key, measured_key in pairs:
        for name in ("abstains_when_unrecorded", "right_when_recorded"):
            said, found = saved[saved_key][name], measured[measured_key][name]
            if abs(said - found) > AGREEMENT:
                raise CheckFailed(f"metrics.json says {saved_key} {name} {said:.1%}, the model scores {found:.1%}")
    require(abs(saved["win_rate_unanswerable"] - measured["win_rate"]) <= AGREEMENT,
            f"metrics.json says win-rate {saved['win_rate_unanswerable']:.1%}, the models give "
            f"{measured['win_rate']:.1%}")
    return f"within {AGREEMENT:.0%}"


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG))
