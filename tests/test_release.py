"""The learners' copy (`make student-release DEST=dir`, shared/grading/release.py): no solutions, no tests, no
hidden tests, nothing that gives an answer away -- and the checkers in it still work.

One copy is built for the whole module, in a temporary folder; nothing here writes into the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from shared import course
from shared.grading import release
from shared.paths import REPO_ROOT

# The cheapest check of an untouched exercise: the checker reads that a stub stands in the way and runs nothing
# (every rung's takes seconds); the capstone has no graded function to try in a child process.
CHEAPEST_RUNG = "12"
LEARNERS_NEED = ("shared/__init__.py", "shared/checking/__init__.py", "shared/paths.py", "data/checksums.sha256",
                 "data/tiny-base/model.safetensors", "Makefile", "requirements.txt", "pyproject.toml")
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(the copy's folder, make_release's summary) -- built once for the module."""
    dest = tmp_path_factory.mktemp("release") / "course"
    return dest, release.make_release(dest)


@pytest.fixture(scope="module")
def copy(built):
    return built[0]


def _env(**extra) -> dict:
    """The environment of a process run in the copy: offline, no PYTHONPATH of the caller's."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "HF_HUB_OFFLINE": "1", **extra}


# -- what is in the copy ---------------------------------------------------------------------------------------
def test_instructor_folders_are_left_out(built):
    dest, summary = built
    for folder in release.INSTRUCTOR_ONLY:
        reached = [p.relative_to(dest).as_posix() for p in (dest / folder).rglob("*") if p.is_file()]
        if folder == "bench":  # only the benchmarks' figures, which lessons link to
            assert "bench/README.md" in reached and all(
                path == "bench/README.md" or path.startswith("bench/results/") for path in reached), reached
        else:
            assert not reached, f"{folder}/ reached the learners' copy: {reached[:3]}"
    assert not (dest / "bench" / "run.py").exists()
    assert not [link for link in summary["dangling_links"] if "bench/" in link], summary["dangling_links"]
    assert (dest / "docs" / "lab-rung01-exercise.png").exists()   # the README's screenshot: for learners
    reasons = " ".join(summary["left_out"])
    for folder in ("solutions", "tests"):
        assert f"{folder}/" in reasons, f"the summary does not say {folder}/ was left out: {reasons}"
    printed = release.describe(summary)
    assert f"{summary['files']} files" in printed and "Left out:" in printed and "solutions/" in printed


def test_what_learners_need_is_there(copy):
    for rung in course.ready_rungs():
        for name in ("exercise.ipynb", "README.md", "check.py"):
            assert (copy / rung.folder / name).is_file(), f"{rung.folder}/{name} is missing from the copy"
    for path in LEARNERS_NEED:
        assert (copy / path).is_file(), f"{path} is missing from the copy"


def test_no_notebook_holds_a_solution(copy):
    notebooks = sorted(copy.rglob("*.ipynb"))
    assert len(notebooks) >= len(course.ready_rungs())
    for notebook in notebooks:
        text = notebook.read_text(encoding="utf-8")
        for marker in (*release.SOLUTION_MARKERS, release.SOLUTION_TAG):
            assert marker not in text, f"{notebook.relative_to(copy)} holds {marker!r}"


@pytest.mark.skipif(not release.has_history(REPO_ROOT), reason="a copy of the course without git history")
def test_each_exercise_is_the_committed_one(copy):
    for rung in course.ready_rungs():
        committed = release.committed_content(REPO_ROOT, rung.exercise)
        assert (copy / rung.exercise).read_bytes() == committed, f"{rung.exercise} is not the committed one"


def test_the_readme_speaks_to_learners(copy):
    readme = (copy / "README.md").read_text(encoding="utf-8")
    section = readme.split(release.THIS_COPY_HEADING, 1)[1]
    assert readme.count(release.THIS_COPY_HEADING) == 1
    assert "without the worked solutions" in section and "course's own tests" in section
    assert "make check RUNG=NN" in section and "make test" in section


# -- where it may be written -------------------------------------------------------------------------------------
def test_a_folder_with_something_in_it_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("someone's work")
    with pytest.raises(ValueError, match="exists and is not empty"):
        release.make_release(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_folder_inside_the_repository_is_refused(capsys):
    inside = REPO_ROOT / "release-for-learners"
    assert not inside.exists()
    with pytest.raises(ValueError, match="inside the course repository"):
        release.make_release(inside)
    with pytest.raises(ValueError, match="is the course repository itself"):
        release.make_release(REPO_ROOT)
    assert release.main([str(inside)]) == 2  # the command line says it in one line, no traceback
    assert "inside the course repository" in capsys.readouterr().err
    assert not inside.exists()


# -- hidden tests, and a copy that fails verification ----------------------------------------------------------
@pytest.fixture
def course_without_history(copy, tmp_path):
    """A copy of the course with no .git (the copy made above), to add files to without touching the repo."""
    source = tmp_path / "course"
    shutil.copytree(copy, source)
    return source


@pytest.mark.parametrize("given_by", ["argument", "environment"])
def test_hidden_tests_inside_the_course_are_left_out(course_without_history, tmp_path, monkeypatch, given_by):
    source = course_without_history
    (source / "grading-cases").mkdir()
    (source / "grading-cases" / "hidden.json").write_text('{"rungs": {}}')
    (source / "rungs" / "02-sft" / "hidden-tests").mkdir()
    (source / "rungs" / "02-sft" / "hidden-tests" / "cases.py").write_text("CASES = []\n")
    if given_by == "environment":
        monkeypatch.setenv(release.HIDDEN_VAR, str(source / "grading-cases"))
    else:
        monkeypatch.delenv(release.HIDDEN_VAR, raising=False)
    hidden = source / "grading-cases" if given_by == "argument" else None

    dest = tmp_path / "out"
    summary = release.make_release(dest, hidden=hidden, root=source)

    assert not (dest / "grading-cases").exists()
    assert not (dest / "rungs" / "02-sft" / "hidden-tests").exists()
    left_out = [path for paths in summary["left_out"].values() for path in paths]
    assert "grading-cases/hidden.json" in left_out and "rungs/02-sft/hidden-tests/cases.py" in left_out
    assert (dest / "README.md").read_text(encoding="utf-8").count(release.THIS_COPY_HEADING) == 1


def test_a_copy_that_gives_an_answer_away_fails_loudly(course_without_history, tmp_path):
    source = course_without_history
    exercise = source / "rungs" / "02-sft" / "exercise.ipynb"
    nb = nbformat.read(exercise, as_version=4)
    nb.cells.append(new_code_cell(f"{release.BEGIN_SOLUTION}\nanswer = 42\n{release.END_SOLUTION}"))
    nbformat.write(nb, exercise)
    (source / "rungs" / "03-lora" / "check.py").unlink()

    with pytest.raises(release.ReleaseError) as failure:
        release.make_release(tmp_path / "out", root=source)
    message = str(failure.value)
    assert "NOT fit for learners" in message
    assert "rungs/02-sft/exercise.ipynb: cell" in message and release.BEGIN_SOLUTION in message
    assert "rungs/03-lora/check.py is missing" in message


# -- the copy's Makefile -------------------------------------------------------------------------------------------
@needs_make
def test_full_course_targets_say_where_they_live(copy):
    # as a learner runs it, not nested in the suite's own `make test` (whose make prints "Entering directory")
    alone = {key: value for key, value in os.environ.items() if key not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    for target in ("test", "exercises"):
        run = subprocess.run(["make", target], cwd=copy, capture_output=True, text=True, timeout=60, env=alone)
        assert run.returncode != 0
        assert "full course repository" in run.stderr and "make check RUNG=NN" in run.stderr
        said = run.stdout + run.stderr
        assert "Traceback" not in said and "-m pytest" not in said and "shared.notebooks.cli" not in said, said
    help_text = subprocess.run(["make", "help"], cwd=copy, capture_output=True, text=True, timeout=60).stdout
    assert "make check RUNG=02" in help_text and "make test " not in help_text
    # the rest of the Makefile is the course's: `make check` still finds (or refuses) a rung the usual way
    wrong = subprocess.run(["make", "check-args", "RUNG=99"], cwd=copy, capture_output=True, text=True, timeout=60)
    assert wrong.returncode != 0 and "there is no rung 99" in wrong.stderr


def _rules(text: str) -> dict[str, str]:
    lines = text.splitlines(keepends=True)
    return {" ".join(targets): "".join(rule) for _, _, targets, rule in release._rules(lines)}


CHANGED_MAKEFILE = """\
VENV = .venv
STAMP = $(VENV)/.installed
X := a:b

help:
\t@echo "make lab          open JupyterLab"
\t@echo "make test         run the tests"
\t@echo "                  (a second line of test's help)"
\t@echo "make check RUNG=02   check a rung"

lint: $(STAMP)
\truff check .

# the test target, rewritten: other prerequisites, a longer recipe, a continued header
test: $(STAMP) lint \\
      data
\t@echo running
\tpytest tests -x; \\
\techo done

exercises:: $(STAMP)
\tpython -m shared.notebooks.cli

check: $(STAMP)
\tpython rungs/$(RUNG)/check.py
"""


@needs_make
def test_the_makefile_override_follows_changes_to_the_makefile(tmp_path):
    for original in ((REPO_ROOT / "Makefile").read_text(encoding="utf-8"), CHANGED_MAKEFILE):
        changed = release.learners_makefile(original)
        before, after = _rules(original), _rules(changed)
        assert after.keys() == before.keys()  # no rule lost, none added
        for target, rule in before.items():
            if target in release.FULL_COURSE_TARGETS:
                assert after[target] == f"{target}:\n" + release._disabled_recipe(
                    target, release.FULL_COURSE_TARGETS[target])
            elif target != "help":
                assert after[target] == rule, f"the rule for {target} changed"
        assert 'make test ' not in after["help"] and "make check RUNG=02" in after["help"]
        assert release.learners_makefile(changed) == changed  # a copy of a copy is the same copy
        (tmp_path / "Makefile").write_text(changed)
        run = subprocess.run(["make", "test"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert run.returncode != 0 and "full course repository" in run.stderr and "running" not in run.stdout

    with pytest.raises(release.ReleaseError, match="no rule for test"):
        release.learners_makefile("help:\n\t@echo hi\n\nexercises:\n\tpython -m x\n")
    with pytest.raises(release.ReleaseError, match="rule of its own"):
        release.learners_makefile("test exercises: stamp\n\tpytest\n")


# -- the checkers in the copy --------------------------------------------------------------------------------------
IMPORT_EVERY_CHECKER = """
import importlib.util, json, sys
found = {}
for number, path in json.loads(sys.argv[1]).items():
    spec = importlib.util.spec_from_file_location(f"check_{number}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found[number] = module.__file__
import shared, shared.checking
found["shared"], found["shared.checking"] = shared.__file__, shared.checking.__file__
print(json.dumps(found))
"""


def test_every_checker_imports_the_copys_own_shared(copy):
    checkers = {r.number: str(copy / r.folder / "check.py") for r in course.ready_rungs()}
    run = subprocess.run([sys.executable, "-c", IMPORT_EVERY_CHECKER, json.dumps(checkers)], cwd=copy,
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    for name, path in found.items():
        assert Path(path).resolve().is_relative_to(copy.resolve()), f"{name} was imported from {path}"


def test_a_check_of_an_untouched_exercise_fails_with_its_reason(copy, tmp_path):
    rung = course.rung(CHEAPEST_RUNG)
    report = tmp_path / "r.json"
    # PYTHONPATH: the notebook's kernel imports `shared` too; the venv's editable install points at the course's
    # own shared/, so without it the notebook would run on the repository's code, not the copy's.
    env = _env(FT_OUTPUTS=str(tmp_path / "outputs"), FT_CHECK_LOG=str(tmp_path / "check.log"),
               PYTHONPATH=str(copy))
    run = subprocess.run([sys.executable, f"{rung.folder}/check.py", "--json", str(report)], cwd=copy, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "NOT DONE YET" in run.stdout
    result = json.loads(report.read_text())
    result = result[0] if isinstance(result, list) else result
    assert result["passed"] is False
    notebook_run = next(c for c in result["criteria"] if c["name"] == "the notebook runs top to bottom")
    assert notebook_run["status"] == "fail" and "NotImplementedError" in notebook_run["detail"]


def test_a_benchmark_script_in_the_copy_is_a_problem_its_figures_are_not(tmp_path):
    """bench/ reaches learners only as its figures; a script there (it runs the solutions) fails the release."""
    (tmp_path / "bench" / "results").mkdir(parents=True)
    for path in ("bench/README.md", "bench/results/qlora_7b.md", "bench/run.py"):
        (tmp_path / path).write_text("x")
    problems = release.release_problems(tmp_path, reference_exercise=lambda path: b"")
    assert "bench/run.py is in the copy" in problems
    assert not [p for p in problems if p.startswith(("bench/README.md", "bench/results/"))], problems
