"""One fine-tune, many tools: the data every framework reads, a run as a command with its own log, and what the
comparison needs from each run -- seconds, peak memory, lines of config.

Peak memory is the largest resident memory (RSS) of the process that trained, summed over its children (Axolotl
and the TRL command line start Python processes of their own), sampled five times a second. For the run inside
the notebook it is the notebook's own process, whatever else it already holds.
"""

from __future__ import annotations

import json
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
    path.write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100))
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
