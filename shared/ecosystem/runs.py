"""One fine-tune, many tools: the data every framework reads, a run as a command with its own log, and what the
comparison needs from each run -- seconds, peak memory, lines of config.

Peak memory is the largest resident memory (RSS) of the process that trained, summed over its children (Axolotl
and the TRL command line start Python processes of their own), sampled five times a second. For the run inside
the notebook it is the notebook's own process, whatever else it already holds.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import yaml

from shared.training.sft import prompt_completion_rows
from shared.world.data import to_messages

# The name LLaMA-Factory's dataset registry (dataset_info.json) gives the course's conversations.
DATASET_NAME = "course_sft"


# -- the data, in the two shapes the frameworks read ------------------------------------------------------
def write_datasets(examples: list[dict], folder: Path) -> dict[str, Path]:
    """The same training examples twice: TRL's prompt-completion rows (a folder `load_dataset` reads) and
    conversations of role/content messages (what Axolotl's chat_template and LLaMA-Factory's sharegpt formats
    read), with the registry entry LLaMA-Factory looks its datasets up in."""
    trl_folder, conversations_folder = folder / "prompt-completion", folder / "conversations"
    _write_jsonl(trl_folder / "train.jsonl", prompt_completion_rows(examples))
    _write_jsonl(conversations_folder / "train.jsonl", [{"messages": to_messages(e)} for e in examples])
    registry = {DATASET_NAME: {"file_name": "train.jsonl", "formatting": "sharegpt",
                               "columns": {"messages": "messages"},
                               "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                        "assistant_tag": "assistant"}}}
    (conversations_folder / "dataset_info.json").write_text(json.dumps(registry, indent=1))
    return {"prompt_completion": trl_folder, "conversations": conversations_folder / "train.jsonl",
            "conversations_folder": conversations_folder}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


# -- configs ------------------------------------------------------------------------------------------------
def write_config(config: dict, path: Path) -> Path:
    """A framework's config as the YAML file its command line reads, keys in the order given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=100))
    return path


def config_lines(path: Path) -> int:
    """Lines of config a person writes and reads: neither blank nor comments."""
    return sum(1 for line in Path(path).read_text().splitlines() if line.strip() and not line.lstrip().startswith("#"))


# -- measuring a run ------------------------------------------------------------------------------------------
class PeakMemory:
    """The largest RSS of a process and its children while the block runs (MB), sampled in a thread."""

    def __init__(self, pid: int | None = None, every: float = 0.2):
        self.process = psutil.Process(pid)
        self.every = every
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def sample(self) -> None:
        try:
            processes = [self.process, *self.process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:   # a child that ended between the listing and the reading
                pass
        self.peak_mb = max(self.peak_mb, total / 2**20)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class RunRecord:
    """How one command went: what ran, for how long, at what peak memory, and where its log is."""
    name: str
    command: list[str]
    seconds: float
    peak_mb: float
    returncode: int
    log: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def log_tail(self, lines: int = 12) -> str:
        return "\n".join(Path(self.log).read_text(errors="replace").splitlines()[-lines:])

    def to_json(self) -> dict:
        return asdict(self)


def run_command(name: str, command: list[str], log: Path, env: dict | None = None, cwd: Path | None = None,
                timeout: float = 1800) -> RunRecord:
    """Run a framework's command with its output in `log` (it is long), measuring seconds and peak memory."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "w") as out:
        process = subprocess.Popen([str(part) for part in command], stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=cwd)
        with PeakMemory(process.pid) as memory:
            try:
                returncode = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                returncode = process.wait()
    return RunRecord(name, [str(part) for part in command], round(time.monotonic() - start, 1),
                     round(memory.peak_mb), returncode, str(log))


# -- what every framework is handed ----------------------------------------------------------------------------
def recipe(profile, stage: str = "ecosystem") -> dict:
    """The profile's training settings for `stage`, under TRL's names, with everything a framework must be told
    that TRL's Python API takes from the course's defaults: sequence length, seed, device and precision."""
    settings = profile.train(stage)
    settings.pop("examples_per_task", None)
    return {"gradient_accumulation_steps": 1, **settings, "max_length": profile.max_seq_length,
            "seed": profile.seed, "use_cpu": profile.device == "cpu", **profile.precision()}


def end_of_turn(tokenizer) -> str:
    """The text the chat template puts after each message (`<|end|>` in the course's; `<|im_end|>` in ChatML): the
    token a model must learn to write, or it never stops answering."""
    marker = "MARKER"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}],
                                         tokenize=False)
    return text.split(marker, 1)[1].strip().split()[0]


def base_for_transformers4(base: str, folder: Path) -> str:
    """The base as transformers 4 reads it, for a framework that pins it (LLaMA-Factory 0.9.3: 4.52.4).

    A hub model is returned as is. A folder saved by transformers 5 (the tiny base) is copied with three fields
    renamed: the tokenizer class (v5's `TokenizersBackend` is v4's `PreTrainedTokenizerFast`), the extra special
    tokens (a list in v5, `additional_special_tokens` in v4) and RoPE's base (`rope_parameters.rope_theta` in v5,
    `rope_theta` in v4). The weights are not touched."""
    import shutil

    source = Path(base)
    if not (source / "config.json").is_file():
        return base
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(source, folder)
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    tokenizer_config.pop("backend", None)
    if isinstance(tokenizer_config.get("extra_special_tokens"), list):
        tokenizer_config["additional_special_tokens"] = tokenizer_config.pop("extra_special_tokens")
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=1))
    config = json.loads((folder / "config.json").read_text())
    if "rope_parameters" in config:
        config.setdefault("rope_theta", config["rope_parameters"].get("rope_theta", 10000.0))
    if "dtype" in config:
        config.setdefault("torch_dtype", config["dtype"])
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return str(folder)


def expected_steps(examples: int, recipe: dict) -> int:
    """Optimiser steps the recipe makes of `examples` training examples on one device."""
    batches = math.ceil(examples / recipe["per_device_train_batch_size"])
    return math.ceil(batches / recipe.get("gradient_accumulation_steps", 1)) * recipe["num_train_epochs"]


def optimiser_steps(log: str | Path) -> int | None:
    """The optimiser steps a run took, from the summary the transformers Trainer logs at its end (TRL, Axolotl and
    LLaMA-Factory all train with it): its runtime times its steps per second. None when the log has no summary."""
    found = re.findall(r"'train_runtime': '?([0-9.]+)'?.*?'train_steps_per_second': '?([0-9.]+)'?",
                       Path(log).read_text(errors="replace"))
    if not found:
        return None
    runtime, per_second = map(float, found[-1])
    return round(runtime * per_second)
