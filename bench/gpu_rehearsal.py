"""Rehearse a rung's gpu profile on a GPU machine that cannot reach the hub.

    python bench/gpu_rehearsal.py --rung 04            # Qwen2.5-7B-shaped stand-in, QLoRA, checker
    python bench/gpu_rehearsal.py --rung 04 --as-t4    # the same as a free Colab T4 would run it
    python bench/gpu_rehearsal.py --rung 04 --plan     # what would run (works without a GPU)
    python bench/gpu_rehearsal.py --rung 07 --as-t4    # SmolLM2-360M-shaped stand-in: rung 02's SFT, then GRPO

A rung's gpu path -- loading in 4 bits on the GPU, gradient checkpointing, the paged optimizer, half-precision
training, the run's metadata and the checker's gpu criteria -- depends on the model's *shape*, not on what its
weights hold. So this script writes a stand-in: the published shape of the model the gpu profile names, random
weights, the course's own tokenizer. It then runs the rung's checker on the solution notebook with
``FT_PROFILE=gpu`` and the stand-in in the model's place (``FT_QLORA_MODEL`` / ``FT_BASE_MODEL``), exactly the
command a learner runs. Memory, speed and the code path are those of the real model; accuracy is that of random
weights, so the accuracy criteria fail and nothing else should.

``--as-t4`` makes the GPU look like a free Colab T4 to the notebook and the checker: no bfloat16 (so training
runs in fp16 with a gradient scaler) and at most 14.5 GiB for PyTorch's allocator, so a run that would not
fit a T4 fails here with an out-of-memory error. (A T4 also computes roughly 15x slower than an H100 or H200:
times do not carry over.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from shared import course  # noqa: E402
from shared.paths import TINY_BASE_DIR  # noqa: E402
from shared.profiles import PROFILES  # noqa: E402

# The published shapes of the gpu profile's models (their config.json on the hub) and their parameter counts.
STANDINS = {
    "Qwen/Qwen2.5-7B": dict(
        parameters=7_615_616_512,
        config=dict(model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                    num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                    max_position_embeddings=131072, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                    tie_word_embeddings=False, hidden_act="silu")),
    "HuggingFaceTB/SmolLM2-360M": dict(
        parameters=361_821_120,
        config=dict(model_type="llama", vocab_size=49152, hidden_size=960, intermediate_size=2560,
                    num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5,
                    max_position_embeddings=8192, rope_theta=100_000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=True, hidden_act="silu")),
}

# Which model each rung's gpu path loads, and the variable that puts the stand-in in its place. Rungs 06-08
# start from rung 02's SFT model (08 from rung 06's DPO model too): the checker's fresh outputs folder holds
# neither, so their notebooks train those first, on the stand-in, as `make check` does for a learner.
RUNG_MODELS = {"02": ("base_model", "FT_BASE_MODEL"), "03": ("base_model", "FT_BASE_MODEL"),
               "04": ("qlora_model", "FT_QLORA_MODEL"), "06": ("base_model", "FT_BASE_MODEL"),
               "07": ("base_model", "FT_BASE_MODEL"), "08": ("base_model", "FT_BASE_MODEL")}

T4_MEMORY_GIB = 14.5   # what a Colab T4 leaves PyTorch of its 15 GB
# Loaded first by every Python process the checker starts (the notebook's kernel too) when --as-t4 is given.
T4_SITECUSTOMIZE = f'''\
import torch

torch.cuda.is_bf16_supported = lambda *args, **kwargs: False   # a T4 (Turing) has no bfloat16
if torch.cuda.is_available():
    torch.cuda.set_per_process_memory_fraction(
        min(1.0, {T4_MEMORY_GIB} * 2**30 / torch.cuda.get_device_properties(0).total_memory))
'''


def standin_config(model: str, tokenizer, **changes):
    """The stand-in's transformers config: the model's shape (with `changes`), the course tokenizer's tokens."""
    from transformers import AutoConfig

    shape = {**STANDINS[model]["config"], **changes}
    return AutoConfig.for_model(shape.pop("model_type"), **shape, bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def write_standin(model: str, out_dir: Path, device: str = "cuda", **changes) -> int:
    """Save a randomly initialised model of `model`'s shape (bf16 safetensors) with the course tokenizer.

    Returns its parameter count. `changes` alter the shape (the tests make a small one)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_BASE_DIR)
    config = standin_config(model, tokenizer, **changes)
    if config.vocab_size < len(tokenizer):
        raise ValueError(f"the stand-in's vocabulary ({config.vocab_size}) is smaller than the tokenizer's")
    torch.manual_seed(0)
    with torch.device(device):   # initialise where it will be used: a 7B model inits in seconds on a GPU
        standin = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    standin.save_pretrained(out_dir, max_shard_size="5GB")
    tokenizer.save_pretrained(out_dir)
    parameters = sum(p.numel() for p in standin.parameters())
    del standin
    if device == "cuda":
        torch.cuda.empty_cache()
    return parameters


def plan(rung: str, as_t4: bool) -> dict:
    """What a rehearsal of this rung runs: the model it stands in for and the command and environment."""
    if rung not in RUNG_MODELS:
        raise SystemExit(f"no gpu rehearsal for rung {rung}; rungs with one: {', '.join(RUNG_MODELS)}")
    setting, variable = RUNG_MODELS[rung]
    model = getattr(PROFILES["gpu"], setting)
    the_rung = course.rung(rung)
    return {"rung": the_rung.name, "model": model, "variable": variable, "as_t4": as_t4,
            "command": [sys.executable, f"{the_rung.folder}/check.py", the_rung.solution]}


def rehearse(rung: str, as_t4: bool, work: Path, timeout: float, standin_dir: Path | None = None) -> dict:
    """Write the stand-in (or reuse the one in `standin_dir`), run the rung's checker on its solution with the
    gpu profile; what happened."""
    what = plan(rung, as_t4)
    standin_dir, report = standin_dir or work / "standin", work / "check.json"
    start = time.monotonic()
    if (standin_dir / "config.json").exists():
        print(f"reusing the stand-in in {standin_dir}", flush=True)
    else:
        parameters = write_standin(what["model"], standin_dir)
        what["standin_seconds"] = round(time.monotonic() - start, 1)
        print(f"stand-in for {what['model']}: {parameters:,} parameters, written in {what['standin_seconds']} s",
              flush=True)

    env = {**os.environ, "FT_PROFILE": "gpu", what["variable"]: str(standin_dir), "HF_HUB_OFFLINE": "1",
           "FT_CHECK_TIMEOUT": str(timeout), "CI": "1"}
    if as_t4:
        site = work / "t4"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(T4_SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(site), env.get("PYTHONPATH", "")] if p)
    start = time.monotonic()
    completed = subprocess.run([*what["command"], "--json", str(report)], cwd=REPO_ROOT, env=env)
    what["check_seconds"] = round(time.monotonic() - start, 1)
    what["check_exit_code"] = completed.returncode
    what["check"] = json.loads(report.read_text()) if report.exists() else None
    return what


def summary(what: dict) -> str:
    """The criteria the checker judged and the run's figures, as plain lines."""
    lines = [f"rung {what['rung']}, gpu profile, {what['model']} stand-in"
             + (" as a T4 (fp16, 14.5 GiB)" if what["as_t4"] else "")]
    for criterion in (what.get("check") or {}).get("criteria", []):
        lines.append(f"  {criterion.get('status', '?'):>6}  {criterion.get('name')}: {criterion.get('detail', '')}")
    notebook_seconds = (what.get("check") or {}).get("notebook_seconds")
    if notebook_seconds:
        lines.append(f"  the notebook ran in {notebook_seconds:.0f} s")
    lines.append(f"  checker exit code {what.get('check_exit_code')}, {what.get('check_seconds')} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rung", default="04", help="rung number (default 04)")
    parser.add_argument("--as-t4", action="store_true", help="no bf16 and a T4's memory, as on free Colab")
    parser.add_argument("--plan", action="store_true", help="print what would run, run nothing")
    parser.add_argument("--json", type=Path, help="also write what happened as JSON to this file")
    parser.add_argument("--timeout", type=float, default=900, help="seconds the notebook may run (default 900)")
    parser.add_argument("--standin", type=Path, help="keep the stand-in in this folder, or reuse the one there "
                                                     "(default: a temporary folder; a 7B stand-in takes 15 GB)")
    args = parser.parse_args(argv)
    rung = f"{int(args.rung):02d}"
    if args.plan:
        print(json.dumps(plan(rung, args.as_t4), indent=1))
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_rehearsal needs a CUDA GPU; `--plan` shows what it would run.", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as work:
        what = rehearse(rung, args.as_t4, Path(work), args.timeout, args.standin)
    print(summary(what))
    if args.json:
        args.json.write_text(json.dumps(what, indent=1, default=str) + "\n")
    return 0 if what["check"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
