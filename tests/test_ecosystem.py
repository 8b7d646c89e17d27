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


# -- the frameworks at work (marked: `make test-ecosystem` builds the environments and runs these) ----------------
@pytest.mark.ecosystem
@pytest.mark.parametrize("name", ["axolotl", "llamafactory"])
def test_a_framework_fine_tunes_the_tiny_base_from_the_solutions_config(name, tmp_path):
    """Rung 11's run of one framework from start to end: its environment (built if it is not), the solution's config
    for the tiny recipe, the framework's own command, and its saved model scored by the course's harness."""
    from rung_harness import RungUnderTest
    from shared.ecosystem import runs
    from shared.evaluation import evals
    from shared.models import load_model, load_tokenizer
    from shared.profiles import get_profile
    from shared.world import data

    framework = environments.FRAMEWORKS[name]
    if not framework.built:
        environments.build(framework)
    rung = RungUnderTest("11")
    solution = rung.solution_functions()
    profile = get_profile(announce=False)
    tokenizer = load_tokenizer(profile=profile)
    recipe = runs.recipe(profile)
    paths = runs.write_datasets(data.mixed("train", limit_per_task=profile.train("ecosystem")["examples_per_task"]),
                                tmp_path / "data")
    if name == "axolotl":
        config = solution["axolotl_config"](recipe, profile.base_model, str(paths["conversations"]),
                                            str(tmp_path / "model"), runs.end_of_turn(tokenizer))
    else:
        base = runs.base_for_transformers4(profile.base_model, tmp_path / "base-v4")
        config = solution["llamafactory_config"](recipe, base, str(paths["conversations_folder"]),
                                                 str(tmp_path / "model"))
    record = runs.run_command(name, framework.train_command(runs.write_config(config, tmp_path / "config.yaml")),
                              tmp_path / "log.txt", env=framework.run_env())
    assert record.ok, record.log_tail(30)
    results = evals.evaluate_model(load_model(tmp_path / "model", profile=profile), tokenizer, split="heldout")
    accuracy = evals.accuracies(results)
    assert sum(accuracy.values()) / len(accuracy) >= rung.check.MEAN_AT_LEAST, accuracy
