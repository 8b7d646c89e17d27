"""One learner's notebook for one rung, checked in a subprocess of its own.

The check is the rung's own checker (``rungs/NN-slug/check.py``), as ``make check`` runs it. What grading adds
is a fence around it, so that one broken, hanging or hostile notebook cannot stop the batch or touch another
learner's work:

* its own working folder: a copy of the learner's submission, its HOME, temporary files and outputs;
* the jail (``shared.checking.jail``): the notebook's code reads nothing under the other submissions, the
  grading results, the hidden tests or the solutions, and writes only in its folder;
* a time limit for the whole check, and a memory cap on everything it starts -- over either, the process group
  is killed and the result says which.

A memory cap by resident memory, watched, rather than ``RLIMIT_AS``: an address-space limit also counts what
a process only reserves -- CUDA reserves far more than any GPU holds -- and would fail good notebooks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from shared.checking import jail
from shared.checking.hidden import HIDDEN_VAR
from shared.grading.records import BROKEN, DONE, NOT_DONE, Result
from shared.paths import REPO_ROOT

POLL_S = 0.5
VERIFY_ALLOWANCE_S = 600   # after the notebook: reloading and measuring its models (a minute on the tiny profile)
COPY_IGNORED = shutil.ignore_patterns(".ipynb_checkpoints", "outputs", "__pycache__", ".git")
KEPT = ("check.out", "check.log", "report.json", jail.REFUSED_LOG)   # what outlives a check's working folder
# Checks work under a short path: the checker's processes talk over Unix sockets in TMPDIR, whose paths may not
# be longer than 107 bytes -- a results folder deep in someone's home would break every graded function.
SCRATCH_BASE = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())


@dataclass
class Limits:
    notebook_timeout_s: float = 600.0   # what check.py gives the notebook (--timeout)
    memory_gb: float = 8.0              # everything the check starts, together
    threads: int = 1                    # torch / OpenMP threads per check (two checks share the cores)
    verify_allowance_s: float = VERIFY_ALLOWANCE_S

    @property
    def wall_s(self) -> float:
        return self.notebook_timeout_s + self.verify_allowance_s


@dataclass
class Job:
    learner: str
    rung: str
    rung_folder: str
    checker: Path           # the rung's check.py
    submission: Path        # the learner's folder (or unpacked zip)
    notebook: Path          # inside `submission`
    workdir: Path           # this check's own folder, made fresh, on a short path (see SCRATCH_BASE)
    keep: Path              # where its output, log and report are kept once it is done


def prepare(job: Job) -> Path:
    """A fresh working folder holding a copy of the submission; returns the notebook's path in it."""
    if job.workdir.exists():
        shutil.rmtree(job.workdir)
    copy = job.workdir / "submission"
    shutil.copytree(job.submission, copy, ignore=COPY_IGNORED, symlinks=True)
    for folder in ("home", "tmp", "outputs"):
        (job.workdir / folder).mkdir()
    return copy / job.notebook.relative_to(job.submission)


def environment(job: Job, limits: Limits, deny: list[Path], hidden: Path | None,
                log_only: bool = False) -> dict[str, str]:
    """The check's environment: its own HOME, temporary folder, outputs and log, the jail, the threads."""
    env = {key: value for key, value in os.environ.items() if key not in (HIDDEN_VAR, "FT_CHECK_LOG", "PYTHONPATH")}
    env.update({
        "HOME": str(job.workdir / "home"), "TMPDIR": str(job.workdir / "tmp"),
        "FT_OUTPUTS": str(job.workdir / "outputs"), "FT_CHECK_LOG": str(job.workdir / "check.log"),
        "MPLCONFIGDIR": str(job.workdir / "home" / ".matplotlib"),
        "HF_DATASETS_CACHE": str(job.workdir / "home" / "hf-datasets"),
        "HF_HUB_OFFLINE": "1", "FT_QUIET": "1", "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": str(limits.threads), "MKL_NUM_THREADS": str(limits.threads),
        jail.JAIL_VAR: jail.spec(job.workdir, deny, log_only),
    })
    if hidden is not None:
        env[HIDDEN_VAR] = str(hidden)   # the checker reads it; the jail keeps the notebook out of it
    return env


def run(job: Job, limits: Limits, deny: list[Path], hidden: Path | None = None, log_only: bool = False) -> Result:
    """Check one notebook; never raises for anything the notebook does. `log_only`: the jail refuses nothing and
    only notes what it would have refused (Result.refused)."""
    result = Result(job.learner, job.rung, job.rung_folder, notebook=str(job.notebook.relative_to(job.submission)))
    notebook = prepare(job)
    report_path = job.workdir / "report.json"
    command = [sys.executable, str(job.checker), str(notebook),
               "--json", str(report_path), "--timeout", str(limits.notebook_timeout_s)]
    start = time.monotonic()
    with open(job.workdir / "check.out", "wb") as out:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment(job, limits, deny, hidden, log_only),
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)   # its own process group: killed as one
        stopped = watch(process, limits)
    result.seconds = round(time.monotonic() - start, 1)
    result.refused = refusals(job.workdir)
    read_report(result, report_path, process.returncode, stopped, job.workdir / "check.out")
    keep_and_clean(job)
    result.log = str(job.keep / "check.out")
    return result


def keep_and_clean(job: Job) -> None:
    """Keep the check's output, log and report; remove its working folder (the copy, the models it saved)."""
    if job.keep.exists():
        shutil.rmtree(job.keep)
    job.keep.mkdir(parents=True)
    for name in KEPT:
        if (job.workdir / name).is_file():
            shutil.copy2(job.workdir / name, job.keep / name)
    shutil.rmtree(job.workdir, ignore_errors=True)


def refusals(workdir: Path, most: int = 20) -> list[str]:
    """What the jail refused this notebook's code, each once, in order (``jail_site``'s refused.log)."""
    path = workdir / jail.REFUSED_LOG
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    unique = list(dict.fromkeys(line.strip() for line in lines if line.strip()))
    return unique[:most] + ([f"... and {len(unique) - most} more"] if len(unique) > most else [])


def watch(process: subprocess.Popen, limits: Limits) -> str:
    """Wait for the check; kill its whole process group when it runs past the limit or uses too much memory.
    Returns why it was stopped ("" when it ended by itself)."""
    deadline = time.monotonic() + limits.wall_s
    cap = limits.memory_gb * 2**30
    while process.poll() is None:
        if time.monotonic() > deadline:
            reason = (f"the check did not finish within {limits.wall_s:.0f} s (the notebook has "
                      f"{limits.notebook_timeout_s:.0f} s): an endless loop, or a much slower recipe than the rung's")
            return kill(process, reason)
        used = resident_bytes(process.pid)
        if used > cap:
            return kill(process, f"used {used / 2**30:.1f} GB of memory, over the {limits.memory_gb:g} GB each "
                                 "check may use")
        time.sleep(POLL_S)
    return ""


def resident_bytes(pid: int) -> int:
    """Resident memory of a process and everything it started (the kernel, the graded functions' process)."""
    try:
        parent = psutil.Process(pid)
        processes = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def kill(process: subprocess.Popen, reason: str) -> str:
    """Kill the check's process group, then anything of it that left the group (a kernel starts its own)."""
    try:
        family = [process, *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = [process]
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for member in family:
        try:
            member.kill()
        except (psutil.NoSuchProcess, ProcessLookupError):
            pass
    process.wait()
    return reason


def read_report(result: Result, report_path: Path, returncode: int, stopped: str, output: Path) -> Result:
    """The checker's JSON report as a Result; a check that was stopped or crashed is BROKEN with the reason."""
    if stopped:
        result.status, result.reason = BROKEN, stopped
        return result
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        result.status = BROKEN
        result.reason = f"the checker stopped (exit code {returncode}) without a report: {last_line(output)}"
        return result
    result.criteria = [{k: c.get(k, "") for k in ("name", "status", "detail", "hint", "answer")}
                       for c in report["criteria"]]
    result.notebook_seconds = report.get("notebook_seconds")
    result.hidden = report.get("hidden", [])
    result.status = DONE if report["passed"] else NOT_DONE
    return result


def last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1][:300] if lines else "no output"
