"""Reinforcement learning from a reward function: TRL's GRPO (group relative policy optimisation).

    def exact_sum(prompts, completions, answer, **columns):   # one score per completion
        return [float(c[0]["content"].strip() == a) for c, a in zip(completions, answer)]

    trainer = grpo_trainer(model, tokenizer, profile, "grpo", OUT / "trainer", prompts_dataset, exact_sum)

For each prompt the model writes ``num_generations`` answers; each answer's advantage is its reward against its
group's mean, so no value model is needed. Watch the logged ``reward``: with one update per generation and
``beta=0`` (TRL's default) the logged loss stays near zero by construction.
"""

from __future__ import annotations

from shared.training.recipe import common_config_kwargs, ready


def prompt_rows(examples: list[dict]) -> list[dict]:
    """Answer-task examples as GRPO's conversational prompts; the other fields ride along to the reward functions
    (a reward function gets every dataset column by name, e.g. ``answer``)."""
    return [{**e, "prompt": [{"role": "user", "content": e["prompt"]}]} for e in examples]


def grpo_trainer(model, tokenizer, profile, stage: str, output_dir, train_dataset, reward_funcs, peft_config=None,
                 **overrides):
    """TRL's GRPOTrainer with the profile's settings for `stage` (``num_generations``, ``max_completion_length``,
    the learning rate... any overridden by keyword). `reward_funcs`: one or a list of functions, each called as
    ``f(prompts=..., completions=..., completion_ids=..., **dataset_columns)`` and returning one float per
    completion, or reward models (a trained ``preference.reward_trainer`` model scores prompt and completion).

    With ``beta > 0`` TRL loads the KL reference from ``model.name_or_path``: save a model trained in this notebook
    and load it from there first, or the reference is the base on disk.
    """
    from trl import GRPOConfig, GRPOTrainer

    config = GRPOConfig(**{**common_config_kwargs(GRPOConfig, profile, output_dir), **profile.train(stage),
                           **overrides})
    trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=config, train_dataset=train_dataset,
                          processing_class=tokenizer, peft_config=peft_config)
    return ready(trainer)
