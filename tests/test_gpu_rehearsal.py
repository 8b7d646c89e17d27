"""The gpu-profile rehearsal's parts that need no GPU: the stand-ins' shapes, writing a stand-in, the plan, and
the T4 emulation (no bf16, a T4's memory) in a fresh Python process."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from shared.paths import REPO_ROOT, TINY_BASE_DIR
from shared.profiles import PROFILES

spec = importlib.util.spec_from_file_location("gpu_rehearsal", REPO_ROOT / "bench" / "gpu_rehearsal.py")
rehearsal = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rehearsal)


# A Qwen2.5-7B stand-in shrunk to a few thousand parameters: same architecture, same code path.
SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             vocab_size=1024)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY_BASE_DIR)


def test_every_gpu_model_a_rung_loads_has_a_stand_in():
    for setting, _ in rehearsal.RUNG_MODELS.values():
        assert getattr(PROFILES["gpu"], setting) in rehearsal.STANDINS


@pytest.mark.parametrize("model", sorted(rehearsal.STANDINS))
def test_stand_ins_have_the_published_parameter_count(model, tokenizer):
    from transformers import AutoModelForCausalLM

    config = rehearsal.standin_config(model, tokenizer)
    with torch.device("meta"):   # shapes only: a 7B model costs no memory here
        standin = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in standin.parameters()) == rehearsal.STANDINS[model]["parameters"]
    assert config.vocab_size >= len(tokenizer)
    assert (config.eos_token_id, config.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)


def test_a_written_stand_in_loads_with_the_course_tokenizer(tmp_path, tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parameters = rehearsal.write_standin("Qwen/Qwen2.5-7B", tmp_path, device="cpu", **SMALL)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert model.dtype == torch.bfloat16
    # transformers picks the model type's tokenizer class (Qwen2's adds <|endoftext|>): the course's tokens and
    # chat template stay as they are, and every token has a row in the stand-in's embedding
    standin_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert tokenizer.get_vocab().items() <= standin_tokenizer.get_vocab().items()
    assert len(standin_tokenizer) <= model.config.vocab_size
    chat = [{"role": "user", "content": "Where does Mira Holt live?"}, {"role": "assistant", "content": "Ashford"}]
    assert standin_tokenizer.apply_chat_template(chat) == tokenizer.apply_chat_template(chat)


def test_a_stand_in_smaller_than_the_tokenizer_is_refused(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        rehearsal.write_standin("Qwen/Qwen2.5-7B", tmp_path, device="cpu", **{**SMALL, "vocab_size": 100})


def test_plan_names_the_model_the_variable_and_the_learners_command(capsys):
    assert rehearsal.main(["--rung", "4", "--as-t4", "--plan"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["model"] == PROFILES["gpu"].qlora_model and plan["variable"] == "FT_QLORA_MODEL"
    assert plan["command"][1:] == ["rungs/04-qlora/check.py", "solutions/04-qlora.ipynb"]
    assert plan["as_t4"] is True
    with pytest.raises(SystemExit, match="no gpu rehearsal for rung 05"):
        rehearsal.plan("05", as_t4=False)


@pytest.mark.parametrize("rung, slug", [("06", "06-dpo"), ("07", "07-grpo"), ("08", "08-reward-modelling")])
def test_the_preference_and_rl_rungs_rehearse_on_the_base_model_stand_in(rung, slug):
    plan = rehearsal.plan(rung, as_t4=True)
    assert plan["model"] == PROFILES["gpu"].base_model and plan["variable"] == "FT_BASE_MODEL"
    assert plan["command"][1:] == [f"rungs/{slug}/check.py", f"solutions/{slug}.ipynb"]


def test_without_a_gpu_it_says_so_and_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rehearsal.main(["--rung", "04"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_t4_emulation_turns_off_bf16_in_every_new_python_process(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(rehearsal.T4_SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    probe = "import torch; print(torch.cuda.is_bf16_supported())"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_summary_lists_every_criterion_and_the_timings():
    what = {"rung": "04-qlora", "model": "Qwen/Qwen2.5-7B", "as_t4": True, "check_exit_code": 1,
            "check_seconds": 300.0,
            "check": {"notebook_seconds": 200.4, "criteria": [
                {"name": "the notebook runs", "status": "pass", "detail": ""},
                {"name": "held-out accuracy", "status": "fail", "detail": "extraction 0% < 80%"}]}}
    text = rehearsal.summary(what)
    assert "as a T4 (fp16, 14.5 GiB)" in text
    assert "fail  held-out accuracy: extraction 0% < 80%" in text
    assert "the notebook ran in 200 s" in text and "checker exit code 1, 300.0 s" in text


@pytest.mark.parametrize("name", ["gpu_rehearsal_04_t4.json", "gpu_rehearsal_04_bf16.json"])
def test_the_committed_rehearsals_failed_only_on_accuracy(name):
    what = json.loads((REPO_ROOT / "bench" / "results" / name).read_text())
    assert what["model"] == PROFILES["gpu"].qlora_model and what["as_t4"] == name.endswith("_t4.json")
    failed = [c["name"] for c in what["check"]["criteria"] if c["status"] == "fail"]
    assert len(failed) == 1 and failed[0].startswith("held-out accuracy")
    metadata = next(c for c in what["check"]["criteria"] if c["name"].startswith("the run's metadata"))
    assert "7.62B parameters, nf4" in metadata["detail"] and "NVIDIA" in metadata["detail"]
    assert ("compute float16" in metadata["detail"]) == what["as_t4"]
