"""Catastrophic forgetting, and three ways to limit it (rung 10).

Fine-tuning on a new task A moves the weights that old tasks B relied on. Three remedies, each with a strength:

* **replay** -- mix a share of B's old training examples into A's (``replay_mixture``);
* **EWC**, elastic weight consolidation (Kirkpatrick et al. 2017) -- a penalty pulling each weight back towards
  its old value, in proportion to how much B's loss depends on it: the diagonal of the Fisher information,
  estimated from B's examples (``fisher_diagonal``), in ``strength / 2 * sum_i F_i (theta_i - theta*_i)^2``
  (``ewc_penalty``), added to TRL's SFT loss by ``ewc_trainer_class``;
* **LoRA** -- train a low-rank adapter instead of every weight (Biderman et al. 2024, "LoRA learns less and
  forgets less"); its rank is the strength.

    mixture = replay_mixture(new_examples, old_examples, fraction=0.5, seed=0)
    fisher, anchor = fisher_diagonal(model, tokenizer, old_examples[:64]), anchor_weights(model)
    sft_trainer(model, ..., trainer_class=ewc_trainer_class(ewc_penalty, fisher, anchor, strength=1e7))
"""

from __future__ import annotations

import random

import torch


def replay_mixture(new: list[dict], old: list[dict], fraction: float, seed: int = 0) -> list[dict]:
    """Every new example and round(fraction * len(new)) old ones drawn without replacement, shuffled (seeded)."""
    if fraction < 0:
        raise ValueError(f"fraction is {fraction}: a share of the new examples, 0 or more")
    count = round(fraction * len(new))
    if count > len(old):
        raise ValueError(f"{count} old examples asked for, {len(old)} there")
    rng = random.Random(seed)
    mixture = list(new) + rng.sample(list(old), count)
    rng.shuffle(mixture)
    return mixture


def answer_loss(model, tokenizer, example: dict) -> torch.Tensor:
    """The SFT loss of one example: mean negative log-likelihood of its answer's tokens (the chat-template turn
    after the prompt, end-of-turn included), the prompt's tokens carrying no loss -- what rung 02 trains on."""
    from shared.evaluation.generation import chat_ids, chat_prompt_ids

    prompt = chat_prompt_ids(tokenizer, example["prompt"])
    full = chat_ids(tokenizer, [{"role": "user", "content": example["prompt"]},
                                {"role": "assistant", "content": example["answer"]}])
    device = next(model.parameters()).device
    input_ids = torch.tensor([full], device=device)
    labels = input_ids.clone()
    labels[:, :len(prompt)] = -100
    return model(input_ids=input_ids, labels=labels).loss


def fisher_diagonal(model, tokenizer, examples: list[dict]) -> dict[str, torch.Tensor]:
    """The diagonal of the empirical Fisher information of the old tasks: for each trainable weight, the mean
    over `examples` of the squared gradient of that example's answer loss. The model's own weights are left as
    they were (and its gradients cleared)."""
    was_training = model.training
    model.eval()  # no dropout: the gradient of the loss as it is
    weights = {name: p for name, p in model.named_parameters() if p.requires_grad}
    fisher = {name: torch.zeros_like(p) for name, p in weights.items()}
    for example in examples:
        model.zero_grad(set_to_none=True)
        answer_loss(model, tokenizer, example).backward()
        for name, p in weights.items():
            if p.grad is not None:
                fisher[name] += p.grad.detach() ** 2
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {name: value / len(examples) for name, value in fisher.items()}


def anchor_weights(model) -> dict[str, torch.Tensor]:
    """A copy of the trainable weights as they are now: where EWC pulls them back to."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def ewc_penalty(model, fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]) -> torch.Tensor:
    """sum over the weights named in `fisher` of F_i * (theta_i - theta*_i)^2: a scalar tensor that carries the
    gradient back to the model's weights."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, p in model.named_parameters():
        if name in fisher:
            total = total + (fisher[name] * (p - anchor[name]) ** 2).sum()
    return total


def ewc_trainer_class(penalty, fisher: dict, anchor: dict, strength: float):
    """An SFTTrainer whose loss is TRL's SFT loss + strength / 2 * penalty(model, fisher, anchor): pass it to
    ``sft_trainer(..., trainer_class=...)``. `penalty` is yours (``ewc_penalty``'s signature)."""
    from trl import SFTTrainer

    class EWCTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                          num_items_in_batch=num_items_in_batch)
            loss, outputs = result if return_outputs else (result, None)
            loss = loss + strength / 2 * penalty(model, fisher, anchor)
            return (loss, outputs) if return_outputs else loss

    return EWCTrainer


# -- measuring: task A (new) and tasks B (old) ------------------------------------------------------------------
NEW_TASK = "two_step"                                   # A: two-step word problems, which rung 02 never taught
OLD_TASKS = ("closed_qa", "extraction", "arithmetic")   # B: rung 02's tasks, and the base model's facts


def a_and_b(model, tokenizer, limit: int | None = None, people: int | None = None) -> dict[str, float]:
    """Held-out accuracy on the new task ("A"), on each old task, the base model's fact recall, and "B": the
    mean of the old tasks' accuracies and the fact recall (each counted alike). `limit` questions per task and
    `people` of the world (None: all) -- fewer for a curve over training, all for the figures that decide."""
    from shared.evaluation.evals import evaluate_task
    from shared.evaluation.probes import cloze_hits
    from shared.world.data import load_task
    from shared.world.generator import build_world

    figures = {"A": evaluate_task(model, tokenizer, NEW_TASK, "heldout", limit).accuracy}
    for task in OLD_TASKS:
        figures[task] = evaluate_task(model, tokenizer, task, "heldout", limit).accuracy
    hits = cloze_hits(model, tokenizer, build_world()["people"][:people])
    figures["fact_recall"] = sum(map(sum, hits.values())) / sum(map(len, hits.values()))
    figures["B"] = sum(figures[name] for name in (*OLD_TASKS, "fact_recall")) / (len(OLD_TASKS) + 1)
    return {name: round(value, 4) for name, value in figures.items()}


def retention_tracker(tokenizer, every: int, limit: int, people: int):
    """A TrainerCallback that measures ``a_and_b`` (on `limit` questions a task and `people` of the world) at the
    start, every `every` steps and at the end: ``tracker.points``, a list of {"step", "A", ..., "B"}."""
    from transformers import TrainerCallback

    class RetentionTracker(TrainerCallback):
        def __init__(self):
            self.points = []

        def _measure(self, model, step):
            if not self.points or self.points[-1]["step"] != step:
                self.points.append({"step": step, **a_and_b(model, tokenizer, limit, people)})
                model.train()  # measuring left it in eval mode

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.points = []
            self._measure(model, 0)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % every == 0:
                self._measure(model, state.global_step)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            self._measure(model, state.global_step)

    return RetentionTracker()
