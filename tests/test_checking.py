"""The checking framework, with a tiny fake rung: criteria never crash, reviews never pass on keywords, bad
notebooks and buggy checks still give a report, and the command line writes JSON and a summary."""

from __future__ import annotations

import dataclasses
import io
import os
import json
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from shared.notebooks import exercises
from shared import checking
from shared.checking import CheckFailed, Context, FAIL, NOT_CHECKED, PASS, REVIEW, require
from shared.checking import figures

RUNG = "99"
LONG_ANSWER = "Fine-tuning changes behaviour because the model sees many examples of the format it should use."


def answer_cell(text: str):
    cell = new_markdown_cell(text)
    cell.metadata["tags"] = ["answer", "answer-why"]
    return cell


def write_notebook(path: Path, double_body: str, answer: str) -> Path:
    nb = new_notebook(cells=[
        new_markdown_cell("# Demo rung"),
        new_code_cell(f"FACTOR = 2\n\ndef double(x):\n    {double_body}"),
        new_code_cell("raise RuntimeError('top-level code must not run while grading')"),
        answer_cell(answer),
    ])
    exercises.write(nb, path)
    return path


@pytest.fixture
def good_nb(tmp_path):
    return write_notebook(tmp_path / "good.ipynb", "return FACTOR * x", LONG_ANSWER)


@pytest.fixture
def bad_nb(tmp_path):
    return write_notebook(tmp_path / "bad.ipynb", exercises.STUB, exercises.ANSWER_PLACEHOLDER)


def demo_check(ctx: Context) -> None:
    """A rung's check function, as a check.py would write it (no notebook run: fast)."""
    fns = ctx.graded(["double"])
    ctx.criterion("double doubles", lambda: require(fns["double"](21) == 42, "double(21) should be 42"),
                  hint="Multiply by FACTOR.")
    ctx.review("written answer: why", ctx.answers().get("why"), min_words=10)


@pytest.fixture
def rungs_dir(tmp_path, monkeypatch):
    root = tmp_path / "rungs"
    (root / "99-demo").mkdir(parents=True)
    (root / "01-other").mkdir()
    monkeypatch.setattr(checking, "RUNGS_DIR", root)
    return root


@pytest.fixture
def ctx(tmp_path):
    context = Context(RUNG, tmp_path / "nb.ipynb", timeout=60, out=io.StringIO())
    yield context
    context.close()


def statuses(report) -> dict[str, str]:
    return {c.name: c.status for c in report.criteria}


def run_check(check, notebook, **kwargs):
    out = io.StringIO()
    report = checking.check_notebook(check, RUNG, notebook, timeout=60, out=out, **kwargs)
    return report, out.getvalue()


# -- criteria ------------------------------------------------------------------------------------------
def test_criterion_pass_records_detail(ctx):
    assert ctx.criterion("returns normally", lambda: "3 of 3") is True
    assert ctx.criterion("returns None", lambda: None) is True
    assert [(c.status, c.detail) for c in ctx.report.criteria] == [(PASS, "3 of 3"), (PASS, "")]
    assert "✓ returns normally -- 3 of 3" in ctx.out.getvalue()
    assert ctx.report.passed


def test_criterion_check_failed_shows_message_and_hint(ctx):
    def failing():
        raise CheckFailed("the loss went up")

    assert ctx.criterion("loss goes down", failing, hint="lower the learning rate") is False
    criterion = ctx.report.criteria[0]
    assert (criterion.status, criterion.detail, criterion.hint) == (FAIL, "the loss went up", "lower the learning rate")
    printed = ctx.out.getvalue()
    assert "✗ loss goes down -- the loss went up" in printed
    assert "hint: lower the learning rate" in printed
    assert not ctx.report.passed


def test_criterion_exceptions_are_failures_not_crashes(ctx):
    assert ctx.criterion("divides", lambda: 1 / 0) is False
    assert ctx.criterion("reads", lambda: exercises.read(ctx.notebook_path)) is False

    def not_written():
        raise NotImplementedError("Your code here")

    assert ctx.criterion("written", not_written) is False
    divides, reads, written = ctx.report.criteria
    assert divides.status == FAIL and divides.detail.startswith("ZeroDivisionError: division by zero")
    assert reads.status == FAIL and "does not exist" in reads.detail
    assert written.status == FAIL and "not written yet" in written.detail


def test_a_stub_or_a_forbidden_call_gets_its_own_hint_not_the_criterions(ctx):
    """The criterion's hint says how to fix a function that runs; under a function still to write it would say
    how to write it, at the first check of an untouched notebook."""
    from shared.checking.guards import ForbiddenCall

    def not_written():
        raise NotImplementedError("Your code here")

    def calls_the_reference():
        raise ForbiddenCall("calls shared.evaluation.evals.score, which is not allowed here")

    def wrong():
        raise ValueError("bad")

    for test in (not_written, calls_the_reference, wrong):
        ctx.criterion(test.__name__, test, hint="the recipe, step by step")
    hints = [criterion.hint for criterion in ctx.report.criteria]
    assert hints == [checking.UNWRITTEN_HINT, checking.FORBIDDEN_HINT, "the recipe, step by step"]


def test_require():
    require(True, "never shown")
    with pytest.raises(CheckFailed, match="shown"):
        require(False, "shown")


def test_finite_fraction_and_read_json(tmp_path):
    assert figures.finite_fraction(0.25, "accuracy") == 0.25
    for bad in (float("nan"), 1.5, -0.1, True, "0.5", None):
        with pytest.raises(CheckFailed, match="accuracy is"):
            figures.finite_fraction(bad, "accuracy")
    with pytest.raises(CheckFailed, match="was not saved"):
        checking.read_json(tmp_path / "metrics.json", "the metrics")
    (tmp_path / "metrics.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckFailed, match="not valid JSON"):
        checking.read_json(tmp_path / "metrics.json", "the metrics")
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.5}', encoding="utf-8")
    assert checking.read_json(tmp_path / "metrics.json", "the metrics") == {"accuracy": 0.5}


# -- written answers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [None, "", exercises.ANSWER_PLACEHOLDER, "Too short to count.",
                                  f"{exercises.ANSWER_PLACEHOLDER} a b c"])
def test_review_fails_missing_placeholder_or_short(ctx, text):
    assert ctx.review("answer", text, min_words=10) is False
    criterion = ctx.report.criteria[0]
    assert criterion.status == FAIL
    assert "at least 10 expected" in criterion.detail


@pytest.mark.parametrize("text", [LONG_ANSWER, "banana " * 30])
def test_review_flags_long_text_for_an_instructor(ctx, text):
    """Present and long enough: ⚑ for review, whatever it says -- never a keyword pass."""
    assert ctx.review("answer", text, min_words=10) is True
    criterion = ctx.report.criteria[0]
    assert criterion.status == REVIEW
    assert criterion.status != PASS
    assert "⚑ answer" in ctx.out.getvalue()
    assert ctx.report.needs_review == ["answer"]
    assert ctx.report.passed  # a review does not block "done"; the instructor grades it


def test_empty_report_is_not_passed(ctx):
    assert not ctx.report.passed


# -- check_notebook ----------------------------------------------------------------------------------------
def test_check_notebook_passes_a_good_notebook(good_nb):
    report, printed = run_check(demo_check, good_nb)
    assert statuses(report) == {"double doubles": PASS, "written answer: why": REVIEW, "the course's data and code are unchanged": PASS}
    assert report.passed
    assert "DONE: 3/3 criteria met; 1 written answer(s) flagged for instructor review" in printed


def test_check_notebook_fails_an_untouched_exercise(bad_nb):
    report, printed = run_check(demo_check, bad_nb)
    assert statuses(report) == {"double doubles": FAIL, "written answer: why": FAIL, "the course's data and code are unchanged": PASS}
    assert "not written yet" in report.criteria[0].detail
    assert not report.passed
    assert "NOT DONE YET: 1/3" in printed  # only "the course is unchanged" holds


def test_check_notebook_reports_missing_functions(tmp_path):
    path = tmp_path / "empty.ipynb"
    exercises.write(new_notebook(cells=[new_code_cell("x = 1")]), path)
    report, _ = run_check(demo_check, path)
    assert report.criteria[0].status == FAIL
    assert "does not define double" in report.criteria[0].detail


def test_check_notebook_on_a_missing_path(tmp_path):
    report, printed = run_check(demo_check, tmp_path / "missing.ipynb")
    assert statuses(report) == {"the notebook can be read": FAIL}
    assert "does not exist" in report.criteria[0].detail
    assert not report.passed
    assert "NOT DONE YET" in printed


def test_check_notebook_on_a_non_json_file(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text("definitely { not json", encoding="utf-8")
    report, _ = run_check(demo_check, path)
    assert statuses(report) == {"the notebook can be read": FAIL}
    assert "not a readable notebook" in report.criteria[0].detail


def test_a_check_that_raises_still_gives_a_report(good_nb):
    def buggy_check(ctx):
        ctx.criterion("first", lambda: None)
        raise KeyError("bug in the checker")

    report, printed = run_check(buggy_check, good_nb)
    assert statuses(report) == {"first": PASS, "the checker itself": FAIL, "the course's data and code are unchanged": PASS}
    assert "KeyError" in report.criteria[1].detail
    assert "checker error" in report.criteria[1].hint
    assert not report.passed
    assert "Traceback" not in printed


def test_run_notebook_with_outputs(tmp_path, rungs_dir):
    """The notebook runs in a kernel with FT_OUTPUTS set; the check reads what it saved."""
    nb = new_notebook(cells=[
        new_code_cell("import json\nfrom shared.paths import outputs_dir"),
        new_code_cell("(outputs_dir('99-demo') / 'metrics.json').write_text(json.dumps({'accuracy': 0.75}))"),
    ])
    path = tmp_path / "runs.ipynb"
    exercises.write(nb, path)

    def check(ctx):
        ctx.run_notebook()
        ctx.criterion("accuracy saved", lambda: figures.finite_fraction(
            checking.read_json(ctx.outputs() / "metrics.json", "the metrics")["accuracy"], "accuracy"))

    outputs_root = tmp_path / "outputs"
    report, printed = run_check(check, path, outputs_root=outputs_root)
    assert report.passed, printed
    assert statuses(report) == {"the notebook runs top to bottom": PASS, "accuracy saved": PASS, "the course's data and code are unchanged": PASS}
    assert report.criteria[1].detail == "0.75"
    assert report.notebook_seconds is not None
    assert (outputs_root / "99-demo" / "metrics.json").exists()


def test_run_notebook_names_the_failing_cell(tmp_path):
    """By its place among the code cells, its first line and the section it is in (the title is not one)."""
    nb = new_notebook(cells=[new_markdown_cell("# Rung 99\n\n## 1. Warm up"), new_code_cell("x = 1"),
                             new_markdown_cell("Some text.\n\n## 2. Train it\n\nMore text."),
                             new_markdown_cell("No heading here."), new_code_cell("raise ValueError('learner bug')")])
    path = tmp_path / "fails.ipynb"
    exercises.write(nb, path)
    report, printed = run_check(lambda ctx: ctx.run_notebook(), path)
    assert not report.passed
    assert report.criteria[0].detail == ("the 2nd code cell from the top (`raise ValueError('learner bug')`) in "
                                         "section \"2. Train it\" raised ValueError: learner bug")
    assert "hint: Restart the kernel" in printed


def test_a_stub_in_the_way_is_named_without_running_the_notebook(tmp_path):
    """A function still left as its stub, used further down: the run would stop there, so the check says so at
    once -- naming the cell that uses it and the function to write -- instead of running what comes before."""
    nb = new_notebook(cells=[new_code_cell("import time\ntime.sleep(30)   # training, minutes of it"),
                             new_code_cell(f"def double(x):\n    \"\"\"Twice x.\"\"\"\n    {exercises.STUB}"),
                             new_markdown_cell("## 3. Use it"),
                             new_code_cell("# try it\ndef twice(x):\n    return double(x)\n\ntwice(2)")])
    path = tmp_path / "stub.ipynb"
    exercises.write(nb, path)
    report, printed = run_check(lambda ctx: ctx.run_notebook(), path)
    assert report.criteria[0].detail == ("not run: the 3rd code cell from the top (`def twice(x):`) in section "
                                         "\"3. Use it\", at its line 3 (`return double(x)`), uses double, which is "
                                         "not written yet -- it still raises NotImplementedError, so a run would "
                                         "stop there")
    assert "hint: Write double (replace the line that raises NotImplementedError)" in printed
    assert report.notebook_seconds is None and report.seconds < 20   # the 30 s cell never ran


def test_a_stub_the_reader_cannot_be_sure_of_stops_the_run_which_names_it(tmp_path):
    """A stub only in a branch is not claimed by reading: the notebook runs, and where the branch is taken the
    run stops there and names the function to write."""
    nb = new_notebook(cells=[new_code_cell(f"def double(x):\n    if x > 0:\n        {exercises.STUB}\n    return 0"),
                             new_code_cell("# try it\ndef twice(x):\n    return double(x)\n\ntwice(2)")])
    path = tmp_path / "branch.ipynb"
    exercises.write(nb, path)
    report, printed = run_check(lambda ctx: ctx.run_notebook(), path)
    assert report.criteria[0].detail == ("the 2nd code cell from the top (`def twice(x):`) stops with "
                                         "NotImplementedError: double is not written yet")
    assert "hint: Write double (replace the line that raises NotImplementedError)" in printed


def test_a_cell_left_to_fill_in_is_named_without_running_the_notebook(tmp_path):
    nb = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell(f"choices = {{}}\n{exercises.STUB}")])
    path = tmp_path / "choices.ipynb"
    exercises.write(nb, path)
    report, printed = run_check(lambda ctx: ctx.run_notebook(), path)
    assert report.criteria[0].detail.startswith("not run: the 2nd code cell from the top (`choices = {}`) is not "
                                                "written yet")
    assert "hint: Write the cell" in printed


STUB_CELL = f"def double(x):\n    {exercises.STUB}"


@pytest.mark.parametrize("cells, stops_at", [
    ([STUB_CELL, "double(2)"], (2, "double")),
    ([STUB_CELL + "\n\ndouble(2)"], (1, "double")),                         # used in the cell that defines it
    (["%matplotlib inline\nx = 1", STUB_CELL, "!echo hi\ny = double"], (3, "double")),  # IPython's own syntax
    ([STUB_CELL, "def double(x):\n    return 2 * x", "double(2)"], None),  # written again below: no longer a stub
    ([STUB_CELL, "from math import sqrt as double\ndouble(4)"], None),     # the name taken by something else
    ([STUB_CELL], None),                                                     # never used: the run can finish
    ([STUB_CELL, "try:\n    double(2)\nexcept NotImplementedError:\n    print('later')"], None),  # may be caught
    ([STUB_CELL, "try:\n    pass\nfinally:\n    double(2)"], (2, "double")),   # not guarded by the try
    ([f"def double(x):\n    if x < 0:\n        {exercises.STUB}\n    return 2 * x", "double(2)"], None),  # only a branch
    ([f"def double(x):\n    if x == 0:\n        return 0\n    {exercises.STUB}", "double(0)"], None),  # may return first
    (["x = (", STUB_CELL, "double(2)"], None),       # a cell that is not Python: the run says what is wrong with it
    ([f"for _ in range(0):\n    {exercises.STUB}"], None),                 # a cell-level stub that may not be reached
])
def test_first_unwritten_claims_only_a_certain_stop(cells, stops_at):
    from shared.notebooks.running import first_unwritten

    found = first_unwritten(new_notebook(cells=[new_code_cell(source) for source in cells]), exercises.STUB)
    assert (found and (found.cell, found.function)) == stops_at, found


def test_a_long_line_is_quoted_by_its_code_not_its_comment():
    """A cell is named by its first line, cut to fit: a long comment after the code would fill the quote."""
    from shared.checking import _which_cell

    head = "reward_model = load_reward_model(profile, sft_folder)   # the SFT model, its next-token head swapped"
    assert _which_cell(4, head) == ("the 4th code cell from the top "
                                    "(`reward_model = load_reward_model(profile, sft_folder)`)")
    assert _which_cell(2, "x = 1  # short") == "the 2nd code cell from the top (`x = 1  # short`)"   # fits: whole
    text = 'label = "# not a comment, a string" + " long enough to need cutting at sixty"'
    assert _which_cell(1, text) == f"the 1st code cell from the top (`{text[:60]}`)"


def test_a_timeout_names_the_running_cell_and_how_to_allow_more_time(tmp_path):
    nb = new_notebook(cells=[new_code_cell("import time"), new_code_cell("# a long cell\ntime.sleep(30)")])
    path = tmp_path / "slow.ipynb"
    exercises.write(nb, path)
    out = io.StringIO()
    report = checking.check_notebook(lambda ctx: ctx.run_notebook(), RUNG, path, timeout=3, out=out)
    printed = out.getvalue()
    assert report.criteria[0].detail == ("the notebook did not finish within 3 s: the 2nd code cell from the top "
                                         "(`time.sleep(30)`) was still running")
    assert "A busy CPU is the usual cause" in printed
    assert f"{checking.TIMEOUT_VAR}=1200 make check RUNG={RUNG}" in printed
    assert "any model it needs from an earlier rung is trained again" in printed
    assert "Traceback" not in printed and "ZMQError" not in printed


def verify_saved(ctx):
    """A rung's criteria about what its notebook saved (used through ctx.from_the_run)."""
    saved = ctx.collect("metrics saved", lambda: checking.read_json(ctx.outputs() / "metrics.json", "the metrics"),
                        hint="Run the last cell.")
    ctx.criterion("accuracy is a fraction", lambda: figures.finite_fraction(saved.get("accuracy"), "accuracy"),
                  hint="Save the accuracy.")


def check_run_then_outputs(ctx):
    ctx.run_notebook()
    ctx.from_the_run(verify_saved)


def test_one_stopped_run_is_one_failure_not_one_per_criterion(tmp_path, rungs_dir):
    nb = new_notebook(cells=[new_code_cell("raise ValueError('learner bug')")])
    path = tmp_path / "stops.ipynb"
    exercises.write(nb, path)
    report, printed = run_check(check_run_then_outputs, path, outputs_root=tmp_path / "outputs")
    assert statuses(report) == {"the notebook runs top to bottom": FAIL, "metrics saved": NOT_CHECKED,
                                "accuracy is a fraction": NOT_CHECKED, "the course's data and code are unchanged": PASS}
    assert not report.passed
    assert printed.count("✗") == 1 and "hint: Run the last cell" not in printed
    assert "· not checked until the notebook runs to the end (2): metrics saved; accuracy is a fraction" in printed
    assert "NOT DONE YET: 1/4" in printed


def test_a_run_to_the_end_checks_what_it_saved(tmp_path, rungs_dir):
    nb = new_notebook(cells=[new_code_cell("import json\nfrom shared.paths import outputs_dir\n"
                                           "(outputs_dir('99-demo') / 'metrics.json').write_text('{\"accuracy\": 2}')")])
    path = tmp_path / "runs.ipynb"
    exercises.write(nb, path)
    report, printed = run_check(check_run_then_outputs, path, outputs_root=tmp_path / "outputs")
    assert statuses(report)["metrics saved"] == PASS
    assert statuses(report)["accuracy is a fraction"] == FAIL  # measured, not skipped: 2 is no fraction
    assert "not checked" not in printed


# -- the command line ----------------------------------------------------------------------------------------
def test_rung_folder(rungs_dir):
    assert checking.rung_folder("99") == rungs_dir / "99-demo"
    with pytest.raises(SystemExit, match="01-other, 99-demo"):
        checking.rung_folder("42")


def test_main_json_for_a_passing_notebook(rungs_dir, good_nb, tmp_path):
    result = tmp_path / "results" / "out.json"
    assert checking.main(demo_check, RUNG, [str(good_nb), "--json", str(result)]) == 0
    payload = json.loads(result.read_text(encoding="utf-8"))
    assert payload["passed"] is True
    assert payload["notebook"] == str(good_nb)
    assert [c["status"] for c in payload["criteria"]] == [PASS, REVIEW, PASS]  # + the course unchanged
    assert payload["needs_review"] == ["written answer: why"]


def test_main_exit_code_is_1_when_a_criterion_fails(rungs_dir, bad_nb, tmp_path):
    result = tmp_path / "out.json"
    assert checking.main(demo_check, RUNG, [str(bad_nb), "--json", str(result)]) == 1
    payload = json.loads(result.read_text(encoding="utf-8"))
    assert payload["passed"] is False
    assert [c["status"] for c in payload["criteria"]][:2] == [FAIL, FAIL]


def test_main_defaults_to_the_rungs_exercise(rungs_dir, capsys):
    write_notebook(rungs_dir / "99-demo" / "exercise.ipynb", exercises.STUB, exercises.ANSWER_PLACEHOLDER)
    assert checking.main(demo_check, RUNG, []) == 1
    printed = capsys.readouterr().out  # the report goes to sys.stdout as it is at run time
    assert "99-demo/exercise.ipynb" in printed
    assert "✗ double doubles -- not written yet" in printed


def test_main_with_two_notebooks_writes_a_list_and_a_summary(rungs_dir, good_nb, bad_nb, tmp_path, capsys):
    result = tmp_path / "class.json"
    assert checking.main(demo_check, RUNG, [str(good_nb), str(bad_nb), "--json", str(result)]) == 1
    payload = json.loads(result.read_text(encoding="utf-8"))
    assert isinstance(payload, list)
    assert [(r["notebook"], r["passed"]) for r in payload] == [(str(good_nb), True), (str(bad_nb), False)]
    printed = capsys.readouterr().out
    summary = printed[printed.index("Summary"):]
    assert f"DONE      {good_nb}  (1 to review)" in summary
    assert f"NOT DONE  {bad_nb}" in summary


def test_main_with_two_passing_notebooks_exits_0(rungs_dir, good_nb, tmp_path):
    other = write_notebook(tmp_path / "other.ipynb", "return x + x", LONG_ANSWER)
    assert checking.main(demo_check, RUNG, [str(good_nb), str(other)]) == 0


# -- graded functions in their own process, watched for the references they may not call -----------------------
def _notebook_with(source: str):
    from nbformat.v4 import new_code_cell, new_notebook

    return new_notebook(cells=[new_code_cell(source)])


def test_graded_functions_run_in_another_process_and_answer_calls():
    import os

    from shared.checking.sandbox import GradedFunctions

    nb = _notebook_with("import os\nSCALE = 3\n\ndef triple(x):\n    return SCALE * x\n\ndef pid():\n    return os.getpid()")
    with GradedFunctions(nb, ["triple", "pid", "absent"]) as graded:
        assert graded.call("triple", 14) == 42
        assert graded.call("pid") != os.getpid()
        with pytest.raises(Exception, match="does not define absent"):
            graded.call("absent")


def test_a_graded_call_given_tensors_that_require_grad_returns_their_gradients():
    """A loss cannot come back attached to its graph; the child sends the value and d(sum)/d(input) instead,
    and None for an input the value was cut off from (a .detach())."""
    import torch

    from shared.checking.sandbox import GradedFunctions, WithGradients, value_and_gradients

    nb = _notebook_with("def square_sum(x):\n    return (x * x).sum()\n\n"
                        "def cut_off(x):\n    return (x.detach() * x.detach()).sum()")
    x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    with GradedFunctions(nb, ["square_sum", "cut_off"]) as graded:
        result = graded.call("square_sum", x.clone().requires_grad_(True))
        assert isinstance(result, WithGradients) and float(result.value) == 14.0
        assert torch.equal(result.gradients[0], 2 * x)
        assert graded.call("cut_off", x.clone().requires_grad_(True)).gradients == [None]
        assert float(graded.call("square_sum", x)) == 14.0          # no gradient asked: the value alone
    asked = x.clone().requires_grad_(True)                          # a function called here, as tests call one
    value, (gradient,) = value_and_gradients((asked ** 3).sum(), [asked])
    assert float(value) == 20.0 and torch.equal(gradient, 3 * x ** 2)


def test_taking_the_functions_out_leaves_the_learners_outputs_alone():
    """The notebook's constants run in the graded process, and `OUT = outputs_dir(...)` makes a folder: the
    process's own scratch one, never the repo's outputs/ nor the folder the notebook's run saved into."""
    import os
    from pathlib import Path

    from shared.checking.sandbox import GradedFunctions
    from shared.paths import REPO_ROOT

    nb = _notebook_with("from shared.paths import outputs_dir\nOUT = outputs_dir('99-sandbox-test')\n\n"
                        "def where():\n    return str(OUT)")
    with GradedFunctions(nb, ["where"]) as graded:
        made = Path(graded.call("where"))
    assert made.name == "99-sandbox-test"
    for elsewhere in (REPO_ROOT, Path(os.environ["FT_OUTPUTS"])):
        assert elsewhere not in made.parents, f"the graded process made {made}"
    assert not made.exists(), "the scratch folder is removed when the graded process stops"


def test_a_graded_function_whose_cell_does_not_parse_names_the_cell():
    from shared.checking import sandbox

    nb = _notebook_with("def config(profile):\n    x = 1\n      return x")
    with sandbox.GradedFunctions(nb, ["config"]) as graded:
        with pytest.raises(sandbox.SandboxFailure, match=r"does not define config .*: code cell 1 does not parse "
                                                         r"\(line 3: unexpected indent\)"):
            graded.call("config", None)


def test_a_name_the_checker_did_not_take_is_explained():
    from shared.checking import sandbox

    nb = _notebook_with("import torch\nscale = torch.ones(1) * 2\n\ndef scaled(x):\n    return scale * x")
    with sandbox.GradedFunctions(nb, ["scaled"]) as graded:
        with pytest.raises(sandbox.GradedError) as info:
            graded.call("scaled", 3)
    said = str(info.value)
    assert said.startswith("NameError: name 'scale' is not defined (line 5 of its cell). The checker takes from "
                           "your notebook only imports, def and class blocks")
    assert "make it inside the function that uses it" in said


def test_a_graded_function_that_raises_hangs_or_returns_junk_is_reported_not_crashed(monkeypatch):
    from shared.checking import sandbox

    monkeypatch.setattr(sandbox, "CALL_TIMEOUT_S", 3)
    nb = _notebook_with("def broken():\n    return [1][5]\n\ndef todo():\n    raise NotImplementedError\n\n"
                        "def forever():\n    while True:\n        pass\n\ndef junk():\n    return (i for i in [])\n\n"
                        "def with_graph():\n    import torch\n    return torch.ones(2, requires_grad=True) * 2")
    with sandbox.GradedFunctions(nb, ["broken", "todo", "forever", "junk", "with_graph"]) as graded:
        with pytest.raises(sandbox.GradedError, match=r"IndexError: list index out of range \(line 2"):
            graded.call("broken")
        with pytest.raises(NotImplementedError):
            graded.call("todo")
        with pytest.raises(sandbox.SandboxFailure, match="not a value the checker can read"):
            graded.call("junk")
        with pytest.raises(sandbox.SandboxFailure, match=r"with_graph returned a Tensor that still holds the "
                                                         r"autograd graph .*under torch.no_grad\(\)"):
            graded.call("with_graph")
        with pytest.raises(sandbox.SandboxFailure, match="did not return within 3 s"):
            graded.call("forever")


def test_a_graded_function_cannot_patch_the_checkers_reference():
    """What the learner's code does to a module happens in its own process: the checker's copy is untouched."""
    from shared.checking.sandbox import GradedFunctions
    from shared.evaluation import evals

    nb = _notebook_with("from shared.evaluation import evals\n\n"
                        "def patched():\n    evals.accuracy = lambda *a: 1.0\n"
                        "    return evals.accuracy('closed_qa', ['x'], ['y'])")
    with GradedFunctions(nb, ["patched"]) as graded:
        assert graded.call("patched") == 1.0
    assert evals.accuracy("closed_qa", ["x"], ["y"]) == 0.0


def test_the_watch_refuses_forbidden_calls_however_they_are_reached():
    from shared.checking.guards import Forbidden, ForbiddenCall, call_watched

    rule = Forbidden("write it yourself", modules=("json",), functions=("shared.numbers.is_fraction",))
    import json as json_module
    from shared.numbers import is_fraction as renamed

    assert call_watched(lambda: sum([1, 2]), (), {}, rule) == 3
    for cheat, named in ((lambda: json_module.dumps({}), "json"), (lambda: renamed(0.5), "is_fraction")):
        with pytest.raises(ForbiddenCall, match=named):
            call_watched(cheat, (), {}, rule)

    def swallowed():
        try:
            return renamed(0.5)
        except ForbiddenCall:
            return True

    with pytest.raises(ForbiddenCall, match="is_fraction"):
        call_watched(swallowed, (), {}, rule)

    def switches_off():
        import sys

        sys.setprofile(None)
        return renamed(0.5)

    with pytest.raises(ForbiddenCall, match="switched off"):
        call_watched(switches_off, (), {}, rule)


# -- the course's files, and measurements by content ------------------------------------------------------------
def test_integrity_names_every_change(tmp_path):
    from shared.checking import integrity

    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    before = integrity.fingerprint([tmp_path])
    (tmp_path / "a.txt").write_text("changed")
    (tmp_path / "b.txt").unlink()
    (tmp_path / "c.txt").write_text("new")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_text("ignored")
    changed = integrity.changes(before, integrity.fingerprint([tmp_path]))
    assert len(changed) == 3 and any(c.endswith("a.txt changed") for c in changed)
    assert any(c.endswith("b.txt removed") for c in changed) and any(c.endswith("c.txt added") for c in changed)


def test_a_measurement_is_reused_only_for_identical_files(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "weights").write_bytes(b"123")
    calls = []
    ctx = Context("02", tmp_path / "nb.ipynb", timeout=5, measurements={})

    def produce():
        calls.append(1)
        return {"accuracy": len(calls)}

    try:
        assert ctx.measure([tmp_path / "one"], produce) == {"accuracy": 1}
        copy = tmp_path / "copy"
        copy.mkdir()
        (copy / "weights").write_bytes(b"123")
        assert ctx.measure([copy], produce) == {"accuracy": 1}  # same bytes elsewhere: reused
        (copy / "weights").write_bytes(b"124")
        assert ctx.measure([copy], produce) == {"accuracy": 2}  # one byte changed: measured again
        assert Context("02", tmp_path / "nb.ipynb", timeout=5).measure([copy], produce) == {"accuracy": 3}
    finally:
        ctx.close()


def test_the_command_line_prints_only_criteria_hints_and_the_verdict(tmp_path):
    """Library warnings, progress bars and kernel notices go to the log file, not between the ✓/✗ lines."""
    import subprocess
    import sys

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from shared.paths import REPO_ROOT

    notebook = tmp_path / "noisy.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(
        "import sys, warnings\nprint('kernel says hello')\nprint('kernel warns', file=sys.stderr)\n"
        "warnings.warn('a FutureWarning-like notice')\n\n"
        "def build_sft_example(example, tokenizer):\n    raise NotImplementedError\n\n"
        "def is_correct(prediction, reference, task):\n    return prediction == reference")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), notebook)
    log = tmp_path / "check.log"
    result = subprocess.run([sys.executable, "rungs/02-sft/check.py", str(notebook)], cwd=REPO_ROOT,
                            capture_output=True, text=True, env={**os.environ, "FT_CHECK_LOG": str(log)})
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    allowed = ("Rung 02 -- checking", "  ✓ ", "  ✗ ", "  ⚑ ", "      hint: ", "NOT DONE YET", "DONE",
               "(warnings and library logs of this check:")
    assert lines and all(line.startswith(allowed) for line in lines), result.stdout
    assert result.stderr == "" and result.returncode == 1
    assert "is_correct scores like the course metric" in result.stdout and str(log) in result.stdout


def test_a_stopped_run_names_what_to_write_a_function_or_a_cell():
    """A stub function is named; a cell of choices or answers left with its NotImplementedError line is called a
    cell to write -- both with a hint that says what to replace."""
    from shared.checking import run_failure
    from shared.notebooks.running import RunResult

    stub = RunResult(False, 1.0, failed_cell=3, error="NotImplementedError: Your code here", cell_source="x = 1",
                     error_name="NotImplementedError", raised_in="build_sft_example")
    assert run_failure(stub, "02")[0].endswith("build_sft_example is not written yet")
    cell = RunResult(False, 1.0, failed_cell=3, error="NotImplementedError: Your code here",
                     cell_source='raise NotImplementedError("Your code here")', error_name="NotImplementedError")
    message, hint = run_failure(cell, "12")
    assert "the 3rd code cell from the top" in message and message.endswith("the cell is not written yet")
    assert hint.startswith("Write the cell")


def test_a_cell_that_raised_below_its_first_line_is_named_with_the_line():
    """Of a cell's several asserts, the message quotes the one that failed, not only the cell's first line."""
    from shared.checking import run_failure
    from shared.notebooks.running import RunResult

    source = "assert f(1) == 1\nassert f(2) == 4, 'f(2)'\nprint('ok')"
    second = RunResult(False, 1.0, failed_cell=7, error="AssertionError: f(2)", cell_source=source,
                       error_name="AssertionError", failed_line=2)
    assert run_failure(second, "02")[0] == ("the 7th code cell from the top (`assert f(1) == 1`), at its line 2 "
                                            "(`assert f(2) == 4, 'f(2)'`), raised AssertionError: f(2)")
    first = RunResult(False, 1.0, failed_cell=7, error="AssertionError: ", cell_source=source,
                      error_name="AssertionError", failed_line=1)
    assert run_failure(first, "02")[0] == "the 7th code cell from the top (`assert f(1) == 1`) raised AssertionError: "


IRI_PROBE = """
import json, sys
import shared.checking, nbformat
from nbformat.v4 import new_notebook
nbformat.validate(new_notebook())
loaded_on_import = "rfc3987_syntax.syntax_helpers" in sys.modules
import jsonschema
iri = jsonschema.FormatChecker()
verdicts = [iri.conforms(text, "iri") for text in ("https://example.org/caf\u00e9", "no scheme here", "http://[::1")]
print(json.dumps([loaded_on_import, verdicts, "rfc3987_syntax.syntax_helpers" in sys.modules]))
"""


def test_reading_notebooks_puts_off_the_iri_grammars_until_an_iri_is_checked():
    """Every check reads notebooks (nbformat -> jsonschema -> rfc3987_syntax, a second of grammar building): the
    course package defers that package until an IRI is checked, and the check then gives the real verdicts."""
    import subprocess
    import sys

    from shared.paths import REPO_ROOT

    run = subprocess.run([sys.executable, "-c", IRI_PROBE], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True)
    loaded_on_import, verdicts, loaded_when_used = json.loads(run.stdout.strip().splitlines()[-1])
    assert not loaded_on_import and loaded_when_used
    assert verdicts == [True, False, False]


def test_the_graded_function_server_starts_with_the_course_package():
    """Its children read notebooks too: the course package comes first in the server (its warning filters and the
    deferred IRI grammars apply to the libraries imported after it)."""
    from shared.checking.sandbox import GradedFunctions

    probe = new_code_cell("import sys\n\ndef loaded():\n    return sorted(name for name in sys.modules\n"
                          "                  if name in ('torch', 'nbformat', 'rfc3987_syntax.syntax_helpers'))")
    with GradedFunctions(new_notebook(cells=[probe]), ["loaded"]) as graded:
        assert graded.function("loaded")() == ["nbformat", "torch"]


def test_a_config_writer_that_raises_on_a_change_is_told_which_change_was_asked():
    """Fixed settings written after **changes: DPOConfig gets max_length twice. The notebook itself never
    passes max_length, so it runs; the check's message says what it asked for."""
    from trl import DPOConfig

    from shared.checking.sandbox import GradedFunctions
    from shared.profiles import get_profile

    def expected(profile, output_dir, changes):
        return {"max_length": changes["max_length"]}

    nb = _notebook_with("from trl import DPOConfig\n\n"
                        "def dpo_config(profile, output_dir, **changes):\n"
                        "    return DPOConfig(output_dir=output_dir, **changes, max_length=profile.max_seq_length)")
    with GradedFunctions(nb, ["dpo_config"]) as graded:
        with pytest.raises(CheckFailed, match=r"^with the profile's own sizes, profile.seed 41, changes max_length=64: TypeError: "
                                              r".*multiple values for keyword argument 'max_length'"):
            checking.check_config_cases(graded.function("dpo_config"), get_profile(), "dpo",
                                        [({}, {"max_length": 64})], expected, DPOConfig)


def test_a_config_writer_with_an_older_tutorials_argument_is_told_the_name_the_pinned_versions_take():
    from trl import SFTConfig

    from shared.checking.sandbox import GradedFunctions
    from shared.profiles import get_profile

    nb = _notebook_with("from trl import SFTConfig\n\n"
                        "def sft_config(profile, output_dir, **changes):\n"
                        "    return SFTConfig(output_dir=output_dir, max_seq_length=profile.max_seq_length, **changes)")
    with GradedFunctions(nb, ["sft_config"]) as graded:
        with pytest.raises(CheckFailed, match=r"^with profile.train\('sft'\) holding learning_rate=0.001, profile.seed 41, no changes: "
                                              r"TypeError: .*'max_seq_length'.*: max_seq_length is an older name, the "
                                              r"pinned versions take max_length$"):
            checking.check_config_cases(graded.function("sft_config"), get_profile(), "sft",
                                        [({"learning_rate": 1e-3}, {})], lambda *args: {}, SFTConfig)


@pytest.mark.parametrize("written, expected", [
    ("seed=0", r"profile.seed 41, no changes: seed is 0, expected 41$"),
    ("disable_tqdm=False", r"disable_tqdm is False, expected True$"),
    ("", r"disable_tqdm is False, expected True$")])   # left out: TrainingArguments draws the bar
def test_a_config_writer_must_read_the_profiles_seed_and_stay_quiet(written, expected):
    """The notebook runs with seed 0 and, in Jupyter, with bars: a seed written down, or no disable_tqdm, would
    pass a check made only on the notebook's own profile."""
    from trl import SFTConfig

    from shared.checking.sandbox import GradedFunctions
    from shared.profiles import get_profile

    settings = {"use_cpu": "True", "seed": "profile.seed", "disable_tqdm": "quiet()"}
    if written:
        name, value = written.split("=")
        settings[name] = value
    nb = _notebook_with("from trl import SFTConfig\nfrom shared.progress import quiet\n\n"
                        "def sft_config(profile, output_dir, **changes):\n"
                        "    return SFTConfig(output_dir=output_dir, " +
                        ", ".join(f"{k}={v}" for k, v in settings.items() if written or k != "disable_tqdm") +
                        ", **changes)")
    with GradedFunctions(nb, ["sft_config"]) as graded:
        with pytest.raises(CheckFailed, match=expected):
            checking.check_config_cases(graded.function("sft_config"), get_profile(), "sft", [({}, {})],
                                        lambda profile, output_dir, changes: {
                                            key: value for key, value in checking.fixed_trainer_settings(
                                                profile, output_dir).items() if key in ("seed", "disable_tqdm")},
                                        SFTConfig)


@pytest.mark.parametrize("older, current", sorted(checking.OLDER_NAMES.items()))
def test_each_older_name_is_refused_by_the_pinned_configs_and_its_replacement_taken(older, current, tmp_path):
    from trl import DPOConfig, GRPOConfig, RewardConfig, SFTConfig

    for config in (SFTConfig, DPOConfig, RewardConfig, GRPOConfig):
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{older}'"):
            config(output_dir=str(tmp_path), **{older: 1})
    assert current.split(",")[0] in {field.name for field in dataclasses.fields(SFTConfig)}


def test_the_check_log_is_named_for_its_user_so_a_shared_machine_keeps_each_learners_apart(monkeypatch):
    """In the shared temporary folder a file another user owns cannot be opened for writing: each user's check
    writes its own log. FT_CHECK_LOG, when set, wins; with no login name the uid names it."""
    import getpass
    import tempfile

    monkeypatch.delenv("FT_CHECK_LOG", raising=False)
    paths = {}
    for user in ("ada", "grace"):
        monkeypatch.setattr(getpass, "getuser", lambda user=user: user)
        paths[user] = checking.log_path_for("06")
    assert paths["ada"] != paths["grace"] and paths["ada"].name == "ft-check-ada-06.log"
    assert paths["ada"].parent == Path(tempfile.gettempdir())

    def no_login_name():
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_login_name)
    if hasattr(os, "getuid"):
        assert checking.log_path_for("06").name == f"ft-check-uid{os.getuid()}-06.log"
    monkeypatch.setenv("FT_CHECK_LOG", "/somewhere/check.log")
    assert checking.log_path_for("06") == Path("/somewhere/check.log")
