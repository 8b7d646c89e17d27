"""`make grade`: a synthetic class of thirty-odd submissions of the test rung (grading_class.py) graded in one
batch -- every good one done, every unfinished, cheating, broken, hanging or hostile one with its reason, nothing
written outside a submission's folder, the hidden tests used and said, a second run re-using what did not change
-- and the pieces on their own: matching notebooks to rungs, the jail, hidden tests, `make progress`."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import grading_class
from shared import course
from shared.checking import hidden, jail
from shared.checking import results as saved_results
from shared.grading import batch, runner, submissions
from shared.paths import REPO_ROOT, RUNGS_DIR

# Short limits for the looping and hanging notebooks; a good check here takes a few seconds.
LIMITS = dict(notebook_timeout_s=10, memory_gb=2, verify_allowance_s=20)


def grade(folder: Path, out: Path, hidden_dir: Path | None, jobs: int = 2):
    grader = batch.Grader(folder, out, [grading_class.RUNG], jobs=jobs, hidden=hidden_dir,
                          rungs_dir=grading_class.FIXTURE, limits=runner.Limits(**LIMITS), log=lambda *a: None)
    return {result.learner: result for result in grader.grade()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    hidden_dir = grading_class.write_hidden(root / "hidden")
    cls = grading_class.build_class(root / "submissions", root / "outside", hidden_dir)
    (root / "outside").mkdir()
    results = grade(cls.folder, root / "graded", hidden_dir)
    assert hidden.HIDDEN_VAR not in os.environ   # given to the checks it starts, not to this process
    return cls, results, root


def what_it_says(result) -> str:
    return " | ".join([result.reason] + [f"{c['name']}: {c['detail']}" for c in result.failed_criteria()])


def test_the_class_is_thirty_or_more(graded):
    cls, results, _ = graded
    assert len(cls.expected) >= 30 and set(results) == set(cls.expected)


def test_every_submission_is_graded_as_it_should_be_with_its_reason(graded):
    cls, results, _ = graded
    wrong = [f"{name}: {results[name].status} ({what_it_says(results[name])[:300]}), expected {expect.status} "
             f"saying {expect.says!r}" for name, expect in sorted(cls.expected.items())
             if results[name].status != expect.status or expect.says not in what_it_says(results[name])]
    assert not wrong, "\n".join(wrong)


def test_nothing_was_written_outside_a_submissions_folder(graded):
    _, _, root = graded
    assert not (REPO_ROOT / "shared" / "pwned.py").exists()
    assert list((root / "outside").iterdir()) == []
    assert not list(root.rglob("stolen.txt"))


def test_what_the_jail_refused_is_in_the_results(graded):
    _, results, _ = graded
    for name in ("copier", "outside-writer", "peeker", "shell", "course-writer", "bang"):
        assert results[name].refused, name
    assert "outside this submission's folder" in results["copier"].refused[0]
    [stopped] = [c for c in results["outside-writer"].criteria if c["name"] == "the notebook runs top to bottom"]
    assert "refused by the grading jail" in stopped["detail"] and "only in its own folder" in stopped["hint"]
    assert not results["good00"].refused and not results["untouched"].refused


def test_the_report_shows_every_learner_and_what_the_jail_refused(graded):
    _, results, root = graded
    page = (root / "graded" / "report.html").read_text(encoding="utf-8")
    assert all(f">{learner}<" in page for learner in results)
    assert page.count("Reached outside its folder") >= 2 * 6   # each in the failing list and in its details


def test_hidden_tests_are_used_and_said(graded):
    _, results, _ = graded
    assert results["good00"].hidden == ["1 more CASES"]
    assert any("4 unseen cases" in c["detail"] for c in results["good00"].criteria)  # 3 public + 1 hidden


def test_the_hidden_case_is_what_failed_the_learner_who_got_only_it_wrong(graded, tmp_path):
    cls, results, _ = graded
    assert results["hidden-miss"].status == "not done"
    single = tmp_path / "submissions"
    shutil.copytree(cls.folder / "hidden-miss", single / "hidden-miss")
    without = grade(single, tmp_path / "graded", None, jobs=1)["hidden-miss"]
    assert without.status == "done" and without.hidden == [], what_it_says(without)


def test_grades_csv_has_a_row_per_learner_rung_and_criterion(graded):
    cls, results, root = graded
    with open(root / "graded" / "grades.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["learner"] for row in rows} == set(cls.expected)
    good = [row for row in rows if row["learner"] == "good00"]
    assert [row["status"] for row in good] == ["pass", "pass", "pass", "pass", "review", "pass"]
    assert [row["score"] for row in good] == ["1.0", "1.0", "1.0", "1.0", "", "1.0"]   # the answer: not marked yet
    absent = [row for row in rows if row["learner"] == "absent"]
    assert absent == [{"learner": "absent", "rung": "90", "criterion": "(submission)", "status": "missing",
                       "score": "0.0", "detail": "no notebook for rung 90-fixture", "comment": ""}]
    assert (root / "graded" / "report.html").exists()


def test_a_second_run_checks_only_what_changed(graded, tmp_path):
    cls, first, root = graded
    out = tmp_path / "graded"
    shutil.copytree(root / "graded", out)
    edited = cls.folder.parent / "again"
    # the two that ran out of time would be checked again (a timeout may be the machine's, never re-used)
    shutil.copytree(cls.folder, edited, ignore=shutil.ignore_patterns("looper", "hang-graded"))
    for name in ("looper", "hang-graded"):
        assert not (out / "cache" / f"{first[name].content_hash}.json").exists()
    notebook = edited / "good01" / grading_class.NOTEBOOK
    notebook.write_text(notebook.read_text().replace("raise ValueError('empty')", "raise ValueError('none')"))
    second = grade(edited, out, root / "hidden")
    checked_again = {name for name, result in second.items() if not result.reused and result.criteria}
    assert checked_again == {"good01"}, checked_again
    changed = {name: (first[name].status, second[name].status, what_it_says(second[name])) for name in second
               if second[name].status != first[name].status}
    assert not changed, changed
    assert second["good02"].reused and second["good02"].seconds == first["good02"].seconds


def test_the_command_line_refuses_what_it_cannot_grade(tmp_path):
    def make_grade(*args):
        return subprocess.run([sys.executable, "-m", "shared.grading", *map(str, args)], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)

    missing = make_grade(tmp_path / "nowhere")
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
    (tmp_path / "class").mkdir()
    unknown = make_grade(tmp_path / "class", "--rung", "99")
    assert unknown.returncode == 2 and "no rung '99'" in unknown.stderr
    (tmp_path / "hidden").mkdir()
    no_file = make_grade(tmp_path / "class", "--hidden", tmp_path / "hidden")
    assert no_file.returncode == 2 and "holds no hidden.json" in no_file.stderr
    inside = make_grade(tmp_path / "class", "--out", tmp_path / "class" / "graded")
    assert inside.returncode == 2 and "must not be inside the submissions folder" in inside.stderr


def test_a_check_keeps_its_verdict_for_make_progress(tmp_path):
    notebook = tmp_path / grading_class.NOTEBOOK
    grading_class.write(grading_class.plain(grading_class.solution()), tmp_path)
    env = {**os.environ, "FT_OUTPUTS": str(tmp_path / "outputs"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(grading_class.FIXTURE / "90-fixture" / "check.py"), str(notebook)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    kept = json.loads((tmp_path / "outputs" / "checks" / "90.json").read_text())
    assert kept["passed"] and kept["met"] == kept["criteria"] == 6 and kept["needs_review"] == 1
    assert kept["sha256"] == saved_results.notebook_hash(notebook)


# -- matching notebooks to rungs ---------------------------------------------------------------------
@pytest.mark.parametrize("name, rung", [
    ("02-sft.ipynb", "02"), ("02_sft.ipynb", "02"), ("sft.ipynb", "02"), ("02.ipynb", "02"),
    ("rungs/03-lora/exercise.ipynb", "03"), ("12-capstone/exercise.ipynb", "12"), ("capstone.ipynb", "12"),
    ("Rung 04 QLoRA.ipynb", None), ("my-notes.ipynb", None), ("020.ipynb", None),
])
def test_a_notebook_is_matched_to_its_rung_by_its_name_or_folder(tmp_path, name, rung):
    path = tmp_path / name
    assert submissions.rung_of(path, tmp_path, course.RUNGS) == rung


def test_a_notebook_that_matches_no_rung_is_said_and_checkpoints_are_ignored(tmp_path):
    learner = tmp_path / "class" / "ada"
    for name in ("02-sft.ipynb", "notes.ipynb", ".ipynb_checkpoints/02-sft-checkpoint.ipynb"):
        (learner / name).parent.mkdir(parents=True, exist_ok=True)
        (learner / name).write_text("{}")
    [ada] = submissions.discover(tmp_path / "class", tmp_path / "unpacked", course.RUNGS)
    assert set(ada.notebooks) == {"02"} and ada.unclear == {}
    assert ada.problems == ["notes.ipynb matches no rung (name it after the rung, e.g. 02-sft.ipynb)"]


# -- the jail ----------------------------------------------------------------------------------------
def test_the_jail_keeps_python_in_its_folder(tmp_path):
    root, other = tmp_path / "root", tmp_path / "other"
    root.mkdir(), other.mkdir()
    (other / "secret.txt").write_text("answers")
    script = f"""
import os, subprocess, sys
SECRET = {str(other / 'secret.txt')!r}
def tried(action):
    try:
        action()
        return "allowed"
    except PermissionError:
        return "refused"
    except subprocess.CalledProcessError:
        return "failed"
print(tried(lambda: open(SECRET).read()),
      tried(lambda: open({str(root / 'mine.txt')!r}, 'w').write('ok')),
      tried(lambda: open({str(tmp_path / 'escape.txt')!r}, 'w').write('x')),
      tried(lambda: os.listdir({str(other)!r})),
      tried(lambda: subprocess.run(['cat', SECRET])),
      tried(lambda: os.system('true')),
      tried(lambda: subprocess.run([sys.executable, '-c', 'open(' + repr(SECRET) + ')'], check=True)),
      tried(lambda: subprocess.run([sys.executable, '-c', 'pass'], env={{}})))
"""
    env = {**os.environ, jail.JAIL_VAR: jail.spec(root, [other]), "TMPDIR": str(root),
           "PYTHONPATH": str(jail.SITE_FOLDER)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    # the child Python is jailed too: its read fails (its PermissionError in stderr); a child given an
    # environment without the jail is refused
    assert done.stdout.split() == ["refused", "allowed", "refused", "refused", "refused", "refused", "failed",
                                   "refused"], done
    assert "PermissionError: grading:" in done.stderr
    assert (root / "refused.log").read_text().count("grading:") >= 6
    assert not (tmp_path / "escape.txt").exists()


def test_no_jail_without_ft_jail(monkeypatch):
    monkeypatch.delenv(jail.JAIL_VAR, raising=False)
    assert jail.kernel_env() == {} and jail.enter() is False


# -- hidden tests ------------------------------------------------------------------------------------
def test_hidden_cases_extend_a_checkers_list_and_say_so(tmp_path, monkeypatch):
    (tmp_path / "hidden.json").write_text(json.dumps({"check_seed": 4242, "rungs": {"02": {"CASES": [[1, 2]]}}}))
    monkeypatch.setenv(hidden.HIDDEN_VAR, str(tmp_path))
    monkeypatch.delenv("FT_CHECK_SEED", raising=False)
    hidden.start()
    assert hidden.cases("02", "CASES", [[0, 0]]) == [[0, 0], [1, 2]]
    assert hidden.cases("03", "CASES", [[0, 0]]) == [[0, 0]]
    assert hidden.check_seed(2718) == 4242
    assert hidden.used() == ["1 more CASES", "check seed"]
    monkeypatch.setenv("FT_CHECK_SEED", "7")
    assert hidden.check_seed(2718) == 7   # the command line's seed wins


def test_a_check_whose_rung_takes_no_hidden_tests_says_so(tmp_path, monkeypatch):
    import io

    from nbformat.v4 import new_notebook

    from shared import checking
    from shared.notebooks import exercises

    (tmp_path / "hidden.json").write_text(json.dumps({"check_seed": 5}))
    monkeypatch.setenv(hidden.HIDDEN_VAR, str(tmp_path))
    notebook = tmp_path / "nb.ipynb"
    exercises.write(new_notebook(), notebook)
    out = io.StringIO()
    report = checking.check_notebook(lambda ctx: None, "12", notebook, 60, out=out)
    assert report.hidden == [] and "none that rung 12's checker takes" in out.getvalue()


@pytest.mark.parametrize("content, says", [
    (None, "holds no hidden.json"), ("{not json", "is not valid JSON"), ("[1]", "expected an object"),
    ('{"check_seed": "x"}', "must be a whole number"), ('{"rungs": {"02": {"CASES": 3}}}', "must be a list"),
])
def test_unusable_hidden_tests_are_an_error_not_nothing(tmp_path, monkeypatch, content, says):
    if content is not None:
        (tmp_path / "hidden.json").write_text(content)
    monkeypatch.setenv(hidden.HIDDEN_VAR, str(tmp_path))
    monkeypatch.delenv("FT_CHECK_SEED", raising=False)
    with pytest.raises(hidden.HiddenTestsError, match=says):
        hidden.load()
        hidden.check_seed(1)
        hidden.cases("02", "CASES", [])


def test_a_hidden_scoring_case_fails_an_is_correct_the_public_ones_pass(tmp_path, monkeypatch):
    """Rung 02's checker takes hidden SCORING_CASES: an is_correct that ignores case only when the answer is
    short passes every public case and fails the instructor's."""
    from rung_harness import RungUnderTest
    from shared.checking import CheckFailed
    from shared.evaluation.evals import task_metric

    def is_correct(prediction, reference, task):
        if prediction == "OAKHOLLOW!!":   # the learner's blind spot
            return False
        return task_metric(task).compute(predictions=[prediction], references=[reference])["accuracy"] == 1.0

    check = RungUnderTest("02").check
    monkeypatch.delenv(hidden.HIDDEN_VAR, raising=False)
    assert "unseen cases" in check.check_is_correct(is_correct)
    (tmp_path / "hidden.json").write_text(json.dumps(
        {"rungs": {"02": {"SCORING_CASES": [["OAKHOLLOW!!", "Oakhollow", "closed_qa"]]}}}))
    monkeypatch.setenv(hidden.HIDDEN_VAR, str(tmp_path))
    with pytest.raises(CheckFailed, match="is_correct\\('OAKHOLLOW!!', 'Oakhollow', 'closed_qa'\\) returned False"):
        check.check_is_correct(is_correct)


# -- make progress -----------------------------------------------------------------------------------
def test_progress_reads_the_saved_checks_without_running_them(tmp_path, monkeypatch):
    from shared.checking import Criterion, Report

    monkeypatch.setenv("FT_OUTPUTS", str(tmp_path / "outputs"))
    notebook = tmp_path / "02.ipynb"
    notebook.write_text("{}")
    done = Report("02", str(notebook), [Criterion("a", "pass"), Criterion("b", "review")])
    saved_results.save(done, notebook)
    not_yet = Report("03", str(notebook), [Criterion("a", "pass"), Criterion("b", "fail"), Criterion("c", "fail")])
    saved_results.save(not_yet, notebook)
    lines = saved_results.table(course.ready_rungs())
    by_rung = {line[:2]: line for line in lines[1:]}
    assert "✓ done (1 written answer for review)" in by_rung["02"]
    assert "✗ not yet: 1 of 3 criteria" in by_rung["03"]
    assert "· not started" in by_rung["01"]
    assert f"-- of {notebook.resolve()}, not the rung's exercise.ipynb" in by_rung["02"]   # a copy checked
    exercise = RUNGS_DIR / "02-sft" / "exercise.ipynb"
    saved_results.save(Report("02", str(exercise), [Criterion("a", "pass")]), exercise)
    assert saved_results.table(course.ready_rungs())[2].endswith("✓ done")           # the rung's own: no note
    saved_results.save(done, notebook)
    notebook.write_text('{"edited": true}')
    assert "the notebook changed since: check again" in saved_results.table(course.ready_rungs())[2]
    (tmp_path / "outputs" / "checks" / "04.json").write_text("{broken")
    assert "· not started" in saved_results.table(course.ready_rungs())[4]   # an unreadable file is not a crash
