"""The course's SFT recipe as a script, for `accelerate launch` to start on one process or several.

    accelerate launch --num_processes 1 --cpu -m shared.training.launch --out runs/one
    accelerate launch --num_processes 2 --cpu -m shared.training.launch --out runs/two     # DDP over gloo

Every process builds the same trainer; accelerate (through the Trainer) splits each global batch between them and
averages their gradients (DDP). The per-process batch is the global batch divided by the number of processes, so
one process and two see the same examples at every step and should end with the same weights. On GPUs the same
script runs under `--num_processes 8` (one node) or `--num_machines 2 --machine_rank 0|1 --main_process_ip ...`,
and with `--config_file` an FSDP or DeepSpeed ZeRO config shards what each GPU holds (rungs/11-ecosystem).

The main process writes `<out>/run.json`: the loss at every step, how many processes trained, and the backend.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where run.json (and, with --save, the model) go")
    parser.add_argument("--stage", default="ecosystem", help="the profile's training stage (default: ecosystem)")
    parser.add_argument("--max-steps", type=int, default=20, help="optimiser steps (default 20)")
    parser.add_argument("--global-batch", type=int, default=8, help="examples per step over all processes")
    parser.add_argument("--save", action="store_true", help="also save the trained model in <out>/model")
    args = parser.parse_args(argv)

    import torch
    from accelerate import PartialState

    from shared.models import load_model, load_tokenizer
    from shared.profiles import get_profile
    from shared.training.sft import sft_trainer

    profile = get_profile(announce=False)
    # Joins the processes `accelerate launch` started (over gloo on CPUs, NCCL on GPUs). Told `cpu`, or a CPU-only
    # run would count one process until the Trainer joins them -- after the batch size was set.
    state = PartialState(cpu=profile.device == "cpu")
    if args.global_batch % state.num_processes:
        parser.error(f"--global-batch {args.global_batch} does not split evenly over {state.num_processes} "
                     "processes")
    model, tokenizer = load_model(profile=profile), load_tokenizer(profile=profile)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = sft_trainer(model, tokenizer, profile, args.stage, scratch, max_steps=args.max_steps,
                              per_device_train_batch_size=args.global_batch // state.num_processes,
                              logging_steps=1, disable_tqdm=True,
                              ddp_find_unused_parameters=False)  # every weight is used: skip the search
        trainer.train()
        if args.save:
            trainer.save_model(str(args.out / "model"))
    if state.is_main_process:
        losses = [round(entry["loss"], 6) for entry in trainer.state.log_history if "loss" in entry]
        record = {"processes": state.num_processes, "backend": state.backend or "none",
                  "distributed_type": str(state.distributed_type), "global_batch": args.global_batch,
                  "per_process_batch": args.global_batch // state.num_processes, "steps": args.max_steps,
                  "losses": losses, "threads_per_process": torch.get_num_threads()}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "run.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
