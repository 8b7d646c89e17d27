"""QLoRA on a 7B model on one GPU: the plain recipe against the course's recipe, side by side.

    python bench/qlora_7b.py                 # both recipes, both length mixes; prints and saves a table
    python bench/qlora_7b.py --plan          # what would run (works without a GPU)
    python bench/qlora_7b.py --lengths full  # only the mix where every example is 1,024 tokens

The model is Llama-2-7B-shaped and randomly initialised: a 4-bit matmul costs the same whatever the weights
hold, so memory and speed equal those of the real checkpoint, and nothing has to be downloaded. Every linear
layer but the output head is NF4 (double-quantised, bf16 compute), with LoRA r=8 on all of them; micro-batches
of 4 x 1,024 tokens, 2 of them per optimizer step.

The two recipes:

* **plain** -- what the PEFT and bitsandbytes docs show: `prepare_model_for_kbit_training` (frozen weights
  cast to fp32, re-entrant gradient checkpointing), 32-bit AdamW, examples padded to the longest in the batch,
  Hugging Face's cross-entropy on the full logits.
* **course** -- what the course recommends on a GPU: frozen weights left in bf16, non-re-entrant gradient
  checkpointing, paged 8-bit AdamW, padding-free packing (examples laid end to end, `position_ids` restarting
  at each one, so attention never crosses an example and no compute goes to padding), and Liger's fused
  kernels (RMSNorm, RoPE, SwiGLU, and a cross-entropy that never materialises the logits) when they install.

Each recipe runs in its own process, so one's memory cannot leak into the other's peak. Tokens/s counts real
(non-padding) tokens only. Results go to bench/results/qlora_7b.json and .md with the GPU's name.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Llama-2-7B's shape (its config.json on the hub): 6.74B parameters.
LLAMA2_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                 rms_norm_eps=1e-5, tie_word_embeddings=False)
SETUP = dict(seq_len=1024, batch_size=4, grad_accum=2, lora_r=8, lora_alpha=16, lr=2e-4,
             warmup_steps=2, measured_steps=8, seed=0)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# Instruction-tuning examples are mostly far shorter than the cut-off; "chat" draws lengths from a log-normal
# around 300 tokens (the bulk of Alpaca-style data), "full" makes every example exactly seq_len long, where
# padding and packing make no difference and only the kernels and memory savings show.
LENGTH_MIXES = ("chat", "full")


@dataclass(frozen=True)
class Recipe:
    name: str
    upcast_frozen_to_fp32: bool
    reentrant_checkpointing: bool
    optimizer: str          # "adamw" (torch, 32-bit states) or "paged_adamw_8bit" (bitsandbytes)
    packing: bool
    liger: bool


RECIPES = {
    "plain": Recipe("plain", upcast_frozen_to_fp32=True, reentrant_checkpointing=True, optimizer="adamw",
                    packing=False, liger=False),
    "course": Recipe("course", upcast_frozen_to_fp32=False, reentrant_checkpointing=False,
                     optimizer="paged_adamw_8bit", packing=True, liger=True),
}


# -- data: which examples go into which micro-batch (pure Python, tested without a GPU) ----------------------
def example_lengths(mix: str, n: int, seq_len: int, seed: int = 0) -> list[int]:
    """Token counts of n training examples, the same for every run with the same seed."""
    if mix == "full":
        return [seq_len] * n
    if mix != "chat":
        raise ValueError(f"unknown length mix {mix!r}; choose one of {LENGTH_MIXES}")
    rng = random.Random(seed)
    return [min(seq_len, max(32, round(rng.lognormvariate(math.log(300), 0.6)))) for _ in range(n)]


def padded_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """The plain way: `batch_size` examples per micro-batch, each padded to the longest of them."""
    return [lengths[i:i + batch_size] for i in range(0, len(lengths) - batch_size + 1, batch_size)]


def packed_batches(lengths: list[int], token_budget: int) -> list[list[int]]:
    """Padding-free: as many whole examples, in order, as fit in the micro-batch's token budget."""
    batches, current = [], []
    for length in lengths:
        if current and sum(current) + length > token_budget:
            batches.append(current)
            current = []
        current.append(length)
    return batches  # a last, part-filled batch is left out, as a dataloader with drop_last would


def position_ids(lengths: list[int]) -> list[int]:
    """0, 1, 2, ... restarting at every example: how the model tells packed examples apart."""
    return [position for length in lengths for position in range(length)]


def micro_batches(recipe: Recipe, mix: str, n_needed: int, setup: dict = SETUP) -> list[list[int]]:
    """Enough micro-batches of example lengths for the run, the same examples in the same order for both recipes."""
    budget = setup["batch_size"] * setup["seq_len"]
    lengths = example_lengths(mix, 64 * n_needed, setup["seq_len"], setup["seed"])
    batches = packed_batches(lengths, budget) if recipe.packing else padded_batches(lengths, setup["batch_size"])
    if len(batches) < n_needed:
        raise RuntimeError(f"only {len(batches)} micro-batches for {n_needed} needed")
    return batches[:n_needed]


def padding_share(batches: list[list[int]], packing: bool) -> float:
    """Share of the tokens a micro-batch computes that are padding."""
    real = sum(map(sum, batches))
    computed = real if packing else sum(len(b) * max(b) for b in batches)
    return 1 - real / computed


def parameter_count(config: dict) -> int:
    """Parameters of a Llama with this config, counted on the meta device (no memory, no GPU)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**config))
    return sum(p.numel() for p in model.parameters())


# -- the GPU part ---------------------------------------------------------------------------------------------
def build_model(recipe: Recipe, shape: dict = LLAMA2_7B, setup: dict = SETUP, device: str = "cuda"):
    """Random Llama-2-7B in bf16 on the GPU, its linear layers swapped for NF4 ones, LoRA on top."""
    import bitsandbytes as bnb
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, LlamaConfig

    liger = "off"
    if recipe.liger:
        liger = apply_liger()  # patches the Llama classes, so it must come before the model is built
    torch.manual_seed(setup["seed"])
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**shape), dtype=torch.bfloat16, attn_implementation="sdpa")
    quantize_linear_layers(model, bnb, device)
    model.is_loaded_in_4bit = True  # what transformers' bitsandbytes loader marks; PEFT reads it
    if device == "cuda":
        torch.cuda.empty_cache()

    checkpointing = {"use_reentrant": recipe.reentrant_checkpointing}
    if recipe.upcast_frozen_to_fp32:  # PEFT's helper: freezes, casts to fp32, turns on gradient checkpointing
        model = prepare_model_for_kbit_training(model, gradient_checkpointing_kwargs=checkpointing)
    else:
        for param in model.parameters():
            param.requires_grad = False
        if recipe.reentrant_checkpointing:
            model.enable_input_require_grads()  # re-entrant checkpointing needs an input that requires grad
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpointing)
    lora = LoraConfig(r=setup["lora_r"], lora_alpha=setup["lora_alpha"], lora_dropout=0.0,
                      target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.config.use_cache = False
    return model, liger


def quantize_linear_layers(model, bnb, device: str = "cuda") -> None:
    """Replace every nn.Linear except the output head by an NF4 bitsandbytes Linear4bit holding its weights."""
    import torch

    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear or child_name == "lm_head":
                continue
            quantized = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                          compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4")
            quantized.load_state_dict(child.cpu().state_dict())
            setattr(parent, child_name, quantized.to(device))  # bitsandbytes quantises as it moves to the device


def apply_liger() -> str:
    try:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, fused_linear_cross_entropy=True,
                                    cross_entropy=False)
        import liger_kernel

        return f"on ({getattr(liger_kernel, '__version__', 'installed')})"
    except Exception as error:  # fused kernels are an extra: the recipe still runs without them
        return f"not available ({type(error).__name__}: {error})"[:120]


def make_optimizer(recipe: Recipe, params, lr: float = SETUP["lr"]):
    import torch

    if recipe.optimizer == "paged_adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW8bit(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr)


def batch_tensors(lengths: list[int], packing: bool, vocab_size: int, generator, device: str = "cuda"):
    """Random token ids for one micro-batch: packed into one row with restarting positions, or padded rows."""
    import torch

    if packing:
        ids = torch.randint(3, vocab_size, (1, sum(lengths)), generator=generator)
        positions = torch.tensor([position_ids(lengths)])
        labels = ids.clone()
        labels[positions == 0] = -100  # the first token of an example has nothing before it to predict from
        return dict(input_ids=ids.to(device), position_ids=positions.to(device), labels=labels.to(device))
    width = max(lengths)
    ids = torch.randint(3, vocab_size, (len(lengths), width), generator=generator)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return dict(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))


def run_one(recipe: Recipe, mix: str, shape: dict = LLAMA2_7B, setup: dict = SETUP, device: str = "cuda") -> dict:
    """Build, train for warm-up + measured steps, and return this recipe's figures."""
    import torch

    on_gpu = device == "cuda"
    model, liger = build_model(recipe, shape, setup, device)
    optimizer = make_optimizer(recipe, [p for p in model.parameters() if p.requires_grad], setup["lr"])
    if on_gpu:  # the peak from here on: quantised weights, adapter, optimizer state, activations
        torch.cuda.reset_peak_memory_stats()
    steps, accum = setup["warmup_steps"] + setup["measured_steps"], setup["grad_accum"]
    batches = micro_batches(recipe, mix, steps * accum, setup)
    generator = torch.Generator().manual_seed(setup["seed"])
    model.train()
    tokens, start, losses = 0, time.perf_counter(), []
    for step in range(steps):
        if step == setup["warmup_steps"]:
            synchronize(device)
            start = time.perf_counter()
        for micro in range(accum):
            lengths = batches[step * accum + micro]
            inputs = batch_tensors(lengths, recipe.packing, shape["vocab_size"], generator, device)
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = model(**inputs).loss
            (loss / accum).backward()
            losses.append(loss.item())
            if step >= setup["warmup_steps"]:
                tokens += sum(lengths)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    seconds = time.perf_counter() - start
    measured = batches[setup["warmup_steps"] * accum:]
    return {"recipe": recipe.name, "lengths": mix, "tokens_per_s": round(tokens / seconds, 1),
            "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if on_gpu else None,
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 1e9, 2) if on_gpu else None,
            "padding_share": round(padding_share(measured, recipe.packing), 3),
            "measured_tokens": tokens, "measured_seconds": round(seconds, 2),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "liger": liger, "losses": [round(x, 3) for x in losses], "recipe_settings": asdict(recipe)}


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


# -- running and reporting ------------------------------------------------------------------------------------
def plan_lines(mixes) -> list[str]:
    lines = [f"model: Llama-2-7B shape, {parameter_count(LLAMA2_7B) / 1e9:.2f}B parameters, random weights, "
             f"NF4 + LoRA r={SETUP['lora_r']} on {', '.join(LORA_TARGETS)}",
             f"micro-batch {SETUP['batch_size']} x {SETUP['seq_len']} tokens, grad accumulation "
             f"{SETUP['grad_accum']}, {SETUP['warmup_steps']} warm-up + {SETUP['measured_steps']} measured steps"]
    for mix in mixes:
        for recipe in RECIPES.values():
            batches = micro_batches(recipe, mix, (SETUP["warmup_steps"] + SETUP["measured_steps"]) * SETUP["grad_accum"])
            lines.append(f"  {mix:5s} {recipe.name:7s} {sum(map(len, batches)) / len(batches):5.1f} examples/micro-batch, "
                         f"padding {padding_share(batches, recipe.packing):.0%}")
    return lines


def table(results: list[dict], device: str) -> str:
    rows = [f"QLoRA, Llama-2-7B shape, NF4 + LoRA r=8 (all linear), 4 x 1024 tokens, grad accum 2 -- {device}", "",
            "| lengths | recipe | tokens/s | peak GPU memory (GB) | padding | Liger |",
            "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in results:
        rows.append(f"| {r['lengths']} | {r['recipe']} | {r['tokens_per_s']:,.0f} | {r['peak_allocated_gb']:.2f} | "
                    f"{r['padding_share']:.0%} | {r['liger']} |")
    for mix in sorted({r["lengths"] for r in results}):
        by = {r["recipe"]: r for r in results if r["lengths"] == mix}
        if {"plain", "course"} <= by.keys():
            rows.append(f"\n{mix}: course / plain tokens/s = {by['course']['tokens_per_s'] / by['plain']['tokens_per_s']:.2f}x, "
                        f"peak memory {by['course']['peak_allocated_gb']:.2f} vs {by['plain']['peak_allocated_gb']:.2f} GB")
    return "\n".join(rows)


def run_in_subprocess(recipe: str, mix: str) -> dict:
    """One recipe in a fresh Python, so its peak memory and patched classes stay its own."""
    out = subprocess.run([sys.executable, __file__, "--one", recipe, "--lengths", mix],
                         capture_output=True, text=True)
    sys.stderr.write(out.stderr[-4000:])
    if out.returncode != 0:
        return {"recipe": recipe, "lengths": mix, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", action="store_true", help="print what would run and exit (no GPU needed)")
    parser.add_argument("--lengths", choices=LENGTH_MIXES, action="append", help="length mix(es) to run")
    parser.add_argument("--one", choices=sorted(RECIPES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    mixes = args.lengths or list(LENGTH_MIXES)
    if args.plan:
        print("\n".join(plan_lines(mixes)))
        return 0
    import torch

    if not torch.cuda.is_available():
        print("qlora_7b: this benchmark needs a CUDA GPU (bitsandbytes' 4-bit training kernels); none is visible.\n"
              "Run it on a GPU machine or Colab; `--plan` shows what it would run.", file=sys.stderr)
        return 2
    if args.one:
        print(json.dumps(run_one(RECIPES[args.one], mixes[0])))
        return 0
    device = torch.cuda.get_device_name()
    results = [run_in_subprocess(recipe, mix) for mix in mixes for recipe in RECIPES]
    failed = [r for r in results if "error" in r]
    good = [r for r in results if "error" not in r]
    report = table(good, device)
    print(report)
    for r in failed:
        print(f"{r['lengths']} {r['recipe']}: failed: {r['error']}", file=sys.stderr)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "qlora_7b.json").write_text(json.dumps({"device": device, "setup": SETUP, "results": results},
                                                          indent=1) + "\n")
    (RESULTS_DIR / "qlora_7b.md").write_text(report + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
