"""The frameworks' own environments (rung 11): what each installs keeps the course's torch, the builder refuses a
name it does not know, and an environment that `make ecosystem` has built holds what its spec says."""

from __future__ import annotations

import subprocess

import pytest

from shared.doctor import parse_requirements
from shared.ecosystem import environments
from shared.paths import REPO_ROOT


def test_every_environment_installs_the_courses_torch():
    pins = parse_requirements((REPO_ROOT / "requirements.txt").read_text())
    assert environments.TORCH == f"torch=={pins['torch']}"
    for framework in environments.FRAMEWORKS.values():
        assert not any(pin.startswith("torch==") for pin in framework.pins), framework.name   # TORCH only
        assert all("==" in pin for pin in framework.pins), framework.name                   # every pin exact
        assert framework.why, framework.name                                               # the choice explained
        assert framework.folder.parent == REPO_ROOT / ".ecosystem"                          # never .venv


def test_the_environments_are_ignored_by_git():
    assert ".ecosystem/" in (REPO_ROOT / ".gitignore").read_text().split()


def test_an_unknown_framework_is_refused_with_the_names_it_knows(capsys):
    assert environments.main(["unsloth"]) == 2
    assert "no framework called unsloth; the frameworks are: axolotl, llamafactory, torchtune" in capsys.readouterr().err


def test_a_framework_runs_offline_without_telemetry_and_with_its_own_bin_first():
    axolotl = environments.FRAMEWORKS["axolotl"]
    env = axolotl.run_env()
    assert env["PATH"].startswith(str(axolotl.folder / "bin"))
    assert env["HF_HUB_OFFLINE"] == "1" and env["AXOLOTL_DO_NOT_TRACK"] == "1" and env["DO_NOT_TRACK"] == "1"


BUILT = [name for name, framework in environments.FRAMEWORKS.items() if framework.python.exists()]


@pytest.mark.skipif(not BUILT, reason="no framework environment built here (make ecosystem builds them)")
@pytest.mark.parametrize("name", BUILT)
def test_a_built_environment_holds_its_pins_and_the_courses_torch(name):
    framework = environments.FRAMEWORKS[name]
    listed = subprocess.run([str(framework.python), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                            text=True, check=True).stdout
    installed = dict(line.split("==", 1) for line in listed.splitlines() if "==" in line)
    assert installed["torch"].split("+")[0] == environments.TORCH.split("==")[1]
    for pin in framework.pins:
        package, version = pin.split("==")
        assert installed.get(package) == version, (package, installed.get(package))
    assert not set(framework.remove) & set(installed)
