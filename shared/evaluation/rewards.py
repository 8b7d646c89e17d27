"""Rewards of answers: what a reward model says of them, how often it ranks a preference pair the right way, what
choosing the best of n sampled answers by it buys, and the reward DPO's policy holds implicitly.

    scores = reward_scores(reward_model, tokenizer, prompts, answers)      # one number per answer
    accuracy = pairwise_accuracy(chosen_scores, rejected_scores, pairs)  # {"all": 0.88, "invents": 1.0, ...}
    curve = best_of_n(policy, tokenizer, examples, n=16, score=lambda p, a: reward_scores(rm, tokenizer, p, a))
    chosen, rejected = implicit_rewards(dpo_model, sft_model, tokenizer, pairs, beta=0.1)
    point = proxy_and_judge(policy, tokenizer, examples, score=..., judge=preferences.judge)  # both views

A reward model reads a whole conversation -- the prompt and the answer in the chat template, as TRL's
RewardTrainer tokenised its training pairs -- and gives one number, read at the conversation's last token.
"""

from __future__ import annotations

import math

import torch

from shared.evaluation.generation import chat_ids, generate, sample
from shared.progress import progress


def conversation_ids(tokenizer, prompt: str, answer: str) -> list[int]:
    """A user prompt and an assistant answer in the chat template: the tokens a reward model scores."""
    return chat_ids(tokenizer, [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])


@torch.no_grad()
def reward_scores(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 64,
                  desc: str = "scoring") -> torch.Tensor:
    """The reward model's score of each (prompt, answer): a (n,) float32 tensor.

    Each conversation is padded on the right, as TRL's collator pads, so that its real tokens keep their
    positions; the sequence-classification model reads its score at the last token that is not padding (it finds
    it from ``config.pad_token_id``)."""
    model.eval()
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    scores = []
    for start in progress(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
        batch = [conversation_ids(tokenizer, p, a)
                 for p, a in zip(prompts[start:start + batch_size], answers[start:start + batch_size], strict=True)]
        width = max(map(len, batch))
        input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids in batch], device=device)
        attention_mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], device=device)
        scores.append(model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0].float().cpu())
    return torch.cat(scores) if scores else torch.zeros(0)


def pairwise_accuracy(chosen_scores, rejected_scores, pairs: list[dict]) -> dict[str, float]:
    """How often the chosen answer scores strictly higher than the rejected one: over all pairs ("all") and per
    kind of pair (``meta["kind"]``: invents, near_miss, abstains_on_recorded). A tie counts as wrong."""
    if not (len(chosen_scores) == len(rejected_scores) == len(pairs)) or not pairs:
        raise ValueError("one chosen and one rejected score per pair, and at least one pair")
    right = [float(c) > float(r) for c, r in zip(chosen_scores, rejected_scores)]
    kinds = sorted({pair["meta"]["kind"] for pair in pairs})
    found = {"all": round(sum(right) / len(right), 4)}
    for kind in kinds:
        of_kind = [ok for ok, pair in zip(right, pairs) if pair["meta"]["kind"] == kind]
        found[kind] = round(sum(of_kind) / len(of_kind), 4)
    return found


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n policy || policy) in nats, the analytic bound used by Stiennon et al. (2020) and Gao et al.
    (2023): log n - (n - 1) / n. How far choosing among n answers moves from the policy that wrote them."""
    return math.log(n) - (n - 1) / n


def best_of_n(policy, tokenizer, examples: list[dict], n: int, score, judge, seed: int = 0,
              temperature: float = 1.0, max_new_tokens: int = 24) -> dict:
    """Best-of-n sampling, measured for every n that is a power of two up to `n`: sample `n` answers per example
    from `policy` (one call, seeded), score each with ``score(prompts, answers)`` (a reward model's), and for
    each k keep the best-scored of the first k answers. ``judge(answer, example)`` (1 or 0) says whether the
    kept answer is right. Returns

        {"n": [1, 2, 4, ...], "kl": [...], "proxy": [mean score of the kept answers],
         "judge": {"recorded": [...], "unrecorded": [...]}, "oracle": {...: [...]},   # oracle: best of k by the judge
         "samples": [[answer, ...] per example], "scores": [[score, ...] per example]}
    """
    prompts = [example["prompt"] for example in examples]
    samples = sample(policy, tokenizer, prompts, n=n, temperature=temperature, max_new_tokens=max_new_tokens,
                     seed=seed, desc="sampling")
    flat = score([p for p in prompts for _ in range(n)], [answer for group in samples for answer in group])
    scores = torch.as_tensor(flat, dtype=torch.float64).reshape(len(examples), n)
    judged = torch.tensor([[judge(answer, example) for answer in group] for example, group in zip(examples, samples)],
                          dtype=torch.float64)
    groups = {"recorded": torch.tensor([e["meta"]["recorded"] for e in examples]),
              "unrecorded": torch.tensor([not e["meta"]["recorded"] for e in examples])}
    curve = {"n": [], "kl": [], "proxy": [], "judge": {g: [] for g in groups}, "oracle": {g: [] for g in groups}}
    rows = torch.arange(len(examples))
    k = 1
    while k <= n:
        kept = scores[:, :k].argmax(dim=1)  # the first of equal best scores
        curve["n"].append(k)
        curve["kl"].append(round(best_of_n_kl(k), 4))
        curve["proxy"].append(round(float(scores[rows, kept].mean()), 4))
        for group, members in groups.items():
            if members.any():
                curve["judge"][group].append(round(float(judged[rows, kept][members].mean()), 4))
                curve["oracle"][group].append(round(float(judged[members, :k].max(dim=1).values.mean()), 4))
        k *= 2
    curve["samples"] = samples
    curve["scores"] = [[round(float(s), 4) for s in row] for row in scores]
    return curve


def proxy_and_judge(policy, tokenizer, examples: list[dict], score, judge, max_new_tokens: int = 24) -> dict:
    """What a reward model and the judge each say of the policy's greedy answers to `examples`:
    {"proxy": the mean ``score(prompts, answers)``, "recorded": the share the judge finds right among the
    questions the world records, "unrecorded": among those it does not}. Tracked while a policy is optimised
    against the reward model, the two part where the policy finds what the reward model cannot see."""
    prompts = [example["prompt"] for example in examples]
    answers = generate(policy, tokenizer, prompts, max_new_tokens=max_new_tokens, desc="answering")
    found = {"proxy": round(float(torch.as_tensor(score(prompts, answers), dtype=torch.float64).mean()), 4)}
    for group, recorded in (("recorded", True), ("unrecorded", False)):
        judged = [judge(a, e) for a, e in zip(answers, examples) if e["meta"]["recorded"] == recorded]
        found[group] = round(sum(judged) / max(1, len(judged)), 4)
    return found


def implicit_rewards(policy, reference, tokenizer, pairs: list[dict], beta: float):
    """DPO's implicit reward of each pair's two answers, beta * (log pi(answer) - log ref(answer)): what a DPO
    policy says of an answer relative to the model it started from. Returns (chosen, rejected), two (n,) float64
    tensors."""
    from shared.evaluation.logprobs import completion_logprobs

    prompts = [pair["prompt"] for pair in pairs]
    rewards = []
    for key in ("chosen", "rejected"):
        answers = [pair[key] for pair in pairs]
        mine = completion_logprobs(policy, tokenizer, prompts, answers, desc=f"policy, {key}").sums
        theirs = completion_logprobs(reference, tokenizer, prompts, answers, desc=f"reference, {key}").sums
        rewards.append(beta * (mine - theirs))
    return tuple(rewards)
