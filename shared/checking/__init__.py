"""The checking framework: run a learner's notebook, verify what it made, print one line per criterion.

A rung's ``check.py`` describes its done-when criteria as plain functions and hands them to ``main``:

    def check(ctx):
        ctx.run_notebook()                       # executes a copy; outputs go to a fresh folder
        fns = ctx.graded(["build_sft_example"])  # the learner's functions, pulled out of the notebook
        ctx.criterion("masks the prompt", lambda: my_test(fns["build_sft_example"]), hint="...")

    if __name__ == "__main__":
        main(check, rung="02")

A criterion passes when its function returns normally (a string it returns is shown as detail) and fails
when it raises (``CheckFailed`` for an expected failure: its message is the detail; anything else is reported
as an error in the check, never as a crash). ``ctx.review(...)`` records a written answer that is present
and waits for an instructor: it never passes on keywords.

Command line (what ``make check`` runs):

    python rungs/02-sft/check.py [NOTEBOOK ...] [--json FILE] [--timeout S]

With several notebooks (an instructor grading a class) each gets its own report, the JSON file holds all
of them, and a summary table comes last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from shared.notebooks import exercises, graded, running
from shared.paths import REPO_ROOT, RUNGS_DIR

PASS, FAIL, REVIEW = "pass", "fail", "review"
SYMBOLS = {PASS: "✓", FAIL: "✗", REVIEW: "⚑"}
DEFAULT_TIMEOUT_S = 600  # generous: a good notebook must not fail on a slow laptop (budgets are ~2 min)


class CheckFailed(AssertionError):
    """Raised inside a criterion to fail it with a message for the learner."""


@dataclass
class Criterion:
    name: str
    status: str
    detail: str = ""
    hint: str = ""


@dataclass
class Report:
    rung: str
    notebook: str
    criteria: list[Criterion] = field(default_factory=list)
    seconds: float = 0.0
    notebook_seconds: float | None = None

    @property
    def passed(self) -> bool:
        return bool(self.criteria) and all(c.status in (PASS, REVIEW) for c in self.criteria)

    @property
    def needs_review(self) -> list[str]:
        return [c.name for c in self.criteria if c.status == REVIEW]

    def to_json(self) -> dict:
        return {**asdict(self), "passed": self.passed, "needs_review": self.needs_review}


class Context:
    """What a rung's check function works with: the notebook, its run, its outputs, the report."""

    def __init__(self, rung: str, notebook_path: Path, timeout: float, out=None,
                 outputs_root: Path | None = None):
        self.rung = rung
        self.notebook_path = notebook_path
        self.timeout = timeout
        self.report = Report(rung=rung, notebook=str(notebook_path))
        self.out = out  # None: sys.stdout as it is when printing (so redirect_stdout and capture work)
        self._tmp = tempfile.TemporaryDirectory(prefix=f"check-{rung}-")
        # FT_OUTPUTS for the run: a fresh folder, so the learner's own outputs are neither read nor overwritten
        self.outputs_root = outputs_root or Path(self._tmp.name) / "outputs"
        self.nb = None
        self.run = None

    # -- building blocks -------------------------------------------------------------------------
    def criterion(self, name: str, test: Callable[[], object], hint: str = "") -> bool:
        """Run one test; record and print ✓ or ✗ (with the hint when it fails)."""
        try:
            detail = test()
            result = Criterion(name, PASS, "" if detail is None else str(detail))
        except CheckFailed as failure:
            result = Criterion(name, FAIL, str(failure), hint)
        except exercises.NotebookError as failure:
            result = Criterion(name, FAIL, str(failure), hint)
        except Exception as error:  # a learner's function that raises is a failed criterion, not a crash
            result = Criterion(name, FAIL, _describe(error), hint)
        self._record(result)
        return result.status == PASS

    def collect(self, name: str, produce: Callable[[], dict], hint: str = "") -> dict:
        """A criterion that gathers what later criteria need (saved figures, a reloaded model): returns what
        `produce` returned, or an empty dict when it failed -- the later criteria then fail with their own line."""
        produced = {}
        self.criterion(name, lambda: produced.update(produce()), hint=hint)
        return produced

    def review(self, name: str, text: str | None, min_words: int = 25, hint: str = "") -> bool:
        """A written answer: ✗ when missing or a placeholder, ⚑ (for an instructor) when present."""
        words = len((text or "").replace(exercises.ANSWER_PLACEHOLDER, "").split())
        if words < min_words:
            self._record(Criterion(name, FAIL, f"{words} words written; at least {min_words} expected", hint))
            return False
        self._record(Criterion(name, REVIEW, f"{words} words -- present; an instructor reviews the content"))
        return True

    def _record(self, result: Criterion) -> None:
        self.report.criteria.append(result)
        line = f"  {SYMBOLS[result.status]} {result.name}"
        if result.detail:
            line += f" -- {result.detail}"
        print(line, file=self.out)
        if result.status == FAIL and result.hint:
            print(f"      hint: {result.hint}", file=self.out)

    # -- the notebook ----------------------------------------------------------------------------
    def load(self):
        if self.nb is None:
            self.nb = exercises.read(self.notebook_path)
        return self.nb

    def run_notebook(self, name: str = "the notebook runs top to bottom", env: dict | None = None) -> bool:
        """Execute a copy of the notebook with FT_OUTPUTS pointing at a fresh folder."""
        def _run():
            nb = self.load()
            self.outputs_root.mkdir(parents=True, exist_ok=True)
            run_env = {"FT_OUTPUTS": str(self.outputs_root), "FT_QUIET": "1", "HF_HUB_OFFLINE": "1",
                       "MPLBACKEND": "Agg", **(env or {})}
            self.run = running.execute(nb, timeout=self.timeout, cwd=self.notebook_path.parent, env=run_env)
            self.report.notebook_seconds = round(self.run.seconds, 1)
            if self.run.timed_out:
                raise CheckFailed(self.run.error)
            if not self.run.ok:
                where = f"code cell {self.run.failed_cell}" if self.run.failed_cell else "a cell"
                raise CheckFailed(f"{where} raised {self.run.error}")
            return f"{self.run.seconds:.0f} s"

        return self.criterion(name, _run, hint="Restart the kernel and run all cells (Kernel -> Restart Kernel "
                                               "and Run All Cells); fix the first cell that fails.")

    def outputs(self) -> Path:
        """The rung's output folder from the checked run (what the notebook saved)."""
        return self.outputs_root / self.rung_dir_name()

    def rung_dir_name(self) -> str:
        return rung_folder(self.rung).name

    def graded(self, names: list[str]) -> dict[str, Callable]:
        """The learner's graded functions; missing ones become functions that fail with a clear message."""
        try:
            return graded.extract_functions(self.load(), names)
        except graded.MissingFunction:
            found = {}
            for name in names:
                try:
                    found.update(graded.extract_functions(self.load(), [name]))
                except graded.MissingFunction as missing:
                    found[name] = _failing(str(missing))
            return found
        except exercises.NotebookError as error:
            return {name: _failing(str(error)) for name in names}

    def answers(self) -> dict[str, str]:
        try:
            return exercises.answer_cells(self.load())
        except exercises.NotebookError:
            return {}

    def close(self) -> None:
        self._tmp.cleanup()


def _failing(message: str) -> Callable:
    def missing(*args, **kwargs):
        raise CheckFailed(message)

    return missing


def _describe(error: Exception) -> str:
    if isinstance(error, NotImplementedError):
        return "not written yet (raises NotImplementedError)"
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" (line {frame.lineno} of {frame.name})" if frame and frame.filename == "<notebook>" else ""
    return f"{type(error).__name__}: {error}{where}"


def require(condition: bool, message: str) -> None:
    """Fail the current criterion with `message` unless `condition` holds."""
    if not condition:
        raise CheckFailed(message)


def finite_fraction(value, what: str) -> float:
    """A metric read from a file: must be a finite number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise CheckFailed(f"{what} is {value!r}, not a number between 0 and 1")
    return float(value)


def read_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise CheckFailed(f"{what} was not saved ({path.name} is missing): run the cell that saves it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise CheckFailed(f"{what} ({path.name}) is not valid JSON: {error}") from error


# -- what a notebook saved: metrics and a model whose accuracy the checker recomputes ----------------
AGREEMENT = 0.02  # saved figures may differ from a recomputation by this much (batching can flip a tie)


def read_metrics(outputs: Path, keys=("before", "after")) -> dict:
    """metrics.json from a rung's outputs; each of `keys` must map task -> a fraction in [0, 1]."""
    metrics = read_json(outputs / "metrics.json", "metrics")
    for key in keys:
        require(isinstance(metrics.get(key), dict), f"metrics.json has no {key!r} figures")
        for task, value in metrics[key].items():
            finite_fraction(value, f"metrics.json {key}[{task!r}]")
    return metrics


def heldout_accuracies(model, tokenizer, profile) -> dict[str, float]:
    """Held-out accuracy per task, measured here with the course's metric (never read from a file)."""
    from shared.evaluation import evals
    from shared import numbers

    results = evals.evaluate_model(model, tokenizer, split="heldout", limit=profile.eval_limit)
    accuracies = evals.accuracies(results)
    require(all(numbers.is_fraction(v) for v in accuracies.values()), f"accuracy is not a number: {accuracies}")
    return accuracies


def check_thresholds(measured: dict[str, float], thresholds: dict[str, float] | float) -> str:
    """Every task at or above its threshold (one number applies to every task)."""
    require(bool(measured), "no accuracy could be measured (see the failure above)")
    if not isinstance(thresholds, dict):
        thresholds = {task: thresholds for task in measured}
    low = {task: value for task, value in measured.items() if value < thresholds.get(task, 0.0)}
    shown = ", ".join(f"{task} {value:.0%}" for task, value in measured.items())
    if low:
        needed = ", ".join(f"{task} {thresholds[task]:.0%}" for task in low)
        raise CheckFailed(f"held-out accuracy {shown}; needed: {needed}")
    return shown


def check_agreement(saved: dict, measured: dict, key: str = "after") -> str:
    """The figures a notebook saved under `key` match what the checker measured on the saved model."""
    require(bool(saved) and bool(measured), "needs both the saved figures and the recomputed ones (see above)")
    figures = saved[key]
    for task, value in measured.items():
        require(task in figures, f"metrics.json {key!r} has no figure for {task}")
        require(abs(figures[task] - value) <= AGREEMENT,
                f"metrics.json says {task} {figures[task]:.1%}, the saved model scores {value:.1%}")
    return f"within {AGREEMENT:.0%}"


# -- running checks -------------------------------------------------------------------------------
def rung_folder(rung: str) -> Path:
    matches = sorted(RUNGS_DIR.glob(f"{rung}-*"))
    if not matches:
        raise SystemExit(f"no rung {rung!r}: rungs are {', '.join(p.name for p in sorted(RUNGS_DIR.iterdir()))}")
    return matches[0]


def check_notebook(check: Callable[[Context], None], rung: str, notebook: Path, timeout: float,
                   out=None, outputs_root: Path | None = None) -> Report:
    """Check one notebook. `outputs_root` keeps the run's outputs there (tests, debugging)."""
    start = time.monotonic()
    print(f"Rung {rung} -- checking {_relative(notebook)}", file=out)
    ctx = Context(rung, notebook, timeout, out=out, outputs_root=outputs_root)
    try:
        ctx.load()
    except exercises.NotebookError as error:
        ctx._record(Criterion("the notebook can be read", FAIL, str(error),
                              "Point NOTEBOOK= at your .ipynb file, saved from Jupyter."))
    else:
        try:
            check(ctx)
        except Exception as error:  # a bug in a check must still leave a report, never a traceback
            ctx._record(Criterion("the checker itself", FAIL, _describe(error),
                                  "This is a checker error, not yours: please report it with the notebook."))
    finally:
        ctx.close()
    report = ctx.report
    report.seconds = round(time.monotonic() - start, 1)
    passed = sum(c.status in (PASS, REVIEW) for c in report.criteria)
    verdict = "DONE" if report.passed else "NOT DONE YET"
    print(f"{verdict}: {passed}/{len(report.criteria)} criteria met", file=out, end="")
    if report.needs_review:
        print(f"; {len(report.needs_review)} written answer(s) flagged for instructor review", file=out, end="")
    print(f" ({report.seconds:.0f} s)\n", file=out)
    return report


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(check: Callable[[Context], None], rung: str, argv: list[str] | None = None) -> int:
    folder = rung_folder(rung)
    parser = argparse.ArgumentParser(description=f"Check rung {rung}: runs the notebook and verifies what it made.")
    parser.add_argument("notebooks", nargs="*", type=Path, default=[folder / "exercise.ipynb"],
                        help="notebook(s) to check (default: the rung's exercise.ipynb)")
    parser.add_argument("--json", type=Path, help="also write the result(s) as JSON to this file")
    parser.add_argument("--timeout", type=float,
                        default=float(os.environ.get("FT_CHECK_TIMEOUT", DEFAULT_TIMEOUT_S)),
                        help=f"seconds the notebook may run (default {DEFAULT_TIMEOUT_S})")
    args = parser.parse_args(argv)
    reports = [check_notebook(check, rung, nb, args.timeout) for nb in args.notebooks]
    if len(reports) > 1:
        print("Summary")
        for report in reports:
            flag = f"  ({len(report.needs_review)} to review)" if report.needs_review else ""
            print(f"  {'DONE    ' if report.passed else 'NOT DONE'}  {report.notebook}{flag}")
    if args.json:
        payload = [r.to_json() for r in reports] if len(reports) > 1 else reports[0].to_json()
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if all(r.passed for r in reports) else 1
