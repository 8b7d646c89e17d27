"""Profiles: FT_PROFILE picks one, typos fail loudly, and settings cannot be changed by accident."""

from __future__ import annotations

import warnings

import pytest
import torch

from shared import profiles
from shared.paths import DATA_DIR, TINY_BASE_DIR


@pytest.fixture(autouse=True)
def no_profile(monkeypatch):
    for variable in (profiles.ENV_VAR, *profiles.MODEL_VARS):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_default_is_tiny(no_cuda):
    assert profiles.profile_name() == "tiny"
    assert profiles.get_profile().name == "tiny"


@pytest.mark.parametrize("value", ["TINY", "Tiny", " tiny ", ""])
def test_name_is_case_and_space_insensitive(monkeypatch, no_cuda, value):
    monkeypatch.setenv(profiles.ENV_VAR, value)
    assert profiles.get_profile().name == "tiny"


def test_unknown_profile_names_the_choices(monkeypatch):
    monkeypatch.setenv(profiles.ENV_VAR, "tinyy")
    with pytest.raises(profiles.ProfileError, match="'tinyy' is not a profile") as info:
        profiles.get_profile()
    for name in profiles.PROFILES:
        assert name in str(info.value)


def test_gpu_profile_without_cuda_gives_advice(monkeypatch, no_cuda):
    monkeypatch.setenv(profiles.ENV_VAR, "gpu")
    with pytest.raises(profiles.ProfileError, match="needs a CUDA GPU") as info:
        profiles.get_profile()
    assert "FT_PROFILE=tiny" in str(info.value)  # says how to go on without one


def test_gpu_profile_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv(profiles.ENV_VAR, "gpu")
    profile = profiles.get_profile()
    assert profile.name == "gpu" and profile.device == "cuda" and not profile.offline


def test_tiny_profile_warns_when_a_gpu_is_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.warns(UserWarning, match="FT_PROFILE=gpu"):
        profiles.get_profile()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        profiles.get_profile(announce=False)  # and stays quiet when asked to


def test_train_returns_a_fresh_mutable_dict(no_cuda):
    profile = profiles.get_profile()
    sft = profile.train("sft")
    assert isinstance(sft, dict) and "learning_rate" in sft
    original = sft["learning_rate"]
    sft["learning_rate"] = 123.0
    sft["new_setting"] = True
    assert profile.train("sft")["learning_rate"] == original
    assert "new_setting" not in profile.train("sft")
    assert profile.train("sft") is not profile.train("sft")


def test_profile_settings_are_read_only(no_cuda):
    profile = profiles.get_profile()
    with pytest.raises(TypeError):
        profile.training["sft"]["learning_rate"] = 1.0
    with pytest.raises(Exception):  # frozen dataclass
        profile.base_model = "elsewhere"


def test_unknown_stage_lists_the_stages(no_cuda):
    with pytest.raises(KeyError, match="'kto'") as info:
        profiles.get_profile().train("kto")
    assert "sft" in str(info.value)


def test_tiny_profile_is_offline_on_the_cpu_with_the_tiny_base():
    tiny = profiles.PROFILES["tiny"]
    assert tiny.offline is True
    assert tiny.device == "cpu"
    assert tiny.base_model == str(TINY_BASE_DIR) == str(DATA_DIR / "tiny-base")
    assert tiny.torch_dtype == torch.float32


def test_every_profile_has_the_same_stages():
    stages = {name: set(p.training) for name, p in profiles.PROFILES.items()}
    assert len({frozenset(s) for s in stages.values()}) == 1, stages


def test_model_variables_replace_the_profiles_models(monkeypatch, no_cuda, capsys, tmp_path):
    monkeypatch.setenv("FT_QLORA_MODEL", str(tmp_path))
    profile = profiles.get_profile()
    assert profile.qlora_model == str(tmp_path)
    assert profile.base_model == str(TINY_BASE_DIR)          # only the model named is replaced
    assert profile.train("qlora") == profiles.PROFILES["tiny"].train("qlora")
    assert f"FT_QLORA_MODEL={tmp_path} replaces the tiny profile's qlora_model" in capsys.readouterr().out
    assert profiles.PROFILES["tiny"].qlora_model == str(TINY_BASE_DIR)  # the table itself is untouched


def test_model_variables_that_are_empty_or_unchanged_change_nothing(monkeypatch, no_cuda, capsys):
    monkeypatch.setenv("FT_BASE_MODEL", " ")
    monkeypatch.setenv("FT_QLORA_MODEL", str(TINY_BASE_DIR))
    assert profiles.get_profile() is profiles.PROFILES["tiny"]
    assert capsys.readouterr().out == ""


# Each training stage and the TRL config its settings go into (lora_sweep and sft_what_if are changes on top of
# the lora and sft stages, read by the rung 03 and rung 02 notebooks).
TRAINER_STAGES = {"sft": "SFTConfig", "lora": "SFTConfig", "qlora": "SFTConfig", "dpo": "DPOConfig",
                  "preferred_ft": "SFTConfig", "reward": "RewardConfig", "grpo": "GRPOConfig",
                  "prime": "SFTConfig", "knowledge": "SFTConfig", "reader": "SFTConfig", "forget": "SFTConfig",
                  "forget_lora": "SFTConfig", "ecosystem": "SFTConfig", "capstone": "SFTConfig",
                  "lora_sweep": "SFTConfig", "sft_what_if": "SFTConfig"}
# Sizes the course's own code reads, not TRL settings.
COURSE_ONLY = ("examples_per_task",       # how many examples per task sft_trainer takes
               "eval_examples_per_task",  # how many held-out examples a sweep scores
               "prompts")                 # how many prompts rung 07 trains GRPO on


def test_every_stage_of_every_profile_is_tried_below():
    for profile in profiles.PROFILES.values():
        assert set(profile.training) == set(TRAINER_STAGES), profile.name


@pytest.mark.parametrize("name", list(profiles.PROFILES))
@pytest.mark.parametrize("stage", list(TRAINER_STAGES))
def test_every_training_stage_is_accepted_by_its_trl_config(name, stage, tmp_path):
    # A renamed TRL argument (or a typo) fails here for the gpu profile too, without a GPU: the config is built
    # with the tiny profile's CPU settings and the stage's own sizes.
    import trl

    from shared.training.recipe import common_config_kwargs

    config_class = getattr(trl, TRAINER_STAGES[stage])
    settings = {key: value for key, value in profiles.PROFILES[name].train(stage).items() if key not in COURSE_ONLY}
    config = config_class(**{**common_config_kwargs(config_class, profiles.PROFILES["tiny"], tmp_path), **settings})
    assert settings and all(getattr(config, key) == value for key, value in settings.items())


def test_the_training_seed_comes_from_ft_seed(monkeypatch):
    from shared.profiles import ProfileError, get_profile

    monkeypatch.delenv("FT_SEED", raising=False)
    assert get_profile(announce=False).seed == 0
    monkeypatch.setenv("FT_SEED", "2")
    assert get_profile(announce=False).seed == 2
    monkeypatch.setenv("FT_SEED", "two")
    with pytest.raises(ProfileError, match="not a whole number"):
        get_profile(announce=False).seed
