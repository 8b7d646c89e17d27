"""SFT helpers: TRL's own tokenisation of chat examples (the reference a learner's version is checked
against) and the accuracy of a run under a learner's scoring function."""

from __future__ import annotations

import logging

from shared.data import to_messages


def trl_tokenized(examples: list[dict], model, tokenizer) -> list[dict]:
    """How TRL's SFTTrainer tokenises prompt-completion chat examples: input_ids and labels (-100 = no loss).

    The examples go to SFTTrainer in TRL's conversational prompt-completion format; with
    ``completion_only_loss=True`` the trainer's labels ignore every prompt token.
    """
    import tempfile

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = [{"prompt": to_messages(e, with_answer=False), "completion": to_messages(e)[1:]} for e in examples]
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
