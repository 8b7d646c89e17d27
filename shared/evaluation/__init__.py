"""Evaluation: generating answers, greedy or sampled (``generation``); scoring them per task and per example
with the local ``evaluate`` metric, and the same scores as a GRPO reward (``evals``, ``metrics/``);
log-probabilities of completions, for DPO and reference models (``logprobs``); perplexity on raw text, the
forgetting check (``perplexity``); knowledge probes in plain prose (``probes``); reward-model scores and best-of-n
(``rewards``); and pass@k from sampled answers (``passk``)."""
