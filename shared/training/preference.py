"""Learning from preferences: DPO on the model itself, or a reward model that scores answers (for RL later).

    trainer = dpo_trainer(model, tokenizer, profile, "dpo", OUT / "trainer", preference_dataset(pairs))
    losses = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1)   # what it minimises
    trl_losses = trl_dpo_losses(model, reference, tokenizer, pairs, beta=0.1)              # TRL's own, per pair
    reward_model = load_reward_model(profile, sft_folder)        # the SFT model with a one-number head
    trainer = reward_trainer(reward_model, tokenizer, profile, "reward", OUT / "reward", preference_dataset(pairs))
    losses = bradley_terry_loss(chosen_scores, rejected_scores)  # what it minimises
    trl_losses = trl_reward_losses(reward_model, tokenizer, pairs)   # TRL's own, per pair

Both read the same rows: a ``prompt``, the ``chosen`` answer and the ``rejected`` one, in TRL's conversational
format (``preference_rows``), so the chat template frames them exactly as SFT framed the answers.
"""

from __future__ import annotations

import copy

from typing import NamedTuple

from shared.progress import quiet
from shared.training.recipe import common_config_kwargs, quiet_datasets, ready


def preference_rows(pairs: list[dict]) -> list[dict]:
    """Preference examples (prompt, chosen, rejected strings) as TRL's conversational preference rows."""
    return [{"prompt": [{"role": "user", "content": p["prompt"]}],
             "chosen": [{"role": "assistant", "content": p["chosen"]}],
             "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs]


def preference_dataset(pairs: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(preference_rows(pairs))


def preferred_ft_trainer(model, tokenizer, profile, stage: str, output_dir, pairs: list[dict], peft_config=None,
                         **overrides):
    """SFT on the chosen answers only: the DPO paper's "preferred-FT" baseline, and how it makes a reference
    model when none was trained on the preference data. The rejected answers are ignored; the loss is on the
    answer tokens, as in rung 02. `stage` names the profile's sizes (any overridden by keyword)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = [{"prompt": [{"role": "user", "content": p["prompt"]}],
             "completion": [{"role": "assistant", "content": p["chosen"]}]} for p in pairs]
    config = SFTConfig(**{**common_config_kwargs(SFTConfig, profile, output_dir), "completion_only_loss": True,
                          **profile.train(stage), **overrides})
    with quiet_datasets(quiet()):
        trainer = SFTTrainer(model=model, args=config, processing_class=tokenizer, peft_config=peft_config,
                             train_dataset=Dataset.from_list(rows))
    return ready(trainer)


def nudged_copy(model, scale: float = 0.02, seed: int = 0):
    """A copy of `model` with every weight moved by `scale` times Gaussian noise (seeded): a policy that differs
    from its reference, for checking DPO's arithmetic on real log-probabilities without training."""
    import torch

    policy = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator).to(parameter))
    return policy


def frozen_copy(model):
    """The reference a DPO policy is held close to: the model as it is before this training, never updated."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


def dpo_trainer(model, tokenizer, profile, stage: str, output_dir, train_dataset, eval_dataset=None,
                ref_model=None, peft_config=None, **overrides):
    """TRL's DPOTrainer with the profile's settings for `stage` (``beta``, the learning rate... any overridden by
    keyword). The loss raises the chosen answer's log-probability ratio to the reference over the rejected one's.

    Without `ref_model` or `peft_config` the reference is a frozen copy of `model` as passed: TRL itself would
    reload the model from ``model.name_or_path`` -- the base on disk, not an SFT model trained in this notebook.
    With `peft_config` no copy is made: the reference is the model with its adapter switched off.
    """
    from trl import DPOConfig, DPOTrainer

    if ref_model is None and peft_config is None and not hasattr(model, "peft_config"):
        ref_model = frozen_copy(model)
    config = DPOConfig(**{**common_config_kwargs(DPOConfig, profile, output_dir), **profile.train(stage),
                          **overrides})
    with quiet_datasets(quiet()):  # TRL tokenises the pairs here
        trainer = DPOTrainer(model=model, ref_model=ref_model, args=config, train_dataset=train_dataset,
                             eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config)
    return ready(trainer)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """The DPO loss of each pair (TRL's default, ``loss_type="sigmoid"``), from four (n,) tensors of sequence
    log-probabilities (summed over each answer's tokens) and beta:

        -log sigmoid(beta * [(log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))])

    beta times each log-ratio is the answer's implicit reward; the loss is Bradley-Terry's on their difference.
    Returns (n,) losses: the trainer minimises their mean. log 2 for every pair while policy = reference."""
    import torch.nn.functional as F

    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    return -F.logsigmoid(chosen_reward - rejected_reward)


class TRLPair(NamedTuple):
    """One preference pair as TRL's DPOTrainer sees it: its batch (row 0 the chosen answer, row 1 the rejected)
    and the loss TRL computes on it."""
    input_ids: object        # (2, seq) prompt + answer token ids, padded on the right
    attention_mask: object   # (2, seq)
    completion_mask: object  # (2, seq) 1 on the answer's tokens (the ones DPO sums), 0 on prompt and padding
    loss: float              # DPOTrainer's loss on this pair alone


def trl_dpo_losses(model, ref_model, tokenizer, pairs: list[dict], beta: float = 0.1) -> list[TRLPair]:
    """TRL's own DPO loss for each pair: DPOTrainer tokenises and batches the pair and computes its training
    loss (``compute_loss``), one pair at a time. The reference the course's ``dpo_loss`` -- and a learner's --
    is held against. No weight changes: TRL's loss is read, never stepped on (the trainer gives both models a
    ``fused_lm_head`` forward option; their ordinary forward is as it was)."""
    import tempfile

    import torch
    from trl import DPOConfig, DPOTrainer

    with tempfile.TemporaryDirectory() as tmp:
        config = DPOConfig(output_dir=tmp, beta=beta, report_to=[], use_cpu=True, bf16=False, disable_tqdm=True,
                           dataset_num_proc=None, activation_checkpointing=False, max_length=None)
        with quiet_datasets():
            trainer = DPOTrainer(model=model, ref_model=ref_model, args=config, processing_class=tokenizer,
                                 train_dataset=preference_dataset(pairs))
        found = []
        for row in trainer.train_dataset:
            batch = trainer.data_collator([row])
            with torch.no_grad():
                loss = trainer.compute_loss(trainer.model, batch)
            found.append(TRLPair(batch["input_ids"], batch["attention_mask"], batch["completion_mask"],
                                 float(loss)))
    return found


def load_reward_model(profile, name=None):
    """A reward model: the base with a one-number head (``num_labels=1``) in place of its next-token head.

    The head starts random, drawn from the profile's seed (the same call gives the same head; the caller's random
    state is left as it was); training on preference pairs teaches it to score a chosen answer above a rejected
    one. The pad token is set so that a batch of answers of different lengths is scored at each one's last token.
    """
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as transformers_logging

    from shared.models import load_tokenizer

    name = str(name or profile.base_model)
    tokenizer = load_tokenizer(name, profile)
    previous = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # "score.weight newly initialised" is the point, not a warning
    try:
        with torch.random.fork_rng():
            torch.manual_seed(profile.seed)
            model = AutoModelForSequenceClassification.from_pretrained(
                name, num_labels=1, dtype=profile.torch_dtype, pad_token_id=tokenizer.pad_token_id,
                **({"device_map": {"": 0}} if profile.device == "cuda" else {}))
    finally:
        transformers_logging.set_verbosity(previous)
    return model


def bradley_terry_loss(chosen_rewards, rejected_rewards, margin=None):
    """The reward model's loss on each pair (TRL's RewardTrainer): the negative log-likelihood of the chosen answer
    winning under Bradley-Terry, P(chosen beats rejected) = sigmoid(r_chosen - r_rejected),

        -log sigmoid(r_chosen - r_rejected - margin)

    from two (n,) tensors of scores and an optional (n,) margin (how much better the chosen answer must score:
    a pair rated "much better" asks for more). Returns (n,) losses; log 2 for a pair scored equal."""
    import torch.nn.functional as F

    difference = chosen_rewards - rejected_rewards
    if margin is not None:
        difference = difference - margin
    return -F.logsigmoid(difference)


class TRLRewardPair(NamedTuple):
    """One preference pair as TRL's RewardTrainer sees it: its batch (row 0 the chosen conversation, row 1 the
    rejected) and the loss TRL computes on it."""
    input_ids: object        # (2, seq) the whole conversation's token ids, padded on the right
    attention_mask: object   # (2, seq)
    margin: float | None     # the pair's margin, when it has one
    loss: float              # RewardTrainer's loss on this pair alone (no centring term)


def trl_reward_losses(model, tokenizer, pairs: list[dict]) -> list[TRLRewardPair]:
    """TRL's own reward-model loss for each pair: RewardTrainer tokenises and batches the pair (with its
    ``margin`` when the pair has one) and computes its training loss, one pair at a time, with no centring term
    (``center_rewards_coefficient=None``). No weight changes. The reference ``bradley_terry_loss`` -- and a
    learner's -- is held against."""
    import tempfile

    import torch
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    rows = preference_rows(pairs)
    if any("margin" in pair for pair in pairs):
        rows = [{**row, "margin": float(pair.get("margin", 0.0))} for row, pair in zip(rows, pairs)]
    with tempfile.TemporaryDirectory() as tmp:
        config = RewardConfig(output_dir=tmp, report_to=[], use_cpu=True, bf16=False, disable_tqdm=True,
                              dataset_num_proc=None, activation_checkpointing=False,
                              center_rewards_coefficient=None)
        with quiet_datasets():
            trainer = RewardTrainer(model=model, args=config, processing_class=tokenizer,
                                    train_dataset=Dataset.from_list(rows))
        found = []
        for row in trainer.train_dataset:
            batch = trainer.data_collator([row])
            with torch.no_grad():
                loss = trainer.compute_loss(trainer.model, dict(batch))
            margin = float(batch["margin"][0]) if "margin" in batch else None
            found.append(TRLRewardPair(batch["input_ids"], batch["attention_mask"], margin, float(loss)))
    return found


def reward_trainer(model, tokenizer, profile, stage: str, output_dir, train_dataset, eval_dataset=None,
                   peft_config=None, **overrides):
    """TRL's RewardTrainer (Bradley-Terry loss: the chosen answer's score above the rejected one's) with the
    profile's settings for `stage`. `model` is a ``load_reward_model`` model (one output per sequence)."""
    from trl import RewardConfig, RewardTrainer

    config = RewardConfig(**{**common_config_kwargs(RewardConfig, profile, output_dir), **profile.train(stage),
                             **overrides})
    with quiet_datasets(quiet()):
        trainer = RewardTrainer(model=model, args=config, train_dataset=train_dataset, eval_dataset=eval_dataset,
                                processing_class=tokenizer, peft_config=peft_config)
    return ready(trainer)


def recipe_loss() -> dict:
    """Rung 06's recipe's loss, as DPOConfig arguments: DPO's pair term plus an SFT term on the chosen answers,
    counted twice. From one SFT model, DPO seeds 0/1/2 lost 2.3-4.5 points of the recorded facts with equal
    weights, 0.6-3.3 with the SFT term doubled (rungs/06-dpo/README.md)."""
    return {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 2.0]}


def rung06_model(profile, rung: str, sft_folder):
    """Rung 06's DPO model and the SFT model it started from (its reference), for rungs that read DPO's implicit
    reward: the adapter rung 06 saved (``<outputs>/06-dpo/model``, when its metrics say it was made with this
    profile), or else rung 06's recipe -- a LoRA adapter (r 16), DPO with an SFT term, the profile's "dpo" sizes
    -- trained now on `sft_folder` and saved in `rung`'s folder (``<outputs>/<rung>/dpo-model``; a second run
    reuses it).

    Returns (policy, reference, adapter folder, reference folder)."""
    import json
    import tempfile

    from shared.models import load_model, load_tokenizer
    from shared.paths import outputs_dir
    from shared.training.lora import lora_config
    from shared.world import data

    saved = outputs_dir("06-dpo", create=False)
    try:
        metrics = json.loads((saved / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metrics = {}
    if (isinstance(metrics, dict) and metrics.get("profile") == profile.name
            and isinstance(metrics.get("sft_model"), str) and (saved / "model" / "adapter_config.json").is_file()):
        adapter, reference_folder = saved / "model", saved.parent / metrics["sft_model"]
    else:
        adapter, reference_folder = outputs_dir(rung) / "dpo-model", sft_folder
        if not (adapter / "adapter_config.json").is_file():
            print(f"No rung 06 model saved with the {profile.name} profile: training rung 06's recipe now "
                  "(about 30 s on the tiny profile) ...")
            tokenizer = load_tokenizer(sft_folder, profile=profile)
            with tempfile.TemporaryDirectory() as tmp:
                trainer = dpo_trainer(load_model(sft_folder, profile=profile), tokenizer, profile, "dpo", tmp,
                                      preference_dataset(data.load_task("abstention", "train")),
                                      peft_config=lora_config(r=16, alpha=32), **recipe_loss())
                trainer.train()
                trainer.model.save_pretrained(str(adapter))
    print(f"DPO's policy: the adapter in {adapter}, on its reference {reference_folder}")
    return (load_model(reference_folder, profile=profile, adapter=adapter),
            load_model(reference_folder, profile=profile), adapter, reference_folder)
