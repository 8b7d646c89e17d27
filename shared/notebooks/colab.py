"""Running a rung on Google Colab: the notebook's set-up cell, and the set-up it runs.

A Colab-ready notebook (``colab=True`` in ``shared/course.py``) starts with a small code cell made by
``setup_cell`` below; ``make exercises`` writes it. On Colab the cell clones the course into /content and calls
``set_up`` from this file; anywhere else it does nothing. This file is run by its path, before the course is
installed, so it uses only the standard library and imports nothing from ``shared``.

``set_up`` then:

1. installs the versions pinned in requirements.txt, except the packages Colab must keep its own
   (``COLAB_KEEPS``): a CUDA build of torch matched to its GPU (the pin is the CPU build), and its notebook server;
2. installs the course itself (editable, no dependencies) and puts it on ``sys.path`` at once, because an
   editable install is only seen by a Python that starts after it;
3. moves into the rung's folder and picks the profile: ``gpu`` when a GPU is visible, else ``tiny``;
4. prints the versions that matter, and says when the runtime must be restarted: when a package that was already
   imported got another version on disk, Python keeps using the old one until it restarts.

Run again, it does nothing new: the clone is there, the pins are met, the course is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

COLAB_PARENT = "/content"          # where Colab's file browser opens
DISTRIBUTION = "finetuning-course"  # the course's name in pyproject.toml
PROFILE_VAR = "FT_PROFILE"
# Pins Colab does not take from requirements.txt. torch: Colab's build matches its CUDA driver, and the pin is
# the CPU build. jupyterlab, ipykernel, ipywidgets: Colab runs its own notebook server, kernel and widget front end,
# matched to each other. nbval, pytest: test tools.
COLAB_KEEPS = ("torch", "jupyterlab", "ipykernel", "ipywidgets", "nbval", "pytest")
REPORTED = ("transformers", "peft", "trl", "bitsandbytes")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*(\S+)$")
_SLUG = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")

SETUP_CELL = """\
# Set-up for Google Colab: fetches the course and installs its pinned packages (a few minutes the first time).
# Anywhere else this cell does nothing: on your own machine `make lab` has set everything up.
import sys

if "google.colab" in sys.modules:
    import os, runpy, subprocess

    course_dir = {course_dir}
    if not os.path.isdir(course_dir):
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", {branch},
                        {url}, course_dir], check=True)
    runpy.run_path(os.path.join(course_dir, "shared", "notebooks", "colab.py"))["set_up"](course_dir, {rung_folder})
else:
    print("Not on Colab: nothing to set up.")"""


# -- the cell a notebook carries -------------------------------------------------------------------------
def setup_cell(repository: str, branch: str, rung_folder: str, parent: str = COLAB_PARENT) -> str:
    """The source of the set-up cell for one rung's notebook, from the course's repository slug."""
    if not _SLUG.match(repository):
        raise ValueError(f"repository {repository!r} should look like 'owner/name' (as in its GitHub address)")
    course_dir = f"{parent.rstrip('/')}/{repository.split('/')[1]}"
    literals = {"course_dir": course_dir, "branch": branch, "url": f"https://github.com/{repository}",
                "rung_folder": rung_folder}
    return SETUP_CELL.format(**{key: json.dumps(value) for key, value in literals.items()})  # "..." literals


def on_colab() -> bool:
    """True inside a Colab runtime: in its notebook kernel, or in a command run from it (``!python ...``)."""
    if "google.colab" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except ModuleNotFoundError:  # no "google" package at all
        return False


# -- what the cell runs on Colab ---------------------------------------------------------------------------
def set_up(course_dir: str, rung_folder: str) -> None:
    """Everything the notebook needs on Colab once the course is cloned into `course_dir` (see the top)."""
    root = Path(course_dir).resolve()
    changed = install_pins(colab_pins((root / "requirements.txt").read_text(encoding="utf-8")))
    install_course(root)
    use_course(root, rung_folder)
    gpu = gpu_name()
    os.environ[PROFILE_VAR] = "gpu" if gpu else "tiny"
    if gpu:
        print(f"{PROFILE_VAR}=gpu: this runtime has a GPU, so the notebook uses real models.")
    else:
        print(f"{PROFILE_VAR}=tiny: no GPU in this runtime, so the notebook uses the course's tiny model on the CPU "
              "(Runtime > Change runtime type adds a GPU).")
    print(version_report(gpu))
    if changed:
        print(f"RESTART NEEDED: this session had already loaded {', '.join(changed)}, and Python keeps the old "
              "version until it restarts. Use Runtime > Restart session, then run this cell again (it takes seconds "
              "the second time).")


def colab_pins(requirements: str) -> dict[str, str]:
    """The pins Colab installs: every ``name==version`` line of requirements.txt but those in COLAB_KEEPS."""
    pins = {}
    for line in requirements.splitlines():
        match = _PIN.match(line.split("#", 1)[0].strip())
        if match and match.group(1).lower() not in COLAB_KEEPS:
            pins[match.group(1)] = match.group(2)
    return pins


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def install_pins(pins: dict[str, str]) -> list[str]:
    """Install the pins when any is unmet; return 'name old -> new' for each one this session had imported."""
    unmet = [name for name, version in pins.items() if installed(name) != version]
    if not unmet:
        return []
    # The pinned packages all import under their own name (huggingface_hub, not huggingface-hub).
    loaded = {name: installed(name) for name in pins if name.lower().replace("-", "_") in sys.modules}
    print(f"Installing the course's pinned versions of {', '.join(unmet)} ...")
    pip("install", *[f"{name}=={version}" for name, version in pins.items()])  # all at once: pip checks they fit
    importlib.invalidate_caches()
    return [f"{name} {old} -> {installed(name)}" for name, old in loaded.items() if installed(name) != old]


def install_course(root: Path) -> None:
    """``pip install --no-deps -e`` the clone, unless this very folder is installed already."""
    try:
        origin = json.loads(metadata.distribution(DISTRIBUTION).read_text("direct_url.json") or "{}")
    except metadata.PackageNotFoundError:
        origin = {}
    if origin.get("url") != root.as_uri():
        pip("install", "--no-deps", "--editable", str(root))


def pip(*args: str) -> None:
    """Run pip in this kernel's Python, quietly; its output is shown only when it fails."""
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--quiet"], capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout[-3000:] + result.stderr[-3000:])
        raise RuntimeError(f"pip {args[0]} failed with exit code {result.returncode}; its output is above. "
                           "Check the runtime has internet access, then run this cell again.")


def use_course(root: Path, rung_folder: str) -> None:
    """Make ``import shared`` work in this session and work from the rung's folder."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    os.chdir(root / rung_folder)
    print(f"The course is in {root}; working in {rung_folder}.")


def gpu_name() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def version_report(gpu: str | None) -> str:
    versions = [f"torch {installed('torch')}", f"GPU {gpu or 'none'}"]
    versions += [f"{name} {installed(name) or 'not installed'}" for name in REPORTED]
    return " · ".join(versions)
