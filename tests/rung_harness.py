"""What every rung's checker tests need: the rung's check.py loaded as a module, the whole checker run on a
notebook, only its saved-outputs criteria run on a folder, one criterion judged the way the checker judges it,
and small tools to tamper with what a notebook saved.

    RUNG = RungUnderTest("03")
    solution_run = RUNG.solution_run_fixture()   # the solution's one run in this session, checked once

The solution notebook is executed once per session: by nbval when it is collected (suite_runs.py), otherwise
here. Tampering tests work on copies of that run's outputs.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
from pathlib import Path

import pytest

import suite_runs
from shared import checking
from shared.paths import REPO_ROOT

# Generous: a good notebook must pass on a slow, shared CPU; a test fails on a wrong result, never on speed.
TIMEOUT = float(os.environ.get("FT_CHECK_TIMEOUT", 3600))
# Measurements of saved models, by their files' content: a tampering test that leaves the model alone reuses the
# solution's measurement; one that changes the model gets a measurement of its own.
MEASUREMENTS: dict = {}
SOLUTION_RESULTS: dict = {}  # rung -> the solution's checked run, once per session


class RungUnderTest:
    def __init__(self, rung: str):
        self.rung = rung
        self.dir = checking.rung_folder(rung)
        self.solution = REPO_ROOT / "solutions" / f"{self.dir.name}.ipynb"
        self.exercise = self.dir / "exercise.ipynb"
        self.check = _load_module(self.dir / "check.py", f"check{rung}")

    def run(self, notebook: Path, timeout: float = TIMEOUT, outputs_root: Path | None = None,
            prior_run: checking.PriorRun | None = None):
        """The whole checker on `notebook`: (its Report, what it printed)."""
        out = io.StringIO()
        report = checking.check_notebook(self.check.check, self.rung, notebook, timeout, out=out,
                                         outputs_root=outputs_root, prior_run=prior_run,
                                         measurements=MEASUREMENTS)
        return report, out.getvalue()

    def solution_with(self, **sources: str):
        """The solution notebook with the cell that defines each named function replaced by its source (a
        learner's version of it)."""
        import nbformat

        nb = nbformat.read(self.solution, as_version=4)
        for name, source in sources.items():
            cells = [cell for cell in nb.cells if cell.cell_type == "code" and f"def {name}(" in cell.source]
            assert len(cells) == 1, f"{len(cells)} cells define {name}"
            cells[0].source = source
        return nb

    def solution_functions(self) -> dict:
        """The solution's graded cells executed here: its functions by name (for tests that call them directly)."""
        import nbformat

        namespace: dict = {}
        for cell in nbformat.read(self.solution, as_version=4).cells:
            if "graded" in cell.metadata.get("tags", []):
                exec(cell.source, namespace)
        return namespace

    def graded_only(self, notebook):
        """Only the graded-function criteria (the rung's check_graded) on `notebook` (a path or a notebook):
        nothing is executed but the graded functions, in their own process."""
        from shared.notebooks import exercises

        out = io.StringIO()
        path = notebook if isinstance(notebook, Path) else self.solution
        ctx = checking.Context(self.rung, path, timeout=60, out=out)
        if not isinstance(notebook, Path):
            ctx.nb = notebook
        else:
            ctx.nb = exercises.read(notebook)
        try:
            self.check.check_graded(ctx)
        finally:
            ctx.close()
        return ctx.report, out.getvalue()

    def solution_prior_run(self) -> checking.PriorRun | None:
        """nbval's run of the solution in this session, if there was one (None: nbval did not run it)."""
        run = suite_runs.RUNS.get(self.solution.name)
        if run is None or run.cells == 0:
            return None
        return checking.PriorRun(outputs_root=suite_runs.OUTPUTS_ROOT, seconds=run.seconds,
                                 fingerprint_before=dict(suite_runs.FINGERPRINT_BEFORE),
                                 ok=not run.failures, error="; ".join(run.failures[:3]))

    def verify(self, outputs_root: Path):
        """Only the criteria about saved outputs (the rung's verify_outputs), on `outputs_root`."""
        out = io.StringIO()
        ctx = checking.Context(self.rung, self.solution, timeout=60, out=out, outputs_root=outputs_root,
                               measurements=MEASUREMENTS)
        try:
            self.check.verify_outputs(ctx)
        finally:
            ctx.close()
        return ctx.report, out.getvalue()

    def assert_verify_fails(self, outputs_root: Path, criterion_fragment: str, *fragments: str):
        """The saved-outputs criteria on `outputs_root` (tampered with by the test) fail: the criterion named by
        `criterion_fragment` is a ✗ whose detail holds every fragment, and nothing printed a traceback. Returns
        the report."""
        report, printed = self.verify(outputs_root)
        assert not report.passed and "Traceback" not in printed, printed
        criterion = by_name(report, criterion_fragment)
        assert criterion.status == checking.FAIL, printed
        for fragment in fragments:
            assert fragment in criterion.detail, criterion.detail
        return report

    def measured(self, files, produce):
        """`produce()` reused, as the checker reuses it, for byte-identical `files` (see MEASUREMENTS)."""
        ctx = checking.Context(self.rung, self.solution, timeout=60, measurements=MEASUREMENTS)
        try:
            return ctx.measure(files, produce)
        finally:
            ctx.close()

    def judge(self, test):
        """One criterion run the way the checker runs it: (its Criterion, what was printed)."""
        out = io.StringIO()
        ctx = checking.Context(self.rung, self.solution, timeout=60, out=out)
        ctx.criterion("criterion under test", test, hint="a hint")
        ctx.close()
        return ctx.report.criteria[0], out.getvalue()

    def assert_fails(self, test, *fragments):
        """`test` fails as a clear ✗ with a hint, never a traceback, and its detail names every fragment."""
        criterion, printed = self.judge(test)
        assert criterion.status == checking.FAIL, printed
        assert "✗" in printed and "hint:" in printed and "Traceback" not in printed
        for fragment in fragments:
            assert fragment in criterion.detail, criterion.detail
        return criterion

    def assert_exercise_fails(self, graded: tuple[str, ...], unmet: tuple[str, ...] = (),
                              outputs_root: Path | None = None, answers: int = 1):
        """The untouched exercise gets a clear NOT DONE YET: its run stops at the first function left to write,
        naming the function to write, each graded function (a fragment of its criterion's name) is "not
        written yet", the written answer fails, and every criterion named in `unmet` (about what the run saves)
        is listed on one "not checked" line, not as a ✗ of its own. `outputs_root`: an outputs folder to run
        in (one holding an earlier rung's results it starts from), instead of a fresh one; `answers`: how many
        written answers the rung asks for."""
        report, printed = self.run(self.exercise, outputs_root=outputs_root)
        assert not report.passed and "NOT DONE YET" in printed and "hint:" in printed
        ran = by_name(report, "runs top to bottom")
        assert ran.status == checking.FAIL and "NotImplementedError" in ran.detail, printed
        assert "is not written yet" in ran.detail and "hint: Write " in printed, printed  # names what to write
        for fragment in graded:
            assert "not written yet" in by_name(report, fragment).detail, printed
        if answers:   # written in the notebook's answer cells (the capstone's are in the card its run writes)
            assert by_name(report, "written answer").status == checking.FAIL, printed
        assert unmet, "name the criteria about what the run saves"
        for fragment in unmet:
            assert by_name(report, fragment).status == checking.NOT_CHECKED, printed
        skipped = [line for line in printed.splitlines() if "not checked until the notebook runs to the end" in line]
        assert len(skipped) == 1, printed
        assert printed.count("✗") == 1 + len(graded) + answers, printed  # the run, each function, each answer

    def assert_reference_refused(self, name: str, reference: str, body: str):
        """The solution with `name` defined by `body`, which calls `reference` (a dotted name) imported as
        ``_ref``: the criterion for `name` fails, naming the call, with no traceback."""
        module, function = reference.rsplit(".", 1)
        notebook = self.solution_with(**{name: f"from {module} import {function} as _ref\n\n\n{body}"})
        report, printed = self.graded_only(notebook)
        criterion = by_name(report, name)
        assert criterion.status == checking.FAIL, printed
        assert f"calls {reference}, which is not allowed here" in criterion.detail, criterion.detail
        assert "Traceback" not in printed

    def solution_result(self, tmp_path_factory):
        """The solution's one run in this session, checked once: (report, printed, outputs root). Shared by every
        test module that asks (the first one to ask pays for it)."""
        if self.rung not in SOLUTION_RESULTS:
            prior = self.solution_prior_run()
            if prior is not None:
                report, printed = self.run(self.solution, prior_run=prior)
                SOLUTION_RESULTS[self.rung] = (report, printed, prior.outputs_root)
            else:
                outputs_root = tmp_path_factory.mktemp(f"solution-outputs-{self.rung}")
                report, printed = self.run(self.solution, outputs_root=outputs_root)
                suite_runs.EXTRA_RUNS[self.solution.name] = report.notebook_seconds or 0.0
                SOLUTION_RESULTS[self.rung] = (report, printed, outputs_root)
        return SOLUTION_RESULTS[self.rung]

    def solution_run_fixture(self, name: str = "solution_run"):
        """A session-wide fixture: the solution's one run, checked once (solution_result); its outputs kept for
        the tampering tests, which work on copies (outputs_copy_fixture)."""
        @pytest.fixture(scope="session", name=name)
        def solution_run(tmp_path_factory):
            return self.solution_result(tmp_path_factory)

        return solution_run

    def outputs_copy_fixture(self):
        """A fixture: a fresh copy of the solution's outputs (the whole outputs folder) to tamper with."""
        @pytest.fixture
        def outputs_copy(solution_run, tmp_path):
            copy = tmp_path / "outputs"
            shutil.copytree(solution_run[2], copy)
            return copy

        return outputs_copy


def config_writer(config_class, stage: str, drop=(), **overrides):
    """A learner's config writer (``dpo_config``, ``reward_config``, ``grpo_config``) as its notebook specifies
    it -- or, with `drop` and `overrides`, with one plausible mistake: arguments left out, or given other values.
    Settings the config class has no field for are not passed (GRPOConfig has no max_length, and a stage's
    ``prompts`` is the notebook's, not TRL's)."""
    import dataclasses

    from shared.progress import quiet

    def write_config(profile, output_dir, **changes):
        arguments = {"output_dir": str(output_dir), "max_length": profile.max_seq_length, "seed": profile.seed,
                     "use_cpu": profile.device == "cpu", **profile.precision(), "logging_steps": 5,
                     "save_strategy": "no", "report_to": "none", "disable_tqdm": quiet(),
                     **profile.train(stage), **changes}
        for name in drop:
            arguments.pop(name)
        arguments.update(overrides)
        accepted = {f.name for f in dataclasses.fields(config_class)}
        return config_class(**{name: value for name, value in arguments.items() if name in accepted})

    return write_config


def tiny_profile():
    """The tiny profile as the course defines it (FT_PROFILE and model overrides aside): what config checks use."""
    from shared.profiles import PROFILES

    return PROFILES["tiny"]


def by_name(report, fragment: str):
    """The criterion whose name contains `fragment` (a test that names a missing one fails and lists them)."""
    matches = [c for c in report.criteria if fragment in c.name]
    assert matches, f"no criterion containing {fragment!r} in {[c.name for c in report.criteria]}"
    return matches[0]


def edit_json(path: Path, change) -> object:
    """Hand-edit a saved JSON file the way a learner might: `change` edits the data in place (what it returns
    is ignored, so `lambda m: m.pop("key")` works); returns the edited data."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return data


def _load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
