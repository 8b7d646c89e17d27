"""Test-suite settings; each solution notebook run once, first; a timing table per notebook at the end.

The environment is set at import, before nbval starts any kernel, so the solution notebooks run offline and
quietly exactly as the checker runs them, and save into the session's own outputs folder (suite_runs.py).
"""

import os
import shutil
import time
from collections import defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FT_QUIET", "1")

import suite_runs  # noqa: E402  (sets FT_OUTPUTS for the session)

_START = time.monotonic()


def pytest_sessionstart(session):
    from shared.checking import integrity

    suite_runs.FINGERPRINT_BEFORE.update(integrity.fingerprint())
    suite_runs.LEARNER_OUTPUTS_BEFORE.update(suite_runs.learner_outputs())


def pytest_sessionfinish(session, exitstatus):
    """No test writes into the learner's outputs/ (nor makes an empty folder there): a session that did fails.
    The session's own outputs folder (every rung's models, a few hundred MB) goes with it."""
    changed = suite_runs.changed_learner_outputs()
    if changed:
        session.config.learner_outputs_changed = changed
        session.exitstatus = 1
    if suite_runs.OUTPUTS_MADE_HERE:
        shutil.rmtree(suite_runs.OUTPUTS_ROOT, ignore_errors=True)


def pytest_collection_modifyitems(session, config, items):
    """Solution notebooks first, in rung order: the checker tests that follow judge their run, and rung 03's
    notebook reads the figures rung 02's saved in the same session."""
    notebooks = sorted((i for i in items if suite_runs.solution_path(i.nodeid)),
                       key=lambda i: str(suite_runs.solution_path(i.nodeid)))  # stable: cells keep their order
    others = [i for i in items if not suite_runs.solution_path(i.nodeid)]
    items[:] = notebooks + others


class NotebookRecorder:
    """Records how nbval's run of each solution went. Registered as a plugin (not a hook of this file) because
    a conftest's item hooks only see the items under its own folder, and the notebooks are under solutions/."""

    def pytest_runtest_logreport(self, report):
        path = suite_runs.solution_path(report.nodeid)
        if path is None:
            return
        run = suite_runs.RUNS.setdefault(path.name, suite_runs.NotebookRun())
        run.seconds += report.duration
        if report.when == "call":
            run.cells += 1
        if report.failed:
            run.failures.append(f"{report.nodeid.split('::', 1)[-1]} failed under nbval")


def pytest_configure(config):
    config.pluginmanager.register(NotebookRecorder(), "solution-notebook-recorder")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Seconds per notebook (nbval runs one item per cell: setup, call and teardown all count), and how many
    times each solution ran: once, by nbval, whose outputs the checker tests then judged."""
    seconds = defaultdict(float)
    for reports in terminalreporter.stats.values():
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            path = nodeid.split("::", 1)[0]
            if path:
                seconds[path] += getattr(report, "duration", 0.0)
    test_files = {path: s for path, s in seconds.items() if not path.endswith(".ipynb")}
    seconds = {path: s for path, s in seconds.items() if path.endswith(".ipynb")}
    write = terminalreporter.write_line
    changed = getattr(config, "learner_outputs_changed", None)
    if changed:
        terminalreporter.section("the learner's outputs/ changed during the tests (no test may write there)")
        for line in changed[:20]:
            write(f"  {line}")
    terminalreporter.section("time per notebook")
    if not seconds and not suite_runs.EXTRA_RUNS:
        write("no notebooks ran")
    for path in sorted(seconds):
        write(f"{seconds[path]:8.1f} s  {path}")
    for name, extra in sorted(suite_runs.EXTRA_RUNS.items()):
        write(f"{extra:8.1f} s  solutions/{name} (run by the checker tests: nbval did not run it)")
    for path in sorted(p for p in seconds if p.startswith("solutions/")):
        name = path.split("/")[-1]
        times = 1 + (name in suite_runs.EXTRA_RUNS)
        write(f"{'':8}    solutions/{name} executed {times} time{'s' if times > 1 else ''}")
    # Where the rest of the time goes: the test files that took longest (a checker test that had to run its
    # rung's notebook itself counts it here), so that trimming the suite starts from figures.
    terminalreporter.section(f"time per test file (the {SLOWEST_FILES_SHOWN} slowest)")
    for path, spent in sorted(test_files.items(), key=lambda item: -item[1])[:SLOWEST_FILES_SHOWN]:
        write(f"{spent:8.1f} s  {path}")
    write(f"{sum(test_files.values()):8.1f} s  every test file together ({len(test_files)} files)")
    total = time.monotonic() - _START
    write(f"{total:8.1f} s  whole test suite")
    budget = suite_budget(seconds)
    write(f"{budget:8.1f} s  budget: {BASE_BUDGET_S:.0f} s for rungs 02-04, + each later rung's notebook + "
          f"{PER_RUNG_S:.0f} s ({total / budget:.0%} of it used)")


# The suite's budget (a figure to read, never a timed assert): rungs 02-04 in 8 minutes on 2 cores, and each
# later rung adds at most its notebook's time plus a minute.
BASE_BUDGET_S = 480.0
PER_RUNG_S = 60.0
FIRST_RUNGS = ("02-", "03-", "04-")
SLOWEST_FILES_SHOWN = 12


def suite_budget(seconds_per_notebook: dict[str, float]) -> float:
    later = [s for path, s in seconds_per_notebook.items()
             if path.startswith("solutions/") and not path.split("/")[-1].startswith(FIRST_RUNGS)]
    return BASE_BUDGET_S + sum(s + PER_RUNG_S for s in later)
