"""The course's recipe under `accelerate launch` (rung 11): two CPU processes over gloo, each with half of the
global batch, give the same losses and the same weights as one process with all of it; and the multi-GPU configs
the lesson points to are ones accelerate reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shared.paths import REPO_ROOT

CONFIGS = REPO_ROOT / "shared" / "training" / "accelerate"


def launch(processes: int, out, steps: int = 12):
    flags = ["--multi_gpu"] if processes > 1 else ["--cpu"]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *flags,
               "-m", "shared.training.launch", "--out", str(out), "--max-steps", str(steps), "--global-batch", "8",
               "--save"]
    env = {**os.environ, "FT_PROFILE": "tiny", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "FT_QUIET": "1"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "run.json").read_text())


def test_two_processes_train_as_one_with_the_same_global_batch(tmp_path):
    from safetensors.torch import load_file

    one, two = launch(1, tmp_path / "one"), launch(2, tmp_path / "two")
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["backend"] == "gloo" and two["per_process_batch"] == 4 and one["per_process_batch"] == 8
    assert len(one["losses"]) == len(two["losses"]) == 12
    assert one["losses"][0] - one["losses"][-1] > 1.0, one["losses"]          # it trains
    assert max(abs(a - b) for a, b in zip(one["losses"], two["losses"])) <= 1e-4
    weights = [load_file(tmp_path / name / "model" / "model.safetensors") for name in ("one", "two")]
    assert max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0]) <= 1e-4


def test_a_global_batch_that_does_not_split_is_refused(tmp_path):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu", "-m", "shared.training.launch",
               "--out", str(tmp_path), "--global-batch", "7"]
    env = {**os.environ, "FT_PROFILE": "tiny", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "--global-batch 7 does not split evenly over 2 processes" in result.stderr


@pytest.mark.parametrize("name,kind,sharding", [
    ("ddp", "MULTI_GPU", None),
    ("fsdp", "FSDP", {"fsdp_version": 2, "fsdp_reshard_after_forward": True}),
    ("zero2", "DEEPSPEED", {"zero_stage": 2}),
    ("zero3", "DEEPSPEED", {"zero_stage": 3, "zero3_init_flag": True}),
])
def test_the_lessons_multi_gpu_configs_are_read_by_accelerate(name, kind, sharding):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert config.distributed_type.name == kind and config.num_processes == 8 and config.mixed_precision == "bf16"
    if sharding:
        held = config.fsdp_config if kind == "FSDP" else config.deepspeed_config
        assert sharding.items() <= held.items(), held
