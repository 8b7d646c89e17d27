"""What every rung's checker must do with a notebook that is not there, not a notebook, or broken: a clear ✗ and
a non-zero exit, never a traceback. One test per built rung, so a new rung's checker is held to it at once."""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from rung_harness import RungUnderTest, by_name
from shared import checking
from shared.course import RUNGS
from shared.paths import REPO_ROOT

BUILT = [rung.number for rung in RUNGS if rung.ready]


def test_every_built_rung_has_a_checker():
    assert BUILT, "no rung is marked ready in shared/course.py"
    for number in BUILT:
        assert (checking.rung_folder(number) / "check.py").is_file(), number


@pytest.fixture(scope="module", params=BUILT)
def rung(request):
    return RungUnderTest(request.param)


def test_command_line_exit_code_and_json(rung, tmp_path):
    result_file = tmp_path / "result.json"
    result = subprocess.run([sys.executable, str(rung.dir / "check.py"), str(tmp_path / "missing.ipynb"),
                             "--json", str(result_file)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 1
    assert "✗" in result.stdout and "Traceback" not in result.stdout + result.stderr
    result = json.loads(result_file.read_text())
    assert result["passed"] is False and result["rung"] == rung.rung


def test_missing_notebook(rung, tmp_path):
    report, printed = rung.run(tmp_path / "nope.ipynb")
    assert not report.passed and "does not exist" in printed and "Traceback" not in printed


def test_notebook_that_is_not_json(rung, tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ this is not json")
    report, printed = rung.run(broken)
    assert not report.passed and "not valid JSON" in printed and "Traceback" not in printed


# Running a notebook is the same code for every rung: these two use rung 02's checker.
def _small_notebook(tmp_path, source):
    path = tmp_path / "small.ipynb"
    nb = new_notebook(cells=[new_code_cell(source)],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)
    return path


def test_a_cell_that_raises(tmp_path):
    report, _ = RungUnderTest("02").run(_small_notebook(tmp_path, "1 / 0"))
    ran = by_name(report, "runs top to bottom")
    assert ran.status == checking.FAIL
    assert "1st code cell from the top" in ran.detail and "ZeroDivisionError" in ran.detail
    assert not report.passed


def test_a_notebook_that_runs_too_long(tmp_path):
    report, _ = RungUnderTest("02").run(_small_notebook(tmp_path, "import time\ntime.sleep(60)"), timeout=4)
    ran = by_name(report, "runs top to bottom")
    assert ran.status == checking.FAIL and "did not finish within 4 s" in ran.detail
    assert not report.passed
