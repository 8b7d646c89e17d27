"""What every trainer the course builds shares: the config settings all its recipes agree on, quiet output in
executed notebooks, and the fp32 repair a GPU without bf16 needs.

    config = DPOConfig(**{**common_config_kwargs(DPOConfig, profile, output_dir), **profile.train("dpo")})
    trainer = ready(DPOTrainer(model=model, args=config, ...))   # quiet logs; fp32 trainable weights under fp16
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import contextmanager

from shared.progress import quiet


def common_config_kwargs(config_class, profile, output_dir) -> dict:
    """Settings every recipe uses, for any TRL config class (SFTConfig, DPOConfig, RewardConfig, GRPOConfig).

    A setting the class has no field for is left out (GRPOConfig has no ``max_length``: it caps the completion
    instead), so one dict serves all four; a recipe's own settings and the caller's overrides go on top."""
    common = dict(
        output_dir=str(output_dir),
        report_to=[],             # no wandb/tensorboard: the loss history stays in trainer.state.log_history
        save_strategy="no",       # a rung saves the model it wants, once, at the end
        seed=profile.seed,
        use_cpu=profile.device == "cpu",
        disable_tqdm=quiet(),     # no progress bar in a notebook run under CI
        logging_steps=5,
        max_length=profile.max_seq_length,
        dataset_num_proc=None,    # tokenise in this process: worker processes cost more than they save here
        **profile.precision(),    # fp32 on the CPU; bf16 or fp16 on a GPU (TRL would choose bf16 otherwise)
    )
    fields = {f.name for f in dataclasses.fields(config_class)}
    return {name: value for name, value in common.items() if name in fields}


@contextmanager
def quiet_datasets(when: bool = True):
    """Silence the progress bars and INFO lines of ``datasets`` while a trainer tokenises its data."""
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    logger = logging.getLogger("datasets")
    level, bars = logger.level, is_progress_bar_enabled()
    if when:
        logger.setLevel(logging.ERROR)
        disable_progress_bar()
    try:
        yield
    finally:
        logger.setLevel(level)
        if bars:
            enable_progress_bar()


def quiet_logs(trainer):
    """What the trainer shows while it trains, kept short: under CI or FT_QUIET=1 no log dict every
    ``logging_steps``, and in Jupyter a loss table of the last few rows under the progress bar.

    With progress bars off, transformers adds a ``PrinterCallback`` that prints ``{'loss': ...}`` each time it
    logs; in an executed notebook that is a page of dicts. In Jupyter its ``NotebookProgressCallback`` adds a row
    to a table under the bar each time: a 330-step run leaves 66 rows to scroll past before the cell's results.
    The losses are still recorded in ``trainer.state.log_history`` (what the loss plots read)."""
    from transformers.trainer_callback import PrinterCallback
    from transformers.utils.notebook import NotebookProgressCallback

    for callback in list(trainer.callback_handler.callbacks):
        if isinstance(callback, PrinterCallback) and quiet():
            trainer.remove_callback(callback)
        elif type(callback) is NotebookProgressCallback:
            trainer.remove_callback(callback)
            trainer.add_callback(recent_rows_callback())
    return trainer


LIVE_TABLE_ROWS = 5   # the loss table under a trainer's progress bar in Jupyter: its newest rows


def recent_rows_callback(rows: int = LIVE_TABLE_ROWS):
    """transformers' notebook progress bar, its table cut to the newest `rows` rows (the header stays)."""
    from transformers.utils.notebook import NotebookProgressCallback

    class RecentRows(NotebookProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            super().on_log(args, state, control, logs=logs, **kwargs)
            self._cut()

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            super().on_evaluate(args, state, control, metrics=metrics, **kwargs)
            self._cut()

        def _cut(self):
            table = self.training_tracker.inner_table if self.training_tracker is not None else None
            if table is not None and len(table) > rows + 1:
                del table[1:-rows]

    return RecentRows()


def ready(trainer):
    """What every builder does to the trainer it made: fp32 trainable weights unless it trains in bf16, quiet
    logs -- and where it samples a group of answers to each prompt (GRPO), a model that reads the prompt once for
    the group (the same answers; on a CPU, a tenth off each step)."""
    from shared.evaluation.generation import read_prompts_once

    if not trainer.args.bf16:
        keep_trainable_weights_in_fp32(trainer.model)
    if getattr(trainer.args, "num_generations", 1) > 1:
        read_prompts_once(trainer.model)
    return quiet_logs(trainer)


def keep_trainable_weights_in_fp32(model) -> int:
    """Put the weights being trained back in fp32; returns how many tensors it changed.

    On a 4-bit base TRL's SFTTrainer stores the adapter in bf16 (the QLoRA paper's choice), and the gpu profile
    loads a full model in fp16 on a T4. That suits a GPU training in bf16, and nothing else:
    * a GPU without bf16 (a Colab T4) trains in fp16 with a gradient scaler, which cannot unscale half-precision
      gradients and stops at the first step;
    * a CPU trains in fp32, and there a bf16 adapter makes every LoRA product a bf16 one: rung 04's QLoRA step
      took 0.60 s with TRL's bf16 adapter and 0.27 s in fp32 (rung 03's LoRA step on the fp32 base: 0.21 s).
    fp32 trainable weights work with any precision, and an adapter is a small share of the model."""
    import torch

    changed = 0
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
            changed += 1
    return changed
