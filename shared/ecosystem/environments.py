"""Each framework's own environment: its pins, what to remove after installing, and how to run it.

    python -m shared.ecosystem.environments --list            # the frameworks and their pins
    python -m shared.ecosystem.environments axolotl           # build .ecosystem/axolotl (what `make ecosystem` does)

Every environment installs torch 2.13.0, the course's own: on a CPU-only machine its CPU build is what the
package index serves, where any other version would bring the CUDA build (gigabytes). The frameworks' other pins
are chosen to resolve beside it; what did not, and why, is said next to each.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from shared.paths import REPO_ROOT

ROOT = REPO_ROOT / ".ecosystem"
TORCH = "torch==2.13.0"


@dataclass(frozen=True)
class Framework:
    name: str                         # its folder under .ecosystem/, and `make ecosystem FRAMEWORK=<name>`
    title: str                        # as its authors write it
    pins: tuple[str, ...]             # installed together with TORCH
    remove: tuple[str, ...] = ()      # packages the pins pull in that break the environment (see `why`)
    env: dict = field(default_factory=dict)   # environment variables its commands run with
    why: str = ""                     # what had to be chosen, and the reason
    transformers4: bool = False       # pins transformers 4, which cannot read files transformers 5 saved
    train: tuple[str, ...] = ()       # the command (in its bin/) that fine-tunes from a config file given last

    @property
    def version(self) -> str:
        return self.pins[0].split("==")[1]

    @property
    def built(self) -> bool:
        return self.python.exists()

    def train_command(self, config: Path) -> list[str]:
        return [str(self.folder / "bin" / self.train[0]), *self.train[1:], str(config)]

    @property
    def folder(self) -> Path:
        return ROOT / self.name

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"

    def run_env(self) -> dict:
        """The environment its commands need: its own bin/ first on PATH (Axolotl starts `accelerate` from PATH),
        offline, no telemetry, and matplotlib drawing to files -- a Jupyter kernel's MPLBACKEND names a backend
        (matplotlib_inline) that the framework's environment does not have, and LLaMA-Factory stops on it."""
        return {**os.environ, "PATH": f"{self.folder / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "MPLBACKEND": "Agg", **self.env}


FRAMEWORKS = {
    "axolotl": Framework(
        "axolotl", "Axolotl", ("axolotl==0.19.0",), env={"AXOLOTL_DO_NOT_TRACK": "1"}, train=("axolotl", "train"),
        why="0.20 and later need Python 3.12; 0.19.0 is the newest for 3.11 and pins torch 2.11-2.13. Without "
            "AXOLOTL_DO_NOT_TRACK it sends usage telemetry."),
    "llamafactory": Framework(
        "llamafactory", "LLaMA-Factory", ("llamafactory==0.9.3", "pyarrow==19.0.1"), transformers4=True,
        train=("llamafactory-cli", "train"),
        why="0.9.4 and later import torchaudio as they start (their multimodal plugin), and no torchaudio on the "
            "index loads beside torch 2.13 (the newest, 2.11.1: `Could not load this library: _torchaudio.so`); "
            "0.9.3 needs neither torchaudio nor torchvision. It pins NumPy below 2, so pyarrow 19.0.1 (later "
            "pyarrow needs NumPy 2). Its transformers is 4.52.4: it is handed the base as transformers 4 reads it."),
    "torchtune": Framework(
        "torchtune", "torchtune", ("torchtune==0.6.1", "torchao==0.11.0", "torchdata==0.11.0"),
        train=("tune", "run", "full_finetune_single_device", "--config"),
        why="0.6.1 (April 2025) is its latest release; it imports torchao.dtypes.nf4tensor, which torchao 0.12 "
            "and later no longer have."),
}


def build(framework: Framework, python: str = sys.executable, quiet: bool = True) -> Path:
    """Create (or update) the framework's environment; returns its folder."""
    if not framework.python.exists():
        subprocess.run([python, "-m", "venv", str(framework.folder)], check=True)
    pip = [str(framework.python), "-m", "pip", "install", *(["-q"] if quiet else []), TORCH, *framework.pins]
    subprocess.run(pip, check=True)
    if framework.remove:
        subprocess.run([str(framework.python), "-m", "pip", "uninstall", "-y", "-q", *framework.remove], check=True)
    return framework.folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"which to build (default: all of {', '.join(FRAMEWORKS)})")
    parser.add_argument("--list", action="store_true", help="print each framework's pins and stop")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in FRAMEWORKS]
    if unknown:
        print(f"no framework called {', '.join(unknown)}; the frameworks are: {', '.join(FRAMEWORKS)}",
              file=sys.stderr)
        return 2
    chosen = [FRAMEWORKS[name] for name in args.names or FRAMEWORKS]
    for framework in chosen:
        if args.list:
            print(f"{framework.name}: {TORCH} {' '.join(framework.pins)}"
                  + (f" (then without {', '.join(framework.remove)})" if framework.remove else ""))
            continue
        print(f"building {framework.folder.relative_to(REPO_ROOT)} ...", flush=True)
        build(framework)
    return 0


if __name__ == "__main__":
    sys.exit(main())
