"""Reinforcement learning from a reward function: TRL's GRPO (group relative policy optimisation).

    def exact_sum(prompts, completions, answer, **columns):   # one score per completion
        return [float(c[0]["content"].strip() == a) for c, a in zip(completions, answer)]

    trainer = grpo_trainer(model, tokenizer, profile, "grpo", OUT / "trainer", prompts_dataset, exact_sum)

For each prompt the model writes ``num_generations`` answers; each answer's advantage is its reward against its
group's mean, so no value model is needed. Watch the logged ``reward``: with one update per generation and
``beta=0`` (TRL's default) the logged loss stays near zero by construction.

``group_advantages`` and ``grpo_loss`` are the course's references for the two halves of GRPO's update (rung 07's
learner writes both); ``trl_grpo_loss`` is GRPOTrainer's own loss on a batch built by hand, which the tests hold
the references against.
"""

from __future__ import annotations

from typing import NamedTuple

from shared.training.recipe import common_config_kwargs, ready

# TRL's names for how the per-token losses of a batch become one number (GRPOConfig.loss_type).
LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")
SCALINGS = ("group", "batch", "none")  # GRPOConfig.scale_rewards
STD_EPSILON = 1e-4  # TRL divides by std + 1e-4, so a group of equal rewards divides 0 by 1e-4
# Sizes a GRPO stage holds for the notebook (how many prompts to train on), not for GRPOConfig.
COURSE_ONLY = ("prompts",)


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
    from trl import GRPOTrainer

    return ready(GRPOTrainer(model=model, reward_funcs=reward_funcs,
                             args=grpo_config(profile, stage, output_dir, **overrides), train_dataset=train_dataset,
                             processing_class=tokenizer, peft_config=peft_config))


def grpo_config(profile, stage: str, output_dir, **overrides):
    """The GRPOConfig of the course's recipe: every trainer's settings, the profile's `stage` sizes, `overrides`."""
    from trl import GRPOConfig

    settings = {name: value for name, value in profile.train(stage).items() if name not in COURSE_ONLY}
    return GRPOConfig(**{**common_config_kwargs(GRPOConfig, profile, output_dir), **settings, **overrides})


def group_advantages(rewards, num_generations: int, scale_rewards: str = "group"):
    """Each completion's advantage: its reward minus the mean reward of its group (the `num_generations`
    completions of one prompt, which lie next to each other), divided by the group's standard deviation
    ("group"), the whole batch's ("batch"), or nothing ("none"). Standard deviations are unbiased (n - 1), and
    STD_EPSILON keeps a group of equal rewards at advantage 0. As GRPOTrainer computes them."""
    import torch

    if scale_rewards not in SCALINGS:
        raise ValueError(f"scale_rewards must be one of {SCALINGS}, not {scale_rewards!r}")
    groups = rewards.reshape(-1, num_generations)
    advantages = (groups - groups.mean(dim=1, keepdim=True)).reshape(-1)
    if scale_rewards == "group":
        std = groups.std(dim=1, keepdim=True).expand_as(groups).reshape(-1)
    elif scale_rewards == "batch":
        std = rewards.std().expand_as(rewards)
    else:
        return advantages
    return advantages / (std + STD_EPSILON) if num_generations > 1 else torch.zeros_like(advantages)


def grpo_loss(logps, old_logps, advantages, mask, *, ref_logps=None, beta: float = 0.0, epsilon: float = 0.2,
              loss_type: str = "dapo", max_completion_length: int | None = None):
    """GRPO's loss for one batch, as GRPOTrainer computes it (one process, no gradient accumulation).

    logps, old_logps, ref_logps, mask: (B, T) -- each completion token's log-probability under the policy being
    trained, under the policy that sampled it, under the reference; mask 1 on real completion tokens.
    advantages: (B,), one per completion.

    Per token: ratio = exp(logps - old_logps); the clipped surrogate -min(ratio * A, clip(ratio, 1-eps, 1+eps) * A);
    with beta > 0, plus beta times the k3 estimate of KL(policy || reference), exp(r) - r - 1 with
    r = ref_logps - logps, weighted by the ratio (TRL's use_bias_correction_kl). Then one number, by `loss_type`:
    "grpo" averages each completion's tokens, then the completions; "bnpo" and "dapo" average every token of the
    batch (dapo over the whole generation batch, which is this batch here); "dr_grpo" sums every token and divides
    by B * max_completion_length.
    """
    import torch

    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, not {loss_type!r}")
    ratio = torch.exp(logps - old_logps)
    advantages = advantages.unsqueeze(1)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    if beta != 0.0:
        log_ratio_to_reference = ref_logps - logps
        per_token = per_token + beta * (torch.exp(log_ratio_to_reference) - log_ratio_to_reference - 1) * ratio
    mask = mask.to(per_token.dtype)
    if loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("dr_grpo divides by B * max_completion_length: pass max_completion_length")
        return (per_token * mask).sum() / (per_token.shape[0] * max_completion_length)
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


class TRLBatch(NamedTuple):
    loss: float                 # GRPOTrainer's loss on the batch
    logps: object               # (B, T) the policy's log-probabilities of the completion tokens, as TRL computes them
    inputs: dict                # what was handed to the trainer: ids, masks, advantages, old and reference logps


def trl_grpo_loss(model, tokenizer, prompts: list[str], completions: list[str], advantages, *, seed: int = 0,
                  beta: float = 0.0, loss_type: str = "dapo", epsilon: float = 0.2, max_completion_length: int = 24,
                  spread: float = 0.3) -> TRLBatch:
    """GRPOTrainer's own loss on a batch built by hand: `prompts` with one completion each, the `advantages`
    given, and old and reference log-probabilities drawn near the policy's (`spread` apart, from `seed`) so that
    ratios differ from 1, some are clipped and the KL term is not zero. The trainer is in eval mode: one
    process, no gradient accumulation, which is what ``grpo_loss`` describes."""
    import tempfile

    import torch
    from datasets import Dataset
    from trl import GRPOTrainer

    from shared.evaluation.generation import chat_prompt_ids
    from shared.training.recipe import quiet_datasets

    prompt_id_rows = [chat_prompt_ids(tokenizer, p) for p in prompts]
    completion_rows = [tokenizer(c, add_special_tokens=False)["input_ids"][:max_completion_length]
                       for c in completions]
    pad = tokenizer.pad_token_id
    prompt_width, completion_width = max(map(len, prompt_id_rows)), max(map(len, completion_rows))
    # Prompts padded on the left and completions on the right, as GRPOTrainer lays out a batch.
    prompt_ids = torch.tensor([[pad] * (prompt_width - len(r)) + r for r in prompt_id_rows])
    prompt_mask = torch.tensor([[0] * (prompt_width - len(r)) + [1] * len(r) for r in prompt_id_rows])
    completion_ids = torch.tensor([r + [pad] * (completion_width - len(r)) for r in completion_rows])
    completion_mask = torch.tensor([[1] * len(r) + [0] * (completion_width - len(r)) for r in completion_rows])
    with tempfile.TemporaryDirectory() as tmp:
        config = grpo_config_for_check(tmp, beta=beta, loss_type=loss_type, epsilon=epsilon,
                                       max_completion_length=max_completion_length)
        with quiet_datasets():
            trainer = GRPOTrainer(model=model, reward_funcs=lambda completions, **_: [0.0] * len(completions),
                                  args=config, processing_class=tokenizer,
                                  train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]))
        trainer.model.eval()
        with torch.no_grad():
            logps, _, _ = trainer._get_per_token_logps_and_entropies(
                trainer.model, torch.cat([prompt_ids, completion_ids], 1),
                torch.cat([prompt_mask, completion_mask], 1), completion_width)
            generator = torch.Generator().manual_seed(seed)
            inputs = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
                      "completion_mask": completion_mask, "advantages": advantages.float(),
                      "num_items_in_batch": completion_mask.sum(),
                      "old_per_token_logps": logps + spread * torch.randn(logps.shape, generator=generator),
                      "ref_per_token_logps": logps + spread * torch.randn(logps.shape, generator=generator)}
            loss = trainer._compute_loss(trainer.model, inputs)
    return TRLBatch(float(loss), logps, inputs)


def grpo_config_for_check(output_dir, **settings):
    """A plain GRPOConfig on the CPU, no logging: what trl_grpo_loss hands its trainer."""
    from trl import GRPOConfig

    return GRPOConfig(output_dir=str(output_dir), report_to=[], use_cpu=True, disable_tqdm=True, num_generations=2,
                      per_device_train_batch_size=2, activation_checkpointing=False, **settings)


def step_tracker(measure, every: int, start: dict | None = None):
    """A TrainerCallback that measures the policy at the start, every `every` steps and at the end:
    ``measure(model, step)`` returns a dict of figures, and ``tracker.points`` is the list of them, each with its
    "step". The model is put back in training mode after each measurement. `start`: the step-0 point when another
    tracker has already measured this starting policy (``other.points[0]``), so it is not measured twice."""
    from transformers import TrainerCallback

    class StepTracker(TrainerCallback):
        def __init__(self):
            self.points = []

        def _measure(self, model, step):
            if self.points and self.points[-1]["step"] == step:
                return
            self.points.append({"step": step, **measure(model, step)})
            model.train()  # measuring left it in eval mode

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.points = []
            if start is None:
                self._measure(model, 0)
            else:
                self.points.append({**start, "step": 0})

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % every == 0:
                self._measure(model, state.global_step)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            self._measure(model, state.global_step)

    return StepTracker()


def stop_at(step: int):
    """A TrainerCallback that ends training after `step` steps. Unlike a smaller ``max_steps``, it leaves the
    learning-rate schedule as the full run has it, so two runs stopped at the same step differ only where their
    settings do."""
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= step:
                control.should_training_stop = True

    return StopAt()


def heldout_tracker(tokenizer, examples: list[dict], every: int, reference=None, kl_prompts: int = 50,
                    start: dict | None = None):
    """A ``step_tracker`` that scores the policy's greedy answers to `examples`: ``tracker.points`` is a list of
    {"step", "accuracy"} -- what RL did to problems it never trains on, beside the reward of those it does. Given
    a `reference` model, each point also holds "kl", how far the policy has moved from it (``sampled_kl`` on the
    first `kl_prompts` problems, 2 answers each, in nats). `start`: as in ``step_tracker``."""
    from shared.evaluation.evals import evaluate_task
    from shared.evaluation.logprobs import sampled_kl
    from shared.world import tasks

    task = examples[0]["task"]
    prompts = [e["prompt"] for e in examples[:kl_prompts]]

    def measure(model, step):
        point = {"accuracy": evaluate_task(model, tokenizer, task, examples=examples).accuracy}
        if reference is not None:
            point["kl"] = sampled_kl(model, reference, tokenizer, prompts, n=2, seed=step,
                                     max_new_tokens=tasks.get(task).max_new_tokens)
        return point

    return step_tracker(measure, every, start)
