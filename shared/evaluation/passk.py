"""pass@k: the chance that at least one of k sampled answers is right -- how much a policy *can* do, where greedy
accuracy says what it usually does. The room reinforcement learning can use is the gap between the two.

    curve = pass_at_k_curve(model, tokenizer, data.load_task("two_step", "heldout"), n=16, seed=0)
    curve["pass_at_k"]   # {1: 0.19, 2: 0.33, 4: 0.52, 8: 0.72, 16: 0.89}

Each prompt gets n samples at temperature 1; pass@k for k <= n is the unbiased estimate of Chen et al. (2021,
*Evaluating large language models trained on code*): 1 - C(n - c, k) / C(n, k) for c right answers of n, averaged
over prompts. Cheaper and far less noisy than drawing k samples for each k.
"""

from __future__ import annotations

from math import comb

from shared.evaluation.evals import score
from shared.evaluation.generation import sample
from shared.world import tasks

KS = (1, 2, 4, 8, 16)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that k answers drawn without replacement from n, c of them right, hold a right one."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_at_k_curve(model, tokenizer, examples: list[dict], n: int = 16, ks=KS, seed: int = 0,
                    temperature: float = 1.0, desc: str = "sampling") -> dict:
    """n samples for each example's prompt, scored by its task's metric. Returns ``pass_at_k`` {k: share},
    ``right`` (how many of the n were right, per example) and the ``samples`` themselves."""
    task = {e["task"] for e in examples}
    if len(task) != 1:
        raise ValueError(f"examples of one task at a time, got {sorted(task)}")
    task = task.pop()
    samples = sample(model, tokenizer, [e["prompt"] for e in examples], n=n, temperature=temperature,
                     max_new_tokens=tasks.get(task).max_new_tokens, seed=seed, desc=desc)
    flat = [answer for answers in samples for answer in answers]
    verdicts = score(task, flat, [e["answer"] for e in examples for _ in range(n)])["correct"]
    right = [sum(verdicts[i * n:(i + 1) * n]) for i in range(len(examples))]
    return {"n": n, "seed": seed,
            "pass_at_k": {k: sum(pass_at_k(n, c, k) for c in right) / len(right) for k in ks},
            "right": right, "samples": samples}
