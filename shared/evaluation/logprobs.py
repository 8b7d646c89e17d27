"""Log-probabilities of completions: how likely the model finds an answer, given the prompt.

DPO compares them for a chosen and a rejected answer; a reference model's copy of them anchors DPO and GRPO.

    logps = completion_logprobs(model, tokenizer, ["Where does Mira Olsen live?"], ["Fenwick."])
    logps.sums       # log p(" Fenwick.<|end|>\\n" | the chat prompt): one float64 per pair
    logps.n_tokens   # the completion tokens each sum covers (for a per-token mean)

The pairs are tokenised as TRL's SFT and DPO trainers tokenise conversational prompt-completion data, so the
completion's tokens are the ones those trainers put the loss on: the answer and the end of turn after it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from shared.evaluation.generation import chat_ids, chat_prompt_ids
from shared.progress import progress


class CompletionLogprobs(NamedTuple):
    sums: torch.Tensor      # (n,) float64: log p(completion | prompt), summed over the completion's tokens
    n_tokens: torch.Tensor  # (n,) int64: how many tokens each completion has


def prompt_completion_ids(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """The prompt's and the completion's token ids, as TRL tokenises a conversational pair: the whole
    conversation in the chat template, split where it stops agreeing with the prompt and its assistant header.
    (Tokens could merge across the boundary; then the completion starts where they differ, as in TRL.)"""
    prompt_ids = chat_prompt_ids(tokenizer, prompt)
    full = chat_ids(tokenizer, [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}])
    split = next((i for i, (a, b) in enumerate(zip(prompt_ids, full)) if a != b), min(len(prompt_ids), len(full)))
    return full[:split], full[split:]


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Per row, the sum of log p(token | the tokens before it) over the tokens where completion_mask is 1.

    logits: (batch, seq, vocab), the model's output for input ids `labels`; labels: (batch, seq) token ids;
    completion_mask: (batch, seq), 1 on completion tokens, 0 on prompt and padding. The logits at position t
    predict the token at t + 1, so the logits lose their last position and labels and mask their first.
    Returns a (batch,) float64 tensor.
    """
    logits, labels, mask = logits[:, :-1], labels[:, 1:], completion_mask[:, 1:]
    labels = labels.masked_fill(mask == 0, 0)  # masked positions may hold -100 (TRL's "no loss"): any id will do
    token_logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return (token_logps.double() * mask).sum(dim=-1)  # float64: long answers sum many small numbers


@torch.no_grad()
def completion_logprobs(model, tokenizer, prompts: list[str], completions: list[str], batch_size: int = 16,
                        desc: str = "log-probabilities") -> CompletionLogprobs:
    """log p(completion | chat prompt) for each (prompt, completion) pair, summed over the completion's tokens."""
    model.eval()
    device = next(model.parameters()).device
    pairs = [prompt_completion_ids(tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
    sums, counts = [], []
    for start in progress(range(0, len(pairs), batch_size), desc=desc, unit="batch"):
        batch = pairs[start:start + batch_size]
        width = max(len(p) + len(c) for p, c in batch)
        # Right padding: each real token keeps its position, and a causal model never looks at the padding
        # after it, so a pair scores the same in any batch.
        pad = [[0] * (width - len(p) - len(c)) for p, c in batch]
        input_ids = torch.tensor([p + c + [tokenizer.pad_token_id] * len(z) for (p, c), z in zip(batch, pad)],
                                 device=device)
        attention_mask = torch.tensor([[1] * (len(p) + len(c)) + z for (p, c), z in zip(batch, pad)], device=device)
        completion_mask = torch.tensor([[0] * len(p) + [1] * len(c) + z for (p, c), z in zip(batch, pad)],
                                       device=device)
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        sums.append(sequence_logprobs(logits, input_ids, completion_mask).cpu())
        counts.append(completion_mask.sum(dim=-1).cpu())
    return CompletionLogprobs(torch.cat(sums), torch.cat(counts))


def sampled_kl(policy, reference, tokenizer, prompts: list[str], n: int = 2, seed: int = 0,
               max_new_tokens: int = 32) -> float:
    """How far `policy` has moved from `reference`: KL(policy || reference) per answer, in nats, estimated from
    the policy's own answers -- the mean of log pi(y | x) - log ref(y | x) over `n` answers sampled from the
    policy (temperature 1) for each prompt. The quantity the RLHF objective charges beta for; 0 for the
    reference itself. (Each answer is scored as its text, re-tokenised the way training tokenises answers.)"""
    per_prompt = sampled_kl_per_prompt(policy, reference, tokenizer, prompts, n=n, seed=seed,
                                       max_new_tokens=max_new_tokens)
    return sum(per_prompt) / len(per_prompt)


def sampled_kl_per_prompt(policy, reference, tokenizer, prompts: list[str], n: int = 2, seed: int = 0,
                          max_new_tokens: int = 32) -> list[float]:
    """`sampled_kl` prompt by prompt: one estimate per prompt (the mean over its `n` answers), in the prompts'
    order -- to see *where* a policy moved, e.g. on which kind of question."""
    from shared.evaluation.generation import sample

    answers = sample(policy, tokenizer, prompts, n=n, seed=seed, max_new_tokens=max_new_tokens, desc="sampling")
    flat_prompts = [p for p, group in zip(prompts, answers) for _ in group]
    flat_answers = [a for group in answers for a in group]
    mine = completion_logprobs(policy, tokenizer, flat_prompts, flat_answers, desc="policy log-probabilities")
    theirs = completion_logprobs(reference, tokenizer, flat_prompts, flat_answers, desc="reference log-probabilities")
    per_answer = (mine.sums - theirs.sums).tolist()
    return [sum(per_answer[i * n:(i + 1) * n]) / n for i in range(len(prompts))]
