"""Learning from preferences: DPO on the model itself, or a reward model that scores answers (for RL later).

    trainer = dpo_trainer(model, tokenizer, profile, "dpo", OUT / "trainer", preference_dataset(pairs))
    reward_model = load_reward_model(profile)
    trainer = reward_trainer(reward_model, tokenizer, profile, "reward", OUT / "reward", preference_dataset(pairs))

Both read the same rows: a ``prompt``, the ``chosen`` answer and the ``rejected`` one, in TRL's conversational
format (``preference_rows``), so the chat template frames them exactly as SFT framed the answers.
"""

from __future__ import annotations

import copy

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


def load_reward_model(profile, name=None):
    """A reward model: the base with a one-number head (``num_labels=1``) in place of its next-token head.

    The head starts random; training on preference pairs teaches it to score a chosen answer above a rejected
    one. The pad token is set so that a batch of answers of different lengths is scored at each one's last token.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as transformers_logging

    from shared.models import load_tokenizer

    name = str(name or profile.base_model)
    tokenizer = load_tokenizer(name, profile)
    previous = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # "score.weight newly initialised" is the point, not a warning
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            name, num_labels=1, dtype=profile.torch_dtype, pad_token_id=tokenizer.pad_token_id,
            **({"device_map": {"": 0}} if profile.device == "cuda" else {}))
    finally:
        transformers_logging.set_verbosity(previous)
    return model


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
