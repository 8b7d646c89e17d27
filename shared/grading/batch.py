"""Grading a class: every learner's notebook for every rung asked, each checked by ``runner``, results kept.

    python -m shared.grading SUBMISSIONS [--rung 02] [--out grading] [--jobs 2] [--hidden DIR]

writes, in the output folder: ``results.json`` (one result per learner and rung), ``grades.csv``, ``report.html``
and ``work/<learner>/<rung>/`` (each check's copy of the submission, its log and report).

A second run re-uses the result of every notebook whose content -- and whose grading: the checker, the course's
code and data, the hidden tests, the limits -- has not changed (``cache/``); only new and edited notebooks
are checked again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from shared import course
from shared.checking import hidden as hidden_tests
from shared.checking import inside, integrity
from shared.grading import records, runner, submissions
from shared.grading.records import BROKEN, Result
from shared.paths import DATA_DIR, REPO_ROOT, RUNGS_DIR, SOLUTIONS_DIR

MEMORY_PER_CHECK_GB = 8.0   # a tiny-profile check peaks near 3 GB; room for a learner's bigger batch


def rungs_to_grade(rung: str | None) -> list[course.Rung]:
    if rung:
        return [course.rung(rung)]
    return course.ready_rungs()


def default_jobs(memory_gb: float) -> int:
    """Two at a time where the machine has the cores and the memory for two; else one."""
    cores = os.cpu_count() or 1
    memory = psutil.virtual_memory().total / 2**30
    return 2 if cores >= 2 and memory >= 2 * memory_gb + 4 else 1


def grading_key(checker: Path, limits: runner.Limits, hidden: Path | None) -> str:
    """What grades a notebook besides the notebook: the checker, the course's code and data, the hidden tests,
    the profile and seed the checker reads, the limits. A change to any of them grades everything again."""
    fingerprint = integrity.fingerprint([checker, REPO_ROOT / "shared", DATA_DIR])
    settings = {"profile": os.environ.get("FT_PROFILE", "tiny"), "seed": os.environ.get("FT_CHECK_SEED", ""),
                "limits": [limits.notebook_timeout_s, limits.memory_gb],
                "hidden": integrity.fingerprint([hidden]) if hidden else {}}
    return _sha256(json.dumps([fingerprint, settings], sort_keys=True).encode())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Grader:
    def __init__(self, submissions_dir: Path, out: Path, rungs: list[course.Rung], jobs: int | None = None,
                 limits: runner.Limits | None = None, hidden: Path | None = None, rungs_dir: Path = RUNGS_DIR,
                 log=print):
        self.submissions_dir = Path(submissions_dir).resolve()
        self.out = Path(out).resolve()
        self.rungs = rungs
        self.rungs_dir = Path(rungs_dir)
        self.limits = limits or runner.Limits()
        self.jobs = jobs or default_jobs(self.limits.memory_gb)
        self.limits.threads = max(1, (os.cpu_count() or 1) // self.jobs)
        self.hidden = Path(hidden).resolve() if hidden else None
        self.log = log
        if inside(self.out, self.submissions_dir):
            raise ValueError(f"the results folder {self.out} must not be inside the submissions folder")
        if self.hidden is not None:
            hidden_tests.load(self.hidden)   # an unusable file stops here, before an hour of grading without it

    def checker(self, rung: course.Rung) -> Path:
        return self.rungs_dir / rung.name / "check.py"

    # -- what a graded notebook may not read ------------------------------------------------------
    def denied(self) -> list[Path]:
        deny = [self.submissions_dir, self.out, self.scratch, SOLUTIONS_DIR]
        return deny + ([self.hidden] if self.hidden else [])

    # -- the batch ---------------------------------------------------------------------------------
    def grade(self) -> list[Result]:
        with tempfile.TemporaryDirectory(prefix="ft-grading-", dir=runner.SCRATCH_BASE) as scratch:
            self.scratch = Path(scratch)   # every check's working folder, each denied to the others
            self.numbers = itertools.count()
            return self._grade()

    def _grade(self) -> list[Result]:
        start = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        found = submissions.discover(self.submissions_dir, self.out / "unpacked", self.rungs)
        keys = {rung.number: grading_key(self.checker(rung), self.limits, self.hidden) for rung in self.rungs}
        results, jobs = [], []
        for submission in found:
            for rung in self.rungs:
                result, job = self.plan(submission, rung, keys[rung.number])
                (results.append(result) if job is None else jobs.append((job, result.content_hash)))
        self.log(f"{len(found)} submissions, {len(self.rungs)} rung(s): {len(jobs)} notebook(s) to check, "
                 f"{sum(r.reused for r in results)} unchanged since the last run; {self.jobs} at a time")
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            for result in pool.map(lambda item: self.check(*item), jobs):
                results.append(result)
        results += self.other_rungs_results()
        records.write_results(self.out, results)
        records.write_grades_csv(self.out, results)
        self.write_report(results)
        self.log(f"graded in {time.monotonic() - start:.0f} s: {self.out / 'report.html'}")
        return results

    def other_rungs_results(self) -> list[Result]:
        """What an earlier run in this folder graded of the rungs not graded now (RUNG=02 today, RUNG=03
        tomorrow: one report for the class)."""
        graded_now = {rung.number for rung in self.rungs}
        return [result for result in records.read_results(self.out) if result.rung not in graded_now]

    def plan(self, submission: submissions.Submission, rung: course.Rung, key: str):
        """(a result already known, None) or (a placeholder, the job that checks the notebook)."""
        result = Result(submission.learner, rung.number, rung.name)
        if submission.folder is None:
            result.status, result.reason = BROKEN, "; ".join(submission.problems)
            return result, None
        if rung.number in submission.unclear:
            result.status, result.reason = BROKEN, submission.unclear[rung.number]
            return result, None
        notebook = submission.notebooks.get(rung.number)
        if notebook is None:
            result.reason = f"no notebook for rung {rung.name}" + (
                f" ({'; '.join(submission.problems)})" if submission.problems else "")
            return result, None
        result.content_hash = _sha256(notebook.read_bytes() + key.encode())
        cached = self.cached(result.content_hash, submission.learner, rung)
        if cached is not None:
            return cached, None
        job = runner.Job(submission.learner, rung.number, rung.name, self.checker(rung), submission.folder,
                         notebook, self.scratch / f"{next(self.numbers):04d}",
                         keep=self.out / "work" / submission.learner / rung.number)
        return result, job

    def check(self, job: runner.Job, content_hash: str) -> Result:
        self.log(f"  checking {job.learner} / {job.rung_folder} ...")
        result = runner.run(job, self.limits, self.denied(), self.hidden)
        result.content_hash = content_hash
        result.log = str(Path(result.log).relative_to(self.out))
        self.log(f"  {job.learner} / {job.rung_folder}: {result.status}"
                 + (f" -- {result.reason}" if result.reason else "") + f" ({result.seconds:.0f} s)")
        self.remember(result)
        return result

    # -- re-use --------------------------------------------------------------------------------------
    def cached(self, content_hash: str, learner: str, rung: course.Rung) -> Result | None:
        path = self.out / "cache" / f"{content_hash}.json"
        if not path.exists():
            return None
        result = Result.from_json(json.loads(path.read_text(encoding="utf-8")))
        if result.learner != learner:   # the same notebook, handed in by someone else: grade it for them
            return None
        result.reused = True
        return result

    def remember(self, result: Result) -> None:
        if ran_out_of_time(result):
            return   # a timeout may be the machine's, not the notebook's: try again next time
        folder = self.out / "cache"
        folder.mkdir(exist_ok=True)
        (folder / f"{result.content_hash}.json").write_text(json.dumps(result.to_json()), encoding="utf-8")

    def write_report(self, results: list[Result]) -> None:
        from shared.grading import report

        report.write_report(self.out, results, hidden_note=self.hidden_note(results))

    def hidden_note(self, results: list[Result]) -> str:
        """Which hidden tests graded the class, and the rungs whose checkers take none of them (the capstone draws
        nothing at check time: a seed given for it changes nothing, and the report must not let it seem to)."""
        if self.hidden is None:
            return ""
        checked = [r for r in results if r.criteria]
        untouched = sorted({r.rung for r in checked} - {r.rung for r in checked if r.hidden})
        note = f"Hidden tests from {self.hidden}."
        if untouched:
            note += f" Rung{'s' if len(untouched) > 1 else ''} {', '.join(untouched)}: the checker takes none of them."
        return note


def ran_out_of_time(result: Result) -> bool:
    """The check, or the notebook inside it, was stopped by a time limit (the words runner and run_failure use)."""
    said = [result.reason] + [c.get("detail", "") for c in result.criteria]
    return any("did not finish within" in text for text in said)
