"""SFT helpers: TRL's own tokenisation of chat examples (the reference a learner's version is checked
against) and the accuracy of a run under a learner's scoring function."""

from __future__ import annotations

import logging

from shared.world.data import to_messages


def trl_tokenized(examples: list[dict], model, tokenizer) -> list[dict]:
    """How TRL's SFTTrainer tokenises prompt-completion chat examples: input_ids and labels (-100 = no loss).

    The examples go to SFTTrainer in TRL's conversational prompt-completion format; with
    ``completion_only_loss=True`` the trainer's labels ignore every prompt token.
    """
    import tempfile

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = prompt_completion_rows(examples)
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(output_dir=tmp, completion_only_loss=True, report_to=[], use_cpu=True,
                         max_length=None, disable_tqdm=True, dataset_num_proc=None)
        quiet_datasets = logging.getLogger("datasets")
        previous = quiet_datasets.level
        quiet_datasets.setLevel(logging.ERROR)
        try:
            from datasets.utils.logging import disable_progress_bar, enable_progress_bar

            disable_progress_bar()
            trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                 processing_class=tokenizer)
        finally:
            enable_progress_bar()
            quiet_datasets.setLevel(previous)
        prepared = trainer.train_dataset
        return [{"input_ids": list(r["input_ids"]), "labels": list(r["labels"])} for r in prepared]


def score_with(is_correct, results) -> dict[str, float]:
    """Accuracy per task of evals.TaskResult objects, scored by `is_correct(prediction, reference, task)`."""
    return {task: round(sum(bool(is_correct(e["prediction"], e["answer"], task)) for e in r.examples)
                        / max(1, r.n), 4)
            for task, r in results.items()}


def prompt_completion_rows(examples: list[dict]) -> list[dict]:
    """Task examples in TRL's conversational prompt-completion format (TRL applies the chat template and,
    with ``completion_only_loss``, puts the loss on the completion only -- what rung 02 builds by hand)."""
    return [{"prompt": to_messages(e, with_answer=False), "completion": to_messages(e)[1:]} for e in examples]


def sft_trainer(model, tokenizer, profile, stage: str, output_dir, peft_config=None, **overrides):
    """The course's SFT recipe from rung 02 as one call: the profile's training sizes for `stage` (any of them
    overridden by keyword), the three tasks' training examples, loss on the answer only.

    Pass a PEFT ``LoraConfig`` as `peft_config` to train an adapter instead of every weight (rungs 03, 04).
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from shared.world import data
    from shared.progress import quiet

    if quiet():  # TRL's tokenising passes show progress bars of their own
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
    settings = {**profile.train(stage), **overrides}
    examples = data.mixed("train", limit_per_task=settings.pop("examples_per_task"))
    config = SFTConfig(
        output_dir=str(output_dir), completion_only_loss=True, lr_scheduler_type="cosine", logging_steps=5,
        save_strategy="no", report_to=[], seed=0, max_length=profile.max_seq_length,
        use_cpu=profile.device == "cpu", disable_tqdm=quiet(), dataset_num_proc=None,
        **profile.precision(), **settings)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(prompt_completion_rows(examples)),
                         processing_class=tokenizer, peft_config=peft_config)
    if config.fp16:
        keep_trainable_weights_in_fp32(trainer.model)
    return trainer


def keep_trainable_weights_in_fp32(model) -> int:
    """Put the weights being trained back in fp32; returns how many tensors it changed.

    On a 4-bit base TRL stores the adapter in bf16 (the QLoRA paper's choice). A GPU without bf16 (a Colab T4)
    trains in fp16 with a gradient scaler, which cannot unscale bf16 gradients and stops at the first step;
    fp32 adapters work with either precision, and cost little: an adapter is a small share of the model."""
    import torch

    changed = 0
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
            changed += 1
    return changed
