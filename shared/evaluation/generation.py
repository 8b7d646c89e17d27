"""Batched generation from chat prompts: greedy (``generate``, deterministic) and sampled (``sample``, n answers
per prompt, reproducible from a seed)."""

from __future__ import annotations

import torch

from shared.progress import progress


def chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    """Token ids of a conversation in the tokenizer's chat template."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def chat_prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids of a user turn followed by the assistant header: the model's answer starts next."""
    return chat_ids(tokenizer, [{"role": "user", "content": prompt}], add_generation_prompt=True)


# How chat templates end a turn: the course's tiny model and Phi-3, Qwen and SmolLM2, Llama 3, Gemma. A model
# fine-tuned on its template writes one of these after its answer; generation must stop there, not run on.
END_OF_TURN_TOKENS = ("<|end|>", "<|im_end|>", "<|eot_id|>", "<end_of_turn>")


def stop_token_ids(tokenizer) -> list[int]:
    """Generation ends at an end-of-turn token the tokenizer knows, or at end-of-sequence."""
    ids = {tokenizer.eos_token_id}
    for token in END_OF_TURN_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:  # unknown tokens map to unk (or None)
            ids.add(token_id)
    return sorted(i for i in ids if i is not None)


def text_ids(tokenizer, text: str) -> list[int]:
    """Token ids of plain text, as pretraining saw it (with the tokenizer's start token, if it adds one)."""
    return list(tokenizer(text)["input_ids"])


@torch.no_grad()
def _answers(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int, desc: str,
             n: int = 1, prompt_ids=chat_prompt_ids, **decoding) -> list[str]:
    """n answers per prompt (prompt by prompt, n in a row), decoded without special tokens, stripped."""
    model.eval()
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    answers: list[str] = []
    for start in progress(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
        batch = [prompt_ids(tokenizer, p) for p in prompts[start:start + batch_size]]
        width = max(map(len, batch))
        # Left padding: every prompt ends at the same column, so generation continues each one directly.
        input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in batch], device=device)
        attention_mask = (torch.arange(width, device=device)[None, :]
                          >= torch.tensor([width - len(ids) for ids in batch], device=device)[:, None]).long()
        if n > 1:   # n rows for each prompt, as `num_return_sequences` would make them, but read once (below)
            input_ids, attention_mask = input_ids.repeat_interleave(n, 0), attention_mask.repeat_interleave(n, 0)
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                                past_key_values=shared_prompt_cache(model, input_ids, attention_mask),
                                pad_token_id=pad_id, eos_token_id=stop_token_ids(tokenizer), **decoding)
        for row in output[:, width:]:
            answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return answers


@torch.no_grad()
def shared_prompt_cache(model, input_ids, attention_mask):
    """The attention cache of a batch's prompts, all but their last token, for ``model.generate(...,
    past_key_values=...)``: each distinct prompt read once and its cache copied to every row that repeats it. None
    where no prompt repeats or the model's cache cannot be copied (generate then reads every row itself).

    Sampling n answers to a prompt -- pass@k, best-of-n, GRPO's groups -- puts the prompt in n rows, and
    `generate` would read it n times over; here the prompts are several times longer than the answers, so
    reading each once saves about half the time. The answers do not change: `generate` reads each row's last
    prompt token itself and samples from there as before (on the tiny model in fp32, bit for bit; in half
    precision a logit may differ in its last digit, and a sample with it once in a great while)."""
    if input_ids.shape[1] < 2:
        return None
    rows = torch.cat([input_ids, attention_mask.to(input_ids.dtype)], dim=1)
    distinct, copy_of = torch.unique(rows, dim=0, return_inverse=True)
    if len(distinct) == len(rows):
        return None
    ids, mask = distinct[:, :input_ids.shape[1]], distinct[:, input_ids.shape[1]:]
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)   # numbered as `generate` numbers them
    cache = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                  use_cache=True).past_key_values
    if not hasattr(cache, "batch_select_indices"):
        return None
    cache.batch_select_indices(copy_of)
    return cache


def read_prompts_once(model):
    """Make ``model.generate`` share the cache of prompts repeated in its batch (``shared_prompt_cache``): TRL's
    GRPOTrainer asks for a group of answers by repeating the prompt in as many rows. Returns the model."""
    plain = model.generate

    def generate(*args, input_ids=None, attention_mask=None, **kwargs):
        config = kwargs.get("generation_config") or getattr(model, "generation_config", None)
        if (not args and input_ids is not None and attention_mask is not None
                and kwargs.get("past_key_values") is None and getattr(config, "use_cache", None) is not False
                and not getattr(config, "cache_implementation", None)):   # a static cache cannot take ours
            kwargs["past_key_values"] = shared_prompt_cache(model, input_ids, attention_mask)
        return plain(*args, input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    model.generate = generate
    return model


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 32, batch_size: int = 64,
             desc: str = "generating") -> list[str]:
    """Greedy answers to a list of user prompts, decoded without special tokens, stripped."""
    return _answers(model, tokenizer, prompts, max_new_tokens, batch_size, desc, do_sample=False)


def complete(model, tokenizer, texts: list[str], max_new_tokens: int = 16, batch_size: int = 64,
             desc: str = "completing") -> list[str]:
    """Greedy continuations of plain text (no chat template: a base model's own format), each cut at its first
    line break and stripped -- "Question: Where does Ada live?\nAnswer:" -> "Fenwick."."""
    answers = _answers(model, tokenizer, texts, max_new_tokens, batch_size, desc, prompt_ids=text_ids,
                       do_sample=False)
    return [answer.split("\n", 1)[0].strip() for answer in answers]


def sample(model, tokenizer, prompts: list[str], n: int = 4, temperature: float = 1.0, top_p: float = 1.0,
           max_new_tokens: int = 32, seed: int = 0, batch_size: int = 16, desc: str = "sampling") -> list[list[str]]:
    """n sampled answers to each user prompt: a list per prompt, each of n answers (stripped, as ``generate``).

    The same call gives the same answers: the random generator is seeded with `seed` for the call, and the
    caller's own random state is left as it was. top_k is off (TRL's GRPOConfig default too): a hub model's
    generation_config may set one, and then the answers would not come from the distribution asked for.
    """
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        flat = _answers(model, tokenizer, prompts, max_new_tokens, batch_size, desc, n=n, do_sample=True,
                        temperature=temperature, top_p=top_p, top_k=0)
    return [flat[i:i + n] for i in range(0, len(flat), n)]
