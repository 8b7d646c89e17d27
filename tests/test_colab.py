"""The Colab path: the set-up cell and badge come from the one repository slug, the cell does nothing off Colab,
and on (a faked) Colab it clones, installs and configures once, however often it runs.

Colab itself is not reachable from a test, so a fake stands in for each thing the cell touches: a ``google.colab``
module, a ``git`` on PATH that "clones" a prepared folder, and a ``pip`` module found before the real one that
records its arguments and writes the package metadata a real install would leave.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from shared.notebooks import cli, colab, exercises
from shared import course, doctor
from shared.paths import REPO_ROOT

RUNG = course.rung("02")
COLAB_RUNGS = [r for r in course.ready_rungs() if r.colab]
OTHER_RUNGS = [r for r in course.RUNGS if not r.colab]


# -- the cell and badge come from the manifest --------------------------------------------------------------
def test_cell_and_badge_follow_the_repository_slug(monkeypatch):
    monkeypatch.setattr(course, "REPOSITORY", "someone-else/their-fork")
    monkeypatch.setattr(course, "BRANCH", "autumn")
    badge, setup = exercises.colab_cells(RUNG)
    assert ("https://colab.research.google.com/github/someone-else/their-fork/blob/autumn/rungs/02-sft/exercise.ipynb"
            in badge.source)
    assert '"https://github.com/someone-else/their-fork"' in setup.source
    assert '"--branch", "autumn"' in setup.source
    assert 'course_dir = "/content/their-fork"' in setup.source
    assert '"rungs/02-sft")' in setup.source
    assert "shaper-of-models" not in badge.source + setup.source
    compile(setup.source, "<set-up cell>", "exec")


@pytest.mark.parametrize("slug", ["fine-tuning-course", "a/b/c", "owner/name with space", ""])
def test_a_malformed_slug_is_refused(slug):
    with pytest.raises(ValueError, match="owner/name"):
        colab.setup_cell(slug, "main", RUNG.folder)


def test_check_fails_after_the_slug_changes_until_exercises_are_remade(tmp_path, monkeypatch):
    """On copies of rung 02's notebooks: a new slug makes both stale; `make exercises` writes it into both."""
    for relative in (RUNG.solution, RUNG.exercise):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / relative, tmp_path / relative)
    monkeypatch.setattr(cli, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(cli, "SOLUTIONS_DIR", tmp_path / "solutions")
    monkeypatch.setattr(cli, "RUNGS_DIR", tmp_path / "rungs")
    assert cli.out_of_sync() == []

    monkeypatch.setattr(course, "REPOSITORY", "someone-else/their-fork")
    assert cli.out_of_sync() == [
        f"{RUNG.solution} has missing or stale Colab cells",
        f"{RUNG.exercise} differs from its solution ({RUNG.solution})"]
    assert cli.main(["--check", "--rung", "02"]) == 1

    assert cli.main(["--rung", "02"]) == 0
    assert cli.out_of_sync() == []
    for relative in (RUNG.solution, RUNG.exercise):
        text = (tmp_path / relative).read_text(encoding="utf-8")
        assert "someone-else/their-fork" in text and "shaper-of-models" not in text


def test_restricting_to_an_unknown_rung_or_a_missing_solution_says_so(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        cli.main(["--check", "--rung", "99"])
    assert "no rung '99'; the rungs are 01" in capsys.readouterr().err
    # Every rung has its solution now: one in the manifest without a notebook stands for a rung being written.
    without_solution = course.Rung("13", "not-written", "Not written", "", None, False, "coming")
    monkeypatch.setattr(course, "RUNGS", [*course.RUNGS, without_solution])
    with pytest.raises(SystemExit):
        cli.main(["--check", "--rung", without_solution.number])
    assert f"no solution notebook for {without_solution.name}" in capsys.readouterr().err


# -- the course's notebooks carry them ------------------------------------------------------------------------
def tagged(path: Path, tag: str) -> list[tuple[int, str]]:
    """(position, source) of the cells carrying `tag`."""
    return [(i, c.source) for i, c in enumerate(exercises.read(path).cells) if tag in c.metadata.get("tags", [])]


@pytest.mark.parametrize("rung", COLAB_RUNGS, ids=lambda r: r.name)
@pytest.mark.parametrize("which", ["solution", "exercise"])
def test_colab_rungs_start_with_the_badge_and_the_set_up_cell(rung, which):
    path = REPO_ROOT / getattr(rung, which)
    assert tagged(path, "colab-badge") == [(1, exercises.colab_cells(rung)[0].source)], \
        f"{path.name}: the badge should be the cell after the title; run `make exercises`"
    assert tagged(path, "colab-setup") == [(2, colab.setup_cell(course.REPOSITORY, course.BRANCH, rung.folder))], \
        f"{path.name}: the set-up cell should follow the badge; run `make exercises`"
    assert rung.colab_url in tagged(path, "colab-badge")[0][1]


@pytest.mark.parametrize("rung", OTHER_RUNGS, ids=lambda r: r.name)
def test_rungs_not_offered_on_colab_have_neither(rung):
    present = [REPO_ROOT / p for p in (rung.solution, rung.exercise) if (REPO_ROOT / p).exists()]
    if not present:
        pytest.skip(f"rung {rung.number} has no notebook yet")
    for path in present:
        assert not tagged(path, "colab-badge") + tagged(path, "colab-setup"), \
            f"{path.name}: rung {rung.number} has colab=False; run `make exercises` to remove its Colab cells"


def test_on_colab_is_told_by_the_colab_module(monkeypatch):
    assert not colab.on_colab()  # this machine is not Colab
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert colab.on_colab()


# -- one place for the pins -------------------------------------------------------------------------------------
def test_colab_installs_every_pin_but_the_ones_it_keeps():
    text = (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8")
    pins = doctor.parse_requirements(text)
    assert set(colab.COLAB_KEEPS) <= set(pins), "a name in COLAB_KEEPS is no longer in requirements.txt"
    assert colab.colab_pins(text) == {name: v for name, v in pins.items() if name not in colab.COLAB_KEEPS}
    assert {"transformers", "peft", "trl", "bitsandbytes"} <= set(colab.colab_pins(text))


def test_colab_pins_skip_comments_options_and_kept_packages():
    text = "# comment\ntorch==2.13.0  # CPU build\n--extra-index-url https://example.org\n\nTRL == 1.16.0\nnumpy>=2\n"
    assert colab.colab_pins(text) == {"TRL": "1.16.0"}


def test_the_course_name_matches_pyproject():
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^name = "([^"]+)"', pyproject, re.M).group(1) == colab.DISTRIBUTION


# -- running the cell, on Colab and elsewhere ---------------------------------------------------------------------
FAKE_GIT = """\
#!{python}
import json, shutil, sys
with open({log!r}, "a") as log:
    log.write(json.dumps(["git"] + sys.argv[1:]) + "\\n")
if sys.argv[1] == "clone":
    shutil.copytree({remote!r}, sys.argv[-1])
"""

FAKE_PIP = """\
import json, os, shutil, sys
from pathlib import Path

args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(json.dumps(["pip"] + args) + "\\n")
if os.environ.get("FAKE_PIP_FAILS"):
    print("ERROR: Could not find a version that satisfies the requirement")
    sys.exit(1)
site = Path(__file__).resolve().parent.parent


def leave_metadata(name, version, extra=None):
    for old in site.glob(name.replace("-", "_") + "-*.dist-info"):
        shutil.rmtree(old)
    folder = site / f"{{name.replace('-', '_')}}-{{version}}.dist-info"
    folder.mkdir()
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\\nName: {{name}}\\nVersion: {{version}}\\n")
    for file, text in (extra or {{}}).items():
        (folder / file).write_text(text)


for arg in args:
    if "==" in arg:
        leave_metadata(*arg.split("=="))
if "--editable" in args:
    url = Path(args[args.index("--editable") + 1]).resolve().as_uri()
    leave_metadata("finetuning-course", "0.1.0", {{"direct_url.json": json.dumps({{"url": url}})}})
"""

# Runs the cell `runs` times in one process, as a kernel would, then reports what it changed.
RUNNER = """\
import json, os, sys, types
settings = json.loads(sys.argv[1])
if settings["on_colab"]:
    sys.modules["google.colab"] = types.ModuleType("google.colab")
if settings["gpu"] is not None:  # what the set-up reads of torch: whether CUDA is there and the GPU's name
    cuda = types.SimpleNamespace(is_available=lambda: bool(settings["gpu"]),
                                 get_device_name=lambda index: settings["gpu"])
    sys.modules["torch"] = types.ModuleType("torch")
    sys.modules["torch"].cuda = cuda
for module in settings["imported"]:
    __import__(module)
path_before = list(sys.path)
for run in range(settings["runs"]):
    print(f"=== run {run + 1}", flush=True)
    exec(compile(settings["cell"], "<set-up cell>", "exec"), {"__name__": "__main__"})
print("=== state " + json.dumps({"cwd": os.getcwd(), "profile": os.environ.get("FT_PROFILE"),
                               "added_to_path": [p for p in sys.path if p not in path_before]}))
"""


class FakeColab:
    """A temporary folder with fake git and pip, a 'remote' course to clone, and /content."""

    def __init__(self, root: Path, requirements: str):
        self.root, self.log, self.content = root, root / "calls.log", root / "content"
        self.bin, self.site, self.remote, self.work = root / "bin", root / "site", root / "remote", root / "work"
        for folder in (self.bin, self.site / "pip", self.remote / "shared" / "notebooks", self.remote / RUNG.folder, self.work,
                       self.content):
            folder.mkdir(parents=True)
        shutil.copy(REPO_ROOT / "shared" / "notebooks" / "colab.py", self.remote / "shared" / "notebooks" / "colab.py")
        (self.remote / "requirements.txt").write_text(requirements, encoding="utf-8")
        git = self.bin / "git"
        git.write_text(FAKE_GIT.format(python=sys.executable, log=str(self.log), remote=str(self.remote)))
        git.chmod(0o755)
        (self.site / "pip" / "__init__.py").write_text("")
        (self.site / "pip" / "__main__.py").write_text(FAKE_PIP.format(log=str(self.log)))
        self.course_dir = self.content / course.REPOSITORY.split("/")[1]

    def cell(self) -> str:
        return colab.setup_cell(course.REPOSITORY, course.BRANCH, RUNG.folder, parent=str(self.content))

    def run(self, cell: str, on_colab: bool = True, runs: int = 1, gpu: str | None = "", imported=(),
            **env: str) -> tuple[list[str], dict, subprocess.CompletedProcess]:
        """(printed output of each run, state after the last, the process); fails the test if the cell raised."""
        settings = dict(cell=cell, on_colab=on_colab, runs=runs, gpu=gpu, imported=list(imported))
        environment = {key: value for key, value in os.environ.items() if key != "FT_PROFILE"}
        environment.update(PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(self.site), **env)
        process = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(settings)], cwd=self.work,
                                 env=environment, capture_output=True, text=True, timeout=120)
        if process.returncode != 0:
            return [], {}, process
        printed, state = process.stdout.split("=== state ")
        return printed.split("=== run ")[1:], json.loads(state), process

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake(tmp_path):
    return FakeColab(tmp_path, "torch==2.13.0  # the CPU build\njupyterlab==4.6.6\ncoursepkg==2.0\n")


def test_off_colab_the_notebook_cell_does_nothing(fake):
    notebook_cell = tagged(REPO_ROOT / RUNG.exercise, "colab-setup")[0][1]
    outputs, state, process = fake.run(notebook_cell, on_colab=False, runs=2)
    assert process.returncode == 0, process.stderr
    assert fake.calls() == []  # no git, no pip
    assert state == {"cwd": str(fake.work), "profile": None, "added_to_path": []}
    assert [o.split("\n", 1)[1] for o in outputs] == ["Not on Colab: nothing to set up.\n"] * 2
    assert not any(fake.content.iterdir())


def test_on_colab_the_cell_clones_installs_and_configures_once(fake):
    outputs, state, process = fake.run(fake.cell(), runs=2)
    assert process.returncode == 0, process.stderr
    root = str(fake.course_dir)
    assert fake.calls() == [
        ["git", "clone", "--quiet", "--depth", "1", "--branch", course.BRANCH,
         f"https://github.com/{course.REPOSITORY}", root],
        ["pip", "install", "coursepkg==2.0", "--quiet"],  # torch and jupyterlab stay Colab's own
        ["pip", "install", "--no-deps", "--editable", root, "--quiet"],
    ], "the second run must not clone or install again"
    assert state == {"cwd": str(fake.course_dir / RUNG.folder), "profile": "tiny", "added_to_path": [root]}
    first, second = outputs
    assert "Installing the course's pinned versions of coursepkg" in first
    assert "Installing" not in second
    for output in outputs:
        assert f"working in {RUNG.folder}" in output
        assert "FT_PROFILE=tiny: no GPU in this runtime" in output
        assert "GPU none · transformers " in output and "bitsandbytes " in output
        assert "RESTART" not in output


def test_on_colab_with_a_gpu_the_gpu_profile_is_chosen(fake):
    outputs, state, process = fake.run(fake.cell(), gpu="Tesla T4")
    assert process.returncode == 0, process.stderr
    assert state["profile"] == "gpu"
    assert "FT_PROFILE=gpu" in outputs[0] and "GPU Tesla T4 · " in outputs[0]


def test_a_restart_is_asked_for_when_a_loaded_package_changes(fake):
    (fake.site / "coursepkg.py").write_text("")
    old = fake.site / "coursepkg-1.0.dist-info"
    old.mkdir()
    (old / "METADATA").write_text("Metadata-Version: 2.1\nName: coursepkg\nVersion: 1.0\n")
    outputs, _, process = fake.run(fake.cell(), imported=["coursepkg"], runs=2)
    assert process.returncode == 0, process.stderr
    assert "RESTART NEEDED: this session had already loaded coursepkg 1.0 -> 2.0" in outputs[0]
    assert "RESTART" not in outputs[1]  # after the install nothing changes any more


def test_a_failing_install_says_what_to_do(fake):
    _, _, process = fake.run(fake.cell(), FAKE_PIP_FAILS="1")
    assert process.returncode != 0
    assert "Could not find a version" in process.stdout  # pip's own words are shown
    assert "RuntimeError: pip install failed with exit code 1" in process.stderr
    assert "internet access" in process.stderr


def test_the_set_up_cell_is_short_and_needs_nothing_from_the_course():
    source = colab.setup_cell(course.REPOSITORY, course.BRANCH, RUNG.folder)
    script = (REPO_ROOT / "shared" / "notebooks" / "colab.py").read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 15
    for text in (source, script):  # on Colab both run before the course is installed
        assert not re.search(r"^\s*(from|import) shared", text, re.M)
