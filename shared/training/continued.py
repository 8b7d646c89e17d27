"""Continued pretraining with TRL: plain language modelling on texts, the way the base model learned what it
knows -- the loss on every token, no chat template, no prompt and answer. Rung 01 uses it to put new facts into
the base model (biographies and question-and-answer pages) and to teach it a reading skill.

    trainer = text_trainer(load_model(profile=profile), tokenizer, profile, "knowledge", out_dir, texts)
    trainer.train()
"""

from __future__ import annotations

from shared.training.recipe import common_config_kwargs, quiet_datasets, ready


def text_trainer(model, tokenizer, profile, stage: str, output_dir, texts: list[str], **overrides):
    """An ``SFTTrainer`` that trains `model` on `texts` as a language model, with the profile's sizes for `stage`
    (any of them overridden by keyword). TRL reads a dataset with a ``text`` field as plain text."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from shared.progress import quiet

    config = SFTConfig(**{**common_config_kwargs(SFTConfig, profile, output_dir), "lr_scheduler_type": "cosine",
                          **profile.train(stage), **overrides})
    with quiet_datasets(quiet()):
        trainer = SFTTrainer(model=model, args=config, processing_class=tokenizer,
                             train_dataset=Dataset.from_list([{"text": text} for text in texts]))
    return ready(trainer)
