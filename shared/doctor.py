"""``make doctor``: one line per check of your set-up, and the fix for anything that fails.

    OK   python 3.11.7
    FAIL transformers not installed -> fix: make lab (creates .venv with the pinned versions)

Exit code 1 when any line is FAIL (a WARN or INFO line never fails). It must run on a bare machine too
(before .venv exists, with any Python 3), so every import beyond the standard library is guarded.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from shared.notebooks.colab import COLAB_KEEPS, on_colab

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO_ROOT / "requirements.txt"
VENV = REPO_ROOT / ".venv"

OK, WARN, FAIL, INFO = "OK", "WARN", "FAIL", "INFO"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")


@dataclass
class Line:
    status: str
    text: str
    fix: str = ""

    def __str__(self) -> str:
        line = f"{self.status:<4} {self.text}"
        return f"{line} -> fix: {self.fix}" if self.fix else line


def parse_requirements(text: str) -> dict[str, str]:
    """Pinned packages (``name==version``) from requirements text; comments, blanks and options are skipped."""
    pins = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        match = _PIN.match(line)
        if match:
            pins[match.group(1)] = match.group(3)
    return pins


def _install_fix(name: str, version: str) -> str:
    # Outside the course's .venv the likely cause is "not set up yet", not one wrong package.
    if Path(sys.prefix).resolve() != VENV.resolve():
        return "make lab (creates .venv with the pinned versions)"
    return f"{VENV.name}/bin/pip install {name}=={version}"


def package_line(name: str, pinned: str, installed: str | None, cuda: bool = False) -> Line:
    """Compare one installed version with its pin."""
    if installed is None:
        return Line(FAIL, f"{name} not installed (pinned {pinned})", _install_fix(name, pinned))
    if installed == pinned:
        return Line(OK, f"{name} {installed}")
    if name == "torch":
        # Wheels carry a build tag (2.13.0+cpu, 2.13.0+cu121): the release is what the pin means.
        if installed.split("+", 1)[0] == pinned:
            return Line(OK, f"{name} {installed}")
        if cuda:
            # A GPU machine (e.g. Colab) keeps its own CUDA build of torch on purpose.
            return Line(WARN, f"torch {installed} (pinned {pinned}); kept because it matches this machine's CUDA")
    return Line(FAIL, f"{name} {installed}, but the course pins {pinned}", _install_fix(name, pinned))


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cuda_available() -> bool | None:
    """True/False, or None when torch cannot be imported."""
    try:
        import torch
    except Exception:
        return None
    return torch.cuda.is_available()


# -- the checks, one function per line (or lines) ------------------------------------------------------
def check_python() -> Line:
    version = platform.python_version()
    if sys.version_info < (3, 10):
        return Line(FAIL, f"python {version} is too old (3.10+ needed)", "install Python 3.11, then: make lab")
    if sys.version_info[:2] != (3, 11):
        return Line(WARN, f"python {version} (3.11 is the version the course is tested with)")
    return Line(OK, f"python {version}")


def check_packages(cuda: bool, colab: bool = False) -> list[Line]:
    if not REQUIREMENTS.exists():
        return [Line(FAIL, "requirements.txt is missing", "git checkout -- requirements.txt")]
    pins = parse_requirements(REQUIREMENTS.read_text(encoding="utf-8"))
    lines = []
    for name, version in pins.items():
        installed = installed_version(name)
        if colab and name in COLAB_KEEPS:  # the set-up cell leaves these to Colab on purpose
            lines.append(Line(INFO, f"{name} {installed or 'not installed'}: Colab's own, kept (pinned {version})"))
        else:
            lines.append(package_line(name, version, installed, cuda))
    return lines


def check_data() -> Line:
    try:
        from shared.world.checksums import DataIntegrityError, problems
        from shared.paths import DATA_DIR

        bad = problems(DATA_DIR)
    except DataIntegrityError as error:
        return Line(FAIL, f"data: {error}", "git checkout -- data/")
    if bad:
        shown = "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        return Line(FAIL, f"data: {shown}", "git checkout -- data/ (or rebuild: make data, make base-model)")
    return Line(OK, "data files match their checksums")


def check_gpu(cuda: bool | None) -> Line:
    if cuda is None:
        return Line(INFO, "GPU: unknown (torch is not importable)")
    if not cuda:
        return Line(INFO, "GPU: none -- the tiny profile runs on the CPU; the gpu profile needs one (e.g. Colab)")
    import torch

    return Line(INFO, f"GPU: {torch.cuda.get_device_name(0)}")


def check_profile(cuda: bool | None) -> Line:
    from shared.profiles import ENV_VAR, MODEL_VARS, ProfileError, profile_name

    try:
        name = profile_name()
    except ProfileError as error:
        return Line(FAIL, f"profile: {error}", f"export {ENV_VAR}=tiny (or gpu on a GPU machine)")
    if name == "gpu" and cuda is False:
        return Line(FAIL, f"profile: {ENV_VAR}=gpu but no CUDA GPU is visible",
                    f"use a GPU runtime, or export {ENV_VAR}=tiny")
    source = ENV_VAR if os.environ.get(ENV_VAR) else "default"
    swapped = [f"{var}={os.environ[var].strip()}" for var in MODEL_VARS if os.environ.get(var, "").strip()]
    return Line(OK, f"profile: {name} ({source})" + "".join(f", {s}" for s in swapped))


def check_bitsandbytes(cuda: bool | None) -> Line:
    try:
        import bitsandbytes  # noqa: F401  (4-bit loading for QLoRA)
    except Exception as error:  # a broken CUDA set-up raises more than ImportError
        if not cuda:
            return Line(WARN, f"bitsandbytes does not import ({type(error).__name__}); only 4-bit (QLoRA) on a GPU "
                              "needs it")
        return Line(FAIL, f"bitsandbytes does not import: {type(error).__name__}: {error}",
                    "pip install -r requirements.txt on the GPU machine, then restart the runtime")
    return Line(OK, f"bitsandbytes {installed_version('bitsandbytes')} imports")


def check_metric() -> Line:
    try:
        from shared.evaluation.evals import task_metric

        score = task_metric("arithmetic").compute(predictions=["12 apples"], references=["12"])["accuracy"]
    except Exception as error:
        return Line(FAIL, f"the course's offline metric does not load: {type(error).__name__}: {error}",
                    "make lab (installs what it needs); if that does not help: git checkout -- shared/evaluation/metrics/")
    if score != 1.0:
        return Line(FAIL, f"the offline metric scored a known example {score}, expected 1.0",
                    "git checkout -- shared/evaluation/metrics/")
    return Line(OK, "offline metric (shared/evaluation/metrics/task_accuracy) loads and scores")


def run_checks():
    """Yield the lines one by one, so slow checks (importing torch) do not hold back the fast ones."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # doctor never reaches for the network
    yield check_python()
    colab = on_colab()
    if colab:
        yield Line(INFO, "running on Google Colab: the notebook's first code cell sets the course up")
    elif Path(sys.prefix).resolve() != VENV.resolve():
        yield Line(INFO, f"running with {sys.executable}, not the course's .venv (make lab creates it)")
    cuda = cuda_available()
    yield from check_packages(bool(cuda), colab)
    yield check_data()
    yield check_gpu(cuda)
    yield check_profile(cuda)
    yield check_bitsandbytes(cuda)
    yield check_metric()


def main() -> int:
    failed = 0
    for line in run_checks():
        print(line, flush=True)
        failed += line.status == FAIL
    print(f"\n{failed} problem(s) found." if failed else "\nAll checks passed.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
