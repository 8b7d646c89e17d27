"""The checking framework: run a learner's notebook, verify what it made, print one line per criterion.

A rung's ``check.py`` describes its done-when criteria as plain functions and hands them to ``main``:

    def check(ctx):
        ctx.run_notebook()                       # executes a copy; outputs go to a fresh folder
        fns = ctx.graded(["build_sft_example"])  # the learner's functions, pulled out of the notebook
        ctx.criterion("masks the prompt", lambda: my_test(fns["build_sft_example"]), hint="...")
        ctx.from_the_run(verify_outputs)         # criteria about what the run saved (one line if it stopped)

    if __name__ == "__main__":
        main(check, rung="02")

What the framework does for every rung, so no checker has to remember it:

* the learner's graded functions run in a process of their own (``shared.checking.sandbox``), watched for the
  references they may not call (``ctx.graded(names, forbidden={...})``);
* the course's own files (``data/``, ``shared/``) are fingerprinted before the run and compared after it: a
  notebook that changed them fails (``shared.checking.integrity``);
* a notebook that uses a function still left as its exercise stub is not run: the run would stop there, and
  the learner hears which function to write in seconds, not after the training cells before it
  (``shared.notebooks.running.first_unwritten``);
* on the command line, library warnings, progress bars and logs go to a log file: the learner reads only the
  criteria, their hints and the verdict.

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
import getpass
import io
import json
import sys
import os
import re
import tempfile
import time
import tokenize
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from shared.checking import guards, hidden, integrity, jail, results, sandbox
from shared.notebooks import exercises, running
from shared.paths import REPO_ROOT, RUNGS_DIR

PASS, FAIL, REVIEW, NOT_CHECKED = "pass", "fail", "review", "not checked"
SYMBOLS = {PASS: "✓", FAIL: "✗", REVIEW: "⚑", NOT_CHECKED: "·"}
DEFAULT_TIMEOUT_S = 600  # generous: a good notebook must not fail on a slow laptop (budgets are ~2 min)
TIMEOUT_VAR = "FT_CHECK_TIMEOUT"
RERUN_HINT = ("Restart the kernel and run all cells (Kernel -> Restart Kernel and Run All Cells); fix the first "
              "cell that fails.")


class CheckFailed(AssertionError):
    """Raised inside a criterion to fail it with a message for the learner."""


@dataclass
class Criterion:
    name: str
    status: str
    detail: str = ""
    hint: str = ""
    answer: str = ""   # a written answer's text, for whoever reviews it (an instructor grading a class)


@dataclass
class Report:
    rung: str
    notebook: str
    criteria: list[Criterion] = field(default_factory=list)
    seconds: float = 0.0
    notebook_seconds: float | None = None
    hidden: list[str] = field(default_factory=list)   # what the instructor's hidden tests added (hidden.py)

    @property
    def passed(self) -> bool:
        return bool(self.criteria) and all(c.status in (PASS, REVIEW) for c in self.criteria)

    @property
    def needs_review(self) -> list[str]:
        return [c.name for c in self.criteria if c.status == REVIEW]

    def to_json(self) -> dict:
        return {**asdict(self), "passed": self.passed, "needs_review": self.needs_review}


@dataclass
class PriorRun:
    """A run of the notebook made before the check by someone the checker trusts -- the test suite, whose nbval
    run executes each solution once: the outputs it saved, its seconds, whether every cell ran, and the
    fingerprint of the course's files taken before it started (``integrity.fingerprint``)."""
    outputs_root: Path
    seconds: float
    fingerprint_before: dict
    ok: bool = True
    error: str = ""


class Context:
    """What a rung's check function works with: the notebook, its run, its outputs, the report."""

    def __init__(self, rung: str, notebook_path: Path, timeout: float, out=None,
                 outputs_root: Path | None = None, prior_run: PriorRun | None = None,
                 measurements: dict | None = None):
        self.rung = rung
        self.notebook_path = notebook_path
        self.timeout = timeout
        self.report = Report(rung=rung, notebook=str(notebook_path))
        self.out = out  # None: sys.stdout as it is when printing (so redirect_stdout and capture work)
        self._tmp = tempfile.TemporaryDirectory(prefix=f"check-{rung}-")
        self.prior_run = prior_run
        # FT_OUTPUTS for the run: a fresh folder, so the learner's own outputs are neither read nor overwritten
        self.outputs_root = prior_run.outputs_root if prior_run else outputs_root or Path(self._tmp.name) / "outputs"
        # Kept in memory, where the notebook cannot reach it (a file could be rewritten by the notebook).
        self._fingerprint = prior_run.fingerprint_before if prior_run else integrity.fingerprint()
        self.nb = None
        self.run = None
        self._graded: list[sandbox.GradedFunctions] = []
        # Measurements by the content of what was measured: several checks of byte-identical files (an
        # instructor's tests that tamper with one file at a time) measure the model once. None: always measure.
        self.measurements = measurements
        self.stopped_run: str | None = None      # why the notebook run stopped, once run_notebook failed
        self._not_checked: list[str] | None = None  # criteria from_the_run skipped (None: checking normally)

    @property
    def profile(self):
        """The profile of the checker's own environment (FT_PROFILE): it sets the pass marks, so it is never read
        from a file the notebook wrote."""
        from shared.profiles import get_profile

        return get_profile(announce=False)

    # -- building blocks -------------------------------------------------------------------------
    def criterion(self, name: str, test: Callable[[], object], hint: str | Callable[[], str] = "") -> bool:
        """Run one test; record and print ✓ or ✗ (with the hint when it fails; a callable hint is read then)."""
        if self._not_checked is not None:  # inside from_the_run after a run that stopped: nothing to check yet
            self._not_checked.append(name)
            self.report.criteria.append(Criterion(name, NOT_CHECKED, "the notebook did not run to the end"))
            return False
        try:
            detail = test()
            result = Criterion(name, PASS, "" if detail is None else str(detail))
        except CheckFailed as failure:
            result = Criterion(name, FAIL, str(failure), hint)
        except exercises.NotebookError as failure:
            result = Criterion(name, FAIL, str(failure), hint)
        except Exception as error:  # a learner's function that raises is a failed criterion, not a crash
            result = Criterion(name, FAIL, _describe(error), _hint_for(error, hint))
        if callable(result.hint):
            result.hint = result.hint()
        self._record(result)
        return result.status == PASS

    def collect(self, name: str, produce: Callable[[], dict], hint: str = "") -> dict:
        """A criterion that gathers what later criteria need (saved figures, a reloaded model): returns what
        `produce` returned, or an empty dict when it failed -- the later criteria then fail with their own line."""
        produced = {}
        self.criterion(name, lambda: produced.update(produce()), hint=hint)
        return produced

    def review(self, name: str, text: str | None, min_words: int = 25, hint: str = "") -> bool:
        """A written answer: ✗ when missing or a placeholder, ⚑ (for an instructor) when present; not checked, as
        any criterion, when it is read from what a run that stopped never saved."""
        if self._not_checked is not None:
            self._not_checked.append(name)
            self.report.criteria.append(Criterion(name, NOT_CHECKED, "the notebook did not run to the end"))
            return False
        words = len((text or "").replace(exercises.ANSWER_PLACEHOLDER, "").split())
        if words < min_words:
            self._record(Criterion(name, FAIL, f"{words} words written; at least {min_words} expected", hint))
            return False
        self._record(Criterion(name, REVIEW, f"{words} words -- present; an instructor reviews the content",
                               answer=text.strip()))
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
        """Execute a copy of the notebook with FT_OUTPUTS pointing at a fresh folder (or take a prior run's)."""
        hint = [RERUN_HINT]

        def _run():
            if self.prior_run is not None:
                self.report.notebook_seconds = round(self.prior_run.seconds, 1)
                require(self.prior_run.ok, self.prior_run.error or "the notebook did not run to the end")
                return f"{self.prior_run.seconds:.0f} s (run once for the whole test suite)"
            nb = self.load()
            unwritten = running.first_unwritten(nb, exercises.STUB)
            if unwritten is not None:   # the run would stop there: say so now, not after minutes of training
                message, hint[0] = unwritten_failure(unwritten)
                raise CheckFailed(message)
            self.outputs_root.mkdir(parents=True, exist_ok=True)
            run_env = {"FT_OUTPUTS": str(self.outputs_root), "FT_QUIET": "1", "HF_HUB_OFFLINE": "1",
                       "MPLBACKEND": "Agg", **jail.kernel_env(), **(env or {})}
            self.run = running.execute(nb, timeout=self.timeout, cwd=self.notebook_path.parent, env=run_env)
            self.report.notebook_seconds = round(self.run.seconds, 1)
            if not self.run.ok:
                message, hint[0] = run_failure(self.run, self.rung)
                raise CheckFailed(message)
            return f"{self.run.seconds:.0f} s"

        ran = self.criterion(name, _run, hint=lambda: hint[0])
        self.stopped_run = None if ran else self.report.criteria[-1].detail
        return ran

    def from_the_run(self, verify: Callable[["Context"], None]) -> None:
        """``verify(ctx)``: the criteria about what the notebook saved. When the notebook did not run to the end
        they are recorded as not checked, and one line says so instead of a ✗ per criterion for one cause."""
        if not self.stopped_run:
            verify(self)
            return
        self._not_checked = []
        try:
            verify(self)
        finally:
            names, self._not_checked = self._not_checked, None
        if names:
            print(f"  {SYMBOLS[NOT_CHECKED]} not checked until the notebook runs to the end ({len(names)}): "
                  + "; ".join(names), file=self.out)

    def outputs(self) -> Path:
        """The rung's output folder from the checked run (what the notebook saved)."""
        return self.outputs_root / self.rung_dir_name()

    def rung_dir_name(self) -> str:
        return rung_folder(self.rung).name

    def graded(self, names: list[str], forbidden: dict | None = None) -> dict[str, Callable]:
        """The learner's graded functions, each answered by a child process (never run in the checker's).

        `forbidden`: name -> ``guards.Forbidden``, the references that function may not reach. A function the
        notebook does not define becomes one that fails with a clear message."""
        try:
            nb = self.load()
        except exercises.NotebookError as error:
            return {name: _failing(str(error)) for name in names}
        served = sandbox.GradedFunctions(nb, names, forbidden)
        self._graded.append(served)
        return {name: served.function(name) for name in names}

    def measure(self, files: list[Path], produce: Callable[[], dict], settings: tuple = ()) -> dict:
        """`produce()`, or its earlier result for byte-identical `files` under the same profile and `settings`
        (what else the measurement reads: a seed, a beta taken from the notebook's metrics)."""
        if self.measurements is None:
            return produce()
        key = (self.profile.name, integrity.content_key(files), settings)
        if key not in self.measurements:
            self.measurements[key] = produce()
        return dict(self.measurements[key])

    def check_course_unchanged(self) -> bool:
        """The course's data and code are as they were before the run (the notebook and the graded code)."""
        def unchanged():
            changed = integrity.changes(self._fingerprint, integrity.fingerprint())
            shown = "; ".join(changed[:3]) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "")
            require(not changed, f"the course's own files changed while the notebook ran (by its code, or by "
                                 f"something else running at the same time): {shown}")
            return f"{len(self._fingerprint)} files under data/ and shared/ as they were"

        return self.criterion("the course's data and code are unchanged", unchanged,
                              hint="Write only under outputs/ (outputs_dir); restore data/ and shared/ with "
                                   "`git checkout -- data shared`.")

    def answers(self) -> dict[str, str]:
        try:
            return exercises.answer_cells(self.load())
        except exercises.NotebookError:
            return {}

    def close(self) -> None:
        for served in self._graded:
            served.close()
        self._tmp.cleanup()


def _failing(message: str) -> Callable:
    def missing(*args, **kwargs):
        raise CheckFailed(message)

    return missing


def run_failure(run: running.RunResult, rung: str) -> tuple[str, str]:
    """What to say when the notebook stopped, and the hint: the cell by its number and first line, the function
    to write when it is a stub, and for a timeout what is likely and how to give the check more time."""
    cell = _which_cell(run.failed_cell, run.cell_head, run.section)
    if run.timed_out:
        return (f"{run.error}: {cell} was still running",
                f"A busy CPU is the usual cause (another notebook or program running at the same time): close it and "
                f"check again, or give the check more time: {TIMEOUT_VAR}=1200 make check RUNG={rung} (seconds; "
                f"the default is {DEFAULT_TIMEOUT_S}). The check takes longer than your own run: it runs the "
                f"notebook from the start in an empty outputs folder, where any model it needs from an earlier rung "
                f"is trained again.")
    if run.error_name == "PermissionError" and "grading:" in run.error:   # shared.checking.jail, under make grade
        return (f"{cell} was refused by the grading jail -- {run.error}",
                "While it is graded, a notebook reads and writes only in its own folder and starts only Python "
                "commands: save under outputs_dir(), read only the course's files and your own.")
    if run.error_name == "NotImplementedError" and run.raised_in:
        return (f"{cell} stops with NotImplementedError: {run.raised_in} is not written yet",
                f"Write {run.raised_in} (replace the line that raises NotImplementedError), then restart the kernel "
                f"and run all cells.")
    if run.error_name == "NotImplementedError":   # a cell of answers or choices, not a function, left to fill in
        return (f"{cell} stops with NotImplementedError: the cell is not written yet",
                "Write the cell (replace the line that raises NotImplementedError), then restart the kernel and "
                "run all cells.")
    cell += _at_line(run.failed_line, run.line_text, run.cell_head)   # of several asserts, the one that failed
    return f"{cell} raised {run.error}", RERUN_HINT


def unwritten_failure(unwritten: running.Unwritten) -> tuple[str, str]:
    """What to say, and the hint, when the notebook was not run because a stub stands in its way."""
    cell = _which_cell(unwritten.cell, unwritten.cell_head, unwritten.section)
    if unwritten.function:
        cell += _at_line(unwritten.line, unwritten.line_text, unwritten.cell_head)
        return (f"not run: {cell} uses {unwritten.function}, which is not written yet -- it still raises "
                f"NotImplementedError, so a run would stop there",
                f"Write {unwritten.function} (replace the line that raises NotImplementedError), then restart the "
                f"kernel and run all cells.")
    return (f"not run: {cell} is not written yet -- it still raises NotImplementedError, so a run would stop there",
            "Write the cell (replace the line that raises NotImplementedError), then restart the kernel and run "
            "all cells.")


def _which_cell(number: int | None, head: str, section: str = "") -> str:
    """A code cell as the learner finds it: counted from the top (Jupyter shows no cell numbers, and its [n]
    execution counts change with every run), with its first line of code and the section it is in."""
    cell = f"the {_ordinal(number)} code cell from the top" if number else "a cell"
    return cell + (f" (`{_quoted(head)}`)" if head else "") + (f" in section \"{section}\"" if section else "")


def _at_line(number: int | None, text: str, cell_head: str) -> str:
    """", at its line N (`...`)," -- the line of a long cell to look at; nothing when it is the line the cell is
    already named by."""
    return f", at its line {number} (`{_quoted(text)}`)," if text and text != cell_head else ""


def _quoted(code: str, width: int = 60) -> str:
    """A line of code short enough to quote: its trailing comment dropped when the line is too long to keep
    whole (the code is what names the line), then cut at `width` characters."""
    if len(code) > width:
        code = _without_comment(code)
    return code[:width]


def _without_comment(line: str) -> str:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
    except (tokenize.TokenError, SyntaxError):   # an unclosed bracket: the line goes on below
        return line
    comment = next((token for token in tokens if token.type == tokenize.COMMENT), None)
    return line[:comment.start[1]].rstrip() if comment else line


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


# A criterion's own hint helps with a function that runs and gets something wrong. A stub, or a call to the very
# reference the function is checked against, needs another: the first check of an untouched notebook would
# otherwise print, under each function still to write, how to write it.
UNWRITTEN_HINT = ("Write it where the notebook asks (its section says what it takes and returns); this line then "
                  "tests it on cases the notebook never shows.")
FORBIDDEN_HINT = ("Write it yourself: the checker holds your function against that reference, so calling it "
                  "proves nothing.")


def _hint_for(error: Exception, hint):
    if isinstance(error, NotImplementedError):
        return UNWRITTEN_HINT
    if isinstance(error, guards.ForbiddenCall):
        return FORBIDDEN_HINT
    return hint


def _describe(error: Exception) -> str:
    if isinstance(error, NotImplementedError):
        return "not written yet (raises NotImplementedError)"
    if isinstance(error, (sandbox.GradedError, sandbox.SandboxFailure, guards.ForbiddenCall)):
        return str(error)
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" (line {frame.lineno} of {frame.name})" if frame and frame.filename == "<notebook>" else ""
    return f"{type(error).__name__}: {error}{where}"


def require(condition: bool, message: str) -> None:
    """Fail the current criterion with `message` unless `condition` holds."""
    if not condition:
        raise CheckFailed(message)


def refusal(call: Callable[[], object], describe: Callable[[object], str] = repr) -> str:
    """"" when `call()` raised ValueError -- in the checker's process, or in the learner's (where it arrives as
    a ``GradedError`` naming it) -- else what it did instead: "returned ..." or "raised ..."."""
    try:
        result = call()
    except ValueError:
        return ""
    except sandbox.GradedError as error:
        return "" if str(error).startswith("ValueError") else f"raised {error}"
    return f"returned {describe(result)}"


def require_key(chosen: dict, key: dict, choices, item: str) -> str:
    """A learner's answers (number -> choice) against a key (number -> (answer, the reason a wrong one is shown
    with)): every `item` answered with one of `choices`, and as the key has it."""
    missing = [number for number in key if chosen.get(number) not in choices]
    require(not missing, f"no answer (one of {', '.join(choices)}) for {item}{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing)}")
    wrong = [f"{number}: you chose {chosen[number]!r} -- {reason}" for number, (answer, reason) in key.items()
             if chosen[number] != answer]
    require(not wrong, f"{len(wrong)} of {len(key)} not as the key has them: " + "; ".join(wrong))
    return f"{len(key)} of {len(key)} as the key has them"


def require_measured(measured: dict) -> dict:
    """What a checker recomputed (a ``ctx.collect`` result), or fail the criterion that needs it: when the
    measuring criterion failed it returned nothing, and that failure has already said why."""
    require(bool(measured), "nothing could be measured (see the failure above)")
    return measured


def same_setting(got, expected) -> bool:
    """A trainer config's field equals what a checker expects: enums by their value, booleans exactly, floats to
    rounding, lists element by element (TRL turns a ``loss_type`` string into a list)."""
    got, expected = getattr(got, "value", got), getattr(expected, "value", expected)  # enums hold strings
    if isinstance(expected, bool) or isinstance(got, bool):
        return got is expected
    if isinstance(expected, float) and isinstance(got, (int, float)):
        return abs(got - expected) <= 1e-12 * max(1.0, abs(expected))
    if isinstance(expected, (list, tuple)) and isinstance(got, str):
        got = [got]
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(got) == len(expected) and all(same_setting(a, b) for a, b in zip(got, expected))
    return got == expected


def fixed_trainer_settings(profile, output_dir: str) -> dict:
    """What every rung's config writer must set the same way, as its notebook lists it: the folder given, the
    profile's sequence length, seed, device and precision, a log line every 5 steps, no checkpoints, no trackers
    (``report_to="none"`` arrives as an empty list), no progress bar where `quiet()` -- and the graded functions
    always run quiet, as the checker's run of the notebook does."""
    return {"output_dir": output_dir, "max_length": profile.max_seq_length, "seed": profile.seed,
            "use_cpu": profile.device == "cpu", **profile.precision(), "logging_steps": 5, "save_strategy": "no",
            "report_to": [], "disable_tqdm": True}


def inside(path: Path, root: Path) -> bool:
    """Is `path` (a file or folder a notebook's metrics name) inside `root` (the run's outputs folder)?"""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
        return True
    except ValueError:
        return False


# The seeds of the profiles a config writer is tried on: none a notebook runs with.
CONFIG_CASE_SEED = 40


def check_config_cases(write_config, profile, stage: str, cases, expected, config_class) -> str:
    """A learner's config writer (``sft_config``, ``dpo_config``...) on cases the notebook never uses: each case
    is (sizes put in the profile's `stage`, changes passed as keyword arguments); `expected(profile, output_dir,
    changes)` says what every field of the returned `config_class` must be."""
    import tempfile

    for number, (sizes, changes) in enumerate(cases, 1):
        variant = profile.with_training(stage, **sizes) if sizes else profile
        variant = variant.with_seed(CONFIG_CASE_SEED + number)   # the profile's seed, never one written down
        output_dir = str(Path(tempfile.gettempdir()) / f"{stage}-config-case-{number}")  # named, never created
        case = _config_case(stage, sizes, changes, variant.seed)
        try:
            config = write_config(variant, output_dir, **changes)
        except sandbox.GradedError as error:   # e.g. a change that repeats a fixed setting: name what was asked
            raise CheckFailed(f"{case}: {error}{_older_name(str(error))}") from None
        require(isinstance(config, config_class),
                f"must return a trl {config_class.__name__}, returned {type(config).__name__}")
        for name, value in expected(variant, output_dir, changes).items():
            got = getattr(config, name, None)
            require(same_setting(got, value), f"{case}: {name} is {getattr(got, 'value', got)!r}, "
                                              f"expected {getattr(value, 'value', value)!r}")
    return f"{len(cases)} sets of sizes and changes the notebook does not use"


def _config_case(stage: str, sizes: dict, changes: dict, seed: int) -> str:
    """A config case as the learner's function met it: what the profile's sizes held, its seed, and the changes
    passed."""
    def listed(settings: dict) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in settings.items())

    held = f"profile.train({stage!r}) holding {listed(sizes)}, " if sizes else "the profile's own sizes, "
    return (f"with {held}profile.seed {seed}, " + (f"changes {listed(changes)}" if changes else "no changes"))


# Trainer settings that older tutorials name and the pinned transformers 5 / TRL 1.16 configs refuse with a
# TypeError, and what takes their place (tests/test_checking.py holds each against the pinned versions).
OLDER_NAMES = {"max_seq_length": "max_length", "warmup_ratio": "warmup_steps, as a fraction below 1",
               "evaluation_strategy": "eval_strategy", "no_cuda": "use_cpu",
               "per_gpu_train_batch_size": "per_device_train_batch_size"}


def _older_name(message: str) -> str:
    """For a config refused over an argument an older tutorial used, the name the pinned versions take."""
    found = re.search(r"unexpected keyword argument '(\w+)'", message)
    if not found or found.group(1) not in OLDER_NAMES:
        return ""
    return f": {found.group(1)} is an older name, the pinned versions take {OLDER_NAMES[found.group(1)]}"


def read_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise CheckFailed(f"{what} was not saved ({path.name} is missing): run the cell that saves it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise CheckFailed(f"{what} ({path.name}) is not valid JSON: {error}") from error


# -- running checks -------------------------------------------------------------------------------
def rung_folder(rung: str) -> Path:
    matches = sorted(RUNGS_DIR.glob(f"{rung}-*"))
    if not matches:
        raise SystemExit(f"no rung {rung!r}: rungs are {', '.join(p.name for p in sorted(RUNGS_DIR.iterdir()))}")
    return matches[0]


def check_notebook(check: Callable[[Context], None], rung: str, notebook: Path, timeout: float,
                   out=None, outputs_root: Path | None = None, prior_run: PriorRun | None = None,
                   measurements: dict | None = None) -> Report:
    """Check one notebook. `outputs_root` keeps the run's outputs there (tests, debugging); `prior_run` judges a
    run made already (the test suite's) instead of running the notebook again."""
    start = time.monotonic()
    print(f"Rung {rung} -- checking {_relative(notebook)}", file=out)
    ctx = Context(rung, notebook, timeout, out=out, outputs_root=outputs_root, prior_run=prior_run,
                  measurements=measurements)
    hidden.start()
    try:
        hidden.load()
        ctx.load()
    except hidden.HiddenTestsError as error:  # the instructor's file: grading without it would mislead
        ctx._record(Criterion("the hidden tests can be read", FAIL, str(error),
                              f"Fix the file, or unset {hidden.HIDDEN_VAR} to check without hidden tests."))
    except exercises.NotebookError as error:
        ctx._record(Criterion("the notebook can be read", FAIL, str(error),
                              "Point NOTEBOOK= at your .ipynb file, saved from Jupyter."))
    else:
        try:
            check(ctx)
        except Exception as error:  # a bug in a check must still leave a report, never a traceback
            ctx._record(Criterion("the checker itself", FAIL, _describe(error),
                                  "This is a checker error, not yours: please report it with the notebook."))
        ctx.check_course_unchanged()
    finally:
        ctx.close()
    report = ctx.report
    report.seconds = round(time.monotonic() - start, 1)
    report.hidden = hidden.used()
    if report.hidden:
        print(f"  + hidden tests ({hidden.folder()}): {'; '.join(report.hidden)}", file=out)
    elif hidden.folder() is not None:
        print(f"  + hidden tests ({hidden.folder()}): none that rung {rung}'s checker takes", file=out)
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


@contextmanager
def details_to_log(log_path: Path):
    """While checking, everything but the criteria goes to `log_path`: library warnings, weight-loading progress
    bars, kernel notices, prints from inside libraries. Yields a stream to the real standard output, where the
    criteria, hints and verdict are written. Works at the level of file descriptors, so output written by C
    code and by child processes (the notebook's kernel, the graded functions' process) is caught too."""
    sys.stdout.flush()
    sys.stderr.flush()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w", encoding="utf-8")
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    # Where the criteria go: the terminal behind fd 1 -- or, when sys.stdout is not fd 1 (a test capturing
    # it, a notebook cell), sys.stdout itself, which the redirection below leaves alone.
    terminal = open(os.dup(saved[1]), "w", encoding="utf-8", buffering=1) if _is_fd(sys.stdout, 1) else None
    try:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        yield terminal or sys.stdout
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in saved.items():
            os.dup2(original, fd)
            os.close(original)
        if terminal is not None:
            terminal.close()
        log.close()


def _is_fd(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False


def log_path_for(rung: str) -> Path:
    """Where a check's details go: FT_CHECK_LOG, or a file in the system's temporary folder (never outputs/),
    named for the user -- on a machine a class shares, one learner's check neither overwrites another's log
    nor fails on a file that another user owns."""
    if os.environ.get("FT_CHECK_LOG"):
        return Path(os.environ["FT_CHECK_LOG"])
    return Path(tempfile.gettempdir()) / f"ft-check-{_user()}-{rung}.log"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no password entry (a container run under a bare uid)
        return f"uid{os.getuid()}" if hasattr(os, "getuid") else "user"


def main(check: Callable[[Context], None], rung: str, argv: list[str] | None = None,
         folder: Path | None = None) -> int:
    """`folder`: the rung's folder (default: rungs/NN-slug), whose exercise.ipynb is checked when no notebook is
    named."""
    folder = folder or rung_folder(rung)
    parser = argparse.ArgumentParser(description=f"Check rung {rung}: runs the notebook and verifies what it made.")
    parser.add_argument("notebooks", nargs="*", type=Path, default=[folder / "exercise.ipynb"],
                        help="notebook(s) to check (default: the rung's exercise.ipynb)")
    parser.add_argument("--json", type=Path, help="also write the result(s) as JSON to this file")
    parser.add_argument("--timeout", type=float,
                        default=float(os.environ.get(TIMEOUT_VAR, DEFAULT_TIMEOUT_S)),
                        help=f"seconds the notebook may run (default {DEFAULT_TIMEOUT_S})")
    args = parser.parse_args(argv)
    log_path = log_path_for(rung)
    with details_to_log(log_path) as terminal:
        reports = [check_notebook(check, rung, nb, args.timeout, out=terminal) for nb in args.notebooks]
    if len(reports) == 1:  # a learner checking their own notebook: `make progress` reads it back
        results.save(reports[0], args.notebooks[0])
    if len(reports) > 1:
        print("Summary")
        for report in reports:
            flag = f"  ({len(report.needs_review)} to review)" if report.needs_review else ""
            print(f"  {'DONE    ' if report.passed else 'NOT DONE'}  {report.notebook}{flag}")
    print(f"(warnings and library logs of this check: {log_path})")
    if args.json:
        payload = [r.to_json() for r in reports] if len(reports) > 1 else reports[0].to_json()
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if all(r.passed for r in reports) else 1
