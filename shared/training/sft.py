"""SFT helpers: TRL's own tokenisation of chat examples (the reference a learner's version is checked
against) and the accuracy of a run under a learner's scoring function."""

from __future__ import annotations

from shared.training.recipe import keep_trainable_weights_in_fp32  # noqa: F401  (its home was here: sft.keep_...)
from shared.training.recipe import common_config_kwargs, quiet_datasets, ready
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
        # activation_checkpointing named: left unset, TRL's default comes in under its deprecated name and warns.
        args = SFTConfig(output_dir=tmp, completion_only_loss=True, report_to=[], use_cpu=True,
                         max_length=None, disable_tqdm=True, dataset_num_proc=None, activation_checkpointing=False)
        with quiet_datasets():
            trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                 processing_class=tokenizer)
        prepared = trainer.train_dataset
        return [{"input_ids": list(r["input_ids"]), "labels": list(r["labels"])} for r in prepared]


def example_difference(tokenizer, built: dict, reference: dict) -> str:
    """Where a built SFT example ({"input_ids", "completion_mask"}) first parts from TRL's tokenisation of it
    (a row of `trl_tokenized`), in words a learner can act on; "" when they agree. Line breaks show as ⏎: a
    missing one is the commonest difference, and invisible in a plain decode."""
    ids, mask = list(built["input_ids"]), [int(m) for m in built["completion_mask"]]
    expected_ids, expected_mask = list(reference["input_ids"]), [int(label != -100) for label in reference["labels"]]
    if len(ids) != len(mask):
        return f"input_ids has {len(ids)} tokens but completion_mask {len(mask)}: one mask value per token"
    if ids != expected_ids:
        at = next((i for i, (a, b) in enumerate(zip(ids, expected_ids)) if a != b), min(len(ids), len(expected_ids)))
        before, yours, template = ids[max(0, at - 6):at], ids[at:at + 6], expected_ids[at:at + 6]
        return (f"the token ids part from the chat template's at token {at}: after {_shown(tokenizer, before)} "
                f"yours go on {_shown(tokenizer, yours)}, the template's {_shown(tokenizer, template)}")
    wrong = [i for i, (a, b) in enumerate(zip(mask, expected_mask)) if a != b]
    if not wrong:
        return ""
    named = "; ".join(f"token {i} {_shown(tokenizer, ids[i:i + 1])} is {mask[i]}, expected {expected_mask[i]}"
                      for i in wrong[:3])
    more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
    count = "1 mask value differs" if len(wrong) == 1 else f"{len(wrong)} mask values differ"
    return f"{count}: {named}{more} -- {sum(expected_mask)} answer tokens expected, {sum(mask)} marked"


def _shown(tokenizer, ids: list[int]) -> str:
    return repr(tokenizer.decode(ids).replace("\n", "⏎")) if ids else "nothing (the sequence ends)"


def score_with(is_correct, results) -> dict[str, float]:
    """Accuracy per task of evals.TaskResult objects, scored by `is_correct(prediction, reference, task)`."""
    return {task: round(sum(bool(is_correct(e["prediction"], e["answer"], task)) for e in r.examples)
                        / max(1, r.n), 4)
            for task, r in results.items()}


def prompt_completion_rows(examples: list[dict]) -> list[dict]:
    """Task examples in TRL's conversational prompt-completion format (TRL applies the chat template and,
    with ``completion_only_loss``, puts the loss on the completion only -- what rung 02 builds by hand)."""
    return [{"prompt": to_messages(e, with_answer=False), "completion": to_messages(e)[1:]} for e in examples]


def sft_trainer(model, tokenizer, profile, stage: str, output_dir, peft_config=None, tasks=None, examples=None,
                trainer_class=None, **overrides):
    """The course's SFT recipe from rung 02 as one call: the profile's training sizes for `stage` (any of them
    overridden by keyword), the training examples of `tasks` (rung 02's three unless named) -- or the `examples`
    given (task examples, e.g. a mixture) -- loss on the answer only.

    Pass a PEFT ``LoraConfig`` as `peft_config` to train an adapter instead of every weight (rungs 03, 04), and
    an ``SFTTrainer`` subclass as `trainer_class` to change its loss (rung 10's EWC penalty).
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from shared.progress import quiet
    from shared.world import data

    settings = {**profile.train(stage), **overrides}
    limit = settings.pop("examples_per_task", None)
    if examples is None:
        examples = data.mixed("train", limit_per_task=limit, tasks=tasks or data.TASKS)
    config = SFTConfig(**{**common_config_kwargs(SFTConfig, profile, output_dir), "completion_only_loss": True,
                          "lr_scheduler_type": "cosine", **settings})
    with quiet_datasets(quiet()):  # TRL's tokenising passes show progress bars of their own
        trainer = (trainer_class or SFTTrainer)(model=model, args=config, processing_class=tokenizer,
                                                peft_config=peft_config,
                                                train_dataset=Dataset.from_list(prompt_completion_rows(examples)))
    return ready(trainer)


def rung02_model(profile, rung: str):
    """The SFT model the preference and RL rungs start from, and where it lies: the one rung 02 saved
    (``<outputs>/02-sft/model``, when its metrics say it was made with this profile), or else the course's SFT
    recipe trained now and saved in `rung`'s folder (``<outputs>/<rung>/sft-model``; a second run reuses it).

    Returns (model, tokenizer, folder). The figures of the later rungs' lessons come from the recipe; a rung 02
    model of your own is trained the same way and scores within a point or two of it.
    """
    import json

    from shared.models import load_model, load_tokenizer
    from shared.paths import outputs_dir

    saved = outputs_dir("02-sft", create=False)
    try:
        made_with = json.loads((saved / "metrics.json").read_text(encoding="utf-8")).get("profile")
    except (OSError, ValueError, AttributeError):
        made_with = None
    folder = saved / "model"
    if made_with != profile.name or not (folder / "config.json").is_file():
        folder = outputs_dir(rung) / "sft-model"
        if not (folder / "config.json").is_file():
            print(f"No rung 02 model saved with the {profile.name} profile: training rung 02's recipe now "
                  "(about 80 s on the tiny profile) ...")
            _train_recipe(profile, folder)
    print(f"starting from the SFT model in {folder}")
    return load_model(folder, profile=profile), load_tokenizer(folder, profile=profile), folder


def _train_recipe(profile, folder) -> None:
    import tempfile

    from shared.models import load_model, load_tokenizer

    model, tokenizer = load_model(profile=profile), load_tokenizer(profile=profile)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = sft_trainer(model, tokenizer, profile, "sft", tmp)
        trainer.train()
        trainer.save_model(str(folder))
    tokenizer.save_pretrained(str(folder))
