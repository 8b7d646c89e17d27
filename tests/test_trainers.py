"""Every trainer the course builds, built on the tiny model and run for two steps: a renamed TRL argument, a
changed default or a missing log key fails here, not in a learner's notebook. And trainers stay quiet under CI."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset

from shared.evaluation import generation
from shared.models import load_model, load_tokenizer
from shared.profiles import PROFILES
from shared.training import grpo, preference, recipe
from shared.training.sft import sft_trainer
from shared.world import data
from shared.world.generator import build_world

TINY = PROFILES["tiny"]
TWO_STEPS = dict(max_steps=2, logging_steps=1, warmup_steps=0, per_device_train_batch_size=4)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(profile=TINY)


@pytest.fixture(scope="module")
def town_pairs():
    """Preference pairs from the tiny world: the town a person lives in, against a town they do not."""
    world = build_world()
    towns = [town["name"] for town in world["towns"]]
    return [{"prompt": f"Where does {person['name']} live?", "chosen": f"{person['name']} lives in {person['town']}.",
             "rejected": f"{person['name']} lives in {next(t for t in towns if t != person['town'])}."}
            for person in world["people"][:8]]


def weights(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(model, before: dict) -> bool:
    return any(not torch.equal(p.detach(), before[name]) for name, p in model.named_parameters())


def logged(trainer, key: str) -> list[float]:
    values = [row[key] for row in trainer.state.log_history if key in row]
    assert values and all(math.isfinite(v) for v in values), (key, trainer.state.log_history)
    return values


def test_sft_trainer_trains_and_prints_no_loss_dicts(monkeypatch, capfd, tokenizer, tmp_path):
    monkeypatch.setenv("FT_QUIET", "1")
    model = load_model(profile=TINY)
    before = weights(model)
    trainer = sft_trainer(model, tokenizer, TINY, "sft", tmp_path, examples_per_task=4, **TWO_STEPS)
    capfd.readouterr()
    trainer.train()
    printed = capfd.readouterr()
    assert "'loss'" not in printed.out + printed.err      # PrinterCallback would print {'loss': ...} every step
    assert len(logged(trainer, "loss")) == 2              # ... and the history is still there for the plots
    assert changed(trainer.model, before)


def test_quiet_logs_keeps_the_printer_when_output_is_wanted(monkeypatch, tokenizer, tmp_path):
    from transformers.trainer_callback import PrinterCallback

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("FT_QUIET", "0")
    trainer = sft_trainer(load_model(profile=TINY), tokenizer, TINY, "sft", tmp_path, examples_per_task=2,
                          max_steps=1, disable_tqdm=True)  # no bar: transformers prints the logs instead
    assert any(isinstance(c, PrinterCallback) for c in trainer.callback_handler.callbacks)
    monkeypatch.setenv("FT_QUIET", "1")
    recipe.quiet_logs(trainer)
    assert not any(isinstance(c, PrinterCallback) for c in trainer.callback_handler.callbacks)


def test_in_jupyter_the_loss_table_under_the_bar_keeps_its_newest_rows(tokenizer, tmp_path):
    """transformers' notebook bar adds a table row every logging step: 66 rows for a 330-step run. quiet_logs
    puts in its place one that keeps the header and the newest rows."""
    from types import SimpleNamespace

    from transformers.utils.notebook import NotebookProgressCallback, NotebookTrainingTracker

    trainer = sft_trainer(load_model(profile=TINY), tokenizer, TINY, "sft", tmp_path, examples_per_task=2,
                          max_steps=1)
    trainer.add_callback(NotebookProgressCallback())   # what the trainer adds itself when it runs in Jupyter
    recipe.quiet_logs(trainer)
    shown = [c for c in trainer.callback_handler.callbacks if isinstance(c, NotebookProgressCallback)]
    assert len(shown) == 1 and type(shown[0]) is not NotebookProgressCallback
    callback = shown[0]
    callback.training_tracker = NotebookTrainingTracker(330)   # what on_train_begin makes, without a display
    for step in range(5, 335, 5):
        callback.on_log(trainer.args, SimpleNamespace(global_step=step), None, logs={"loss": 1 / step})
    table = callback.training_tracker.inner_table
    assert table[0] == ["Training Loss", "Step"]
    assert [row[1] for row in table[1:]] == [310, 315, 320, 325, 330]   # the newest rows, in order


@pytest.fixture
def library_bars_restored():
    """quiet_libraries switches the libraries' bars off for the whole process: switch them back on after."""
    from datasets.utils.logging import enable_progress_bar as datasets_bars_on
    from huggingface_hub.utils import enable_progress_bars as hub_bars_on
    from transformers.utils.logging import enable_progress_bar as transformers_bars_on

    yield
    datasets_bars_on()
    hub_bars_on()
    transformers_bars_on()


def test_a_notebook_under_ci_shows_no_library_progress_bars(monkeypatch, capfd, tokenizer, tmp_path,
                                                            library_bars_restored):
    """What rung 02's learner writes by hand -- a model loaded, an SFTTrainer built on a dataset -- prints no
    "Loading weights" or "Building labels for train dataset" bars once get_profile ran under CI."""
    from trl import SFTConfig, SFTTrainer

    from shared.profiles import get_profile

    monkeypatch.setenv("FT_QUIET", "1")
    get_profile()
    capfd.readouterr()
    model = load_model(profile=TINY)
    rows = [{"prompt": [{"role": "user", "content": e["prompt"]}],
             "completion": [{"role": "assistant", "content": e["answer"]}]}
            for e in data.load_task("closed_qa", "train", limit=4)]
    config = SFTConfig(output_dir=str(tmp_path), max_steps=1, report_to=[], use_cpu=True, disable_tqdm=True,
                       activation_checkpointing=False)
    SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    printed = capfd.readouterr()
    assert "%|" not in printed.out + printed.err, printed.err[-500:]


def test_outside_ci_a_notebook_keeps_the_loading_bars_and_drops_the_dataset_passes(monkeypatch, library_bars_restored):
    """In a learner's JupyterLab a TRL trainer's passes over its dataset draw no bars (a second each); the bars
    of what can take minutes on the gpu profile -- loading a model, a download -- stay."""
    from datasets.utils.logging import is_progress_bar_enabled as datasets_bars
    from huggingface_hub.utils import are_progress_bars_disabled as hub_bars_disabled
    from transformers.utils.logging import is_progress_bar_enabled as transformers_bars

    from shared.profiles import get_profile

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("FT_QUIET", raising=False)
    get_profile()
    assert not datasets_bars()
    assert transformers_bars() and not hub_bars_disabled()


def test_dpo_trainer_moves_the_policy_away_from_a_frozen_reference(tokenizer, town_pairs, tmp_path):
    model = load_model(profile=TINY)
    with torch.no_grad():  # as if SFT had trained it in this notebook: no longer the model on disk
        model.get_input_embeddings().weight.add_(0.01)
    before = weights(model)
    trainer = preference.dpo_trainer(model, tokenizer, TINY, "dpo", tmp_path,
                                     preference.preference_dataset(town_pairs), learning_rate=1e-3, **TWO_STEPS)
    assert trainer.args.beta == TINY.train("dpo")["beta"]
    trainer.train()
    logged(trainer, "loss")
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen"):
        logged(trainer, key)
    assert logged(trainer, "rewards/chosen")[-1] != 0      # step 2: the policy differs from the reference...
    assert changed(trainer.model, before)
    assert not changed(trainer.ref_model, before)          # ... which is the model as passed in, not the one on disk


def test_reward_trainer_trains_a_one_number_head(tokenizer, town_pairs, tmp_path):
    model = preference.load_reward_model(TINY)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
    before = weights(model)
    trainer = preference.reward_trainer(model, tokenizer, TINY, "reward", tmp_path,
                                        preference.preference_dataset(town_pairs), **TWO_STEPS)
    trainer.train()
    logged(trainer, "loss")
    assert 0 <= logged(trainer, "accuracy")[-1] <= 1       # how often chosen scored above rejected
    logged(trainer, "margin")
    assert changed(trainer.model, before)


def test_grpo_trainer_logs_the_reward_of_its_generations(tokenizer, tmp_path, monkeypatch):
    columns_seen = set()
    batches = []   # (rows, distinct prompts) of each batch generation was asked for, and whether it shared a cache
    real = generation.shared_prompt_cache

    def spy(model, input_ids, attention_mask):
        cache = real(model, input_ids, attention_mask)
        batches.append((len(input_ids), len(torch.unique(input_ids, dim=0)), cache is not None))
        return cache

    monkeypatch.setattr(generation, "shared_prompt_cache", spy)

    def near_twenty_characters(prompts, completions, **columns):   # a trivial reward: answer length
        columns_seen.update(columns)
        return [-abs(len(c[0]["content"]) - 20) / 20 for c in completions]

    prompts = Dataset.from_list(grpo.prompt_rows(data.load_task("arithmetic", "train", limit=2)))
    model = load_model(profile=TINY)
    before = weights(model)
    trainer = grpo.grpo_trainer(model, tokenizer, TINY, "grpo", tmp_path, prompts, near_twenty_characters,
                                num_generations=2, max_completion_length=12, learning_rate=1e-3, **TWO_STEPS)
    assert trainer.args.beta == 0.0 and trainer.ref_model is None   # TRL's default: no KL term, no reference
    trainer.train()
    logged(trainer, "loss")
    assert all(r <= 0 for r in logged(trainer, "reward"))
    assert max(logged(trainer, "reward_std")) > 0          # answers differed, so some advantages were not zero
    assert "answer" in columns_seen                        # dataset columns reach the reward function
    assert changed(trainer.model, before)
    assert batches and all(shared and distinct * 2 == rows for rows, distinct, shared in batches), batches   # ready()


def _checkpointed_trainers(tokenizer, pairs, output_dir):
    """The trainers of rungs 02-08 as the gpu profile builds them -- activation checkpointing on, LoRA where the
    gpu recipe takes an adapter -- but on the tiny model and the CPU, two steps each."""
    from shared.training.lora import lora_config

    prompts = Dataset.from_list(grpo.prompt_rows(data.load_task("arithmetic", "train", limit=2)))

    def length_reward(prompts, completions, **columns):
        return [-abs(len(c[0]["content"]) - 20) / 20 for c in completions]

    steps = {**TWO_STEPS, "activation_checkpointing": True}
    sampled = dict(num_generations=2, max_completion_length=12, learning_rate=1e-3)
    return {
        "sft": lambda: sft_trainer(load_model(profile=TINY), tokenizer, TINY, "sft", output_dir, examples_per_task=4,
                                   **steps),
        "sft, LoRA": lambda: sft_trainer(load_model(profile=TINY), tokenizer, TINY, "lora", output_dir,
                                         examples_per_task=4, peft_config=lora_config(r=8), **steps),
        "dpo, LoRA": lambda: preference.dpo_trainer(load_model(profile=TINY), tokenizer, TINY, "dpo", output_dir,
                                                    preference.preference_dataset(pairs), peft_config=lora_config(r=8),
                                                    learning_rate=1e-3, **steps),
        "reward": lambda: preference.reward_trainer(preference.load_reward_model(TINY), tokenizer, TINY, "reward",
                                                    output_dir, preference.preference_dataset(pairs), **steps),
        "grpo": lambda: grpo.grpo_trainer(load_model(profile=TINY), tokenizer, TINY, "grpo", output_dir, prompts,
                                          length_reward, **sampled, **steps),
        "grpo, beta > 0": lambda: grpo.grpo_trainer(load_model(profile=TINY), tokenizer, TINY, "grpo", output_dir,
                                                    prompts, length_reward, beta=0.04, **sampled, **steps),
    }


@pytest.mark.parametrize("kind", ["sft", "sft, LoRA", "dpo, LoRA", "reward", "grpo", "grpo, beta > 0"])
def test_every_trainer_trains_with_the_gpu_profiles_activation_checkpointing(kind, tokenizer, town_pairs, tmp_path):
    # The tiny profile trains without it; the gpu profile's stages all turn it on. A GPU is scarce: a trainer that
    # breaks with it (an adapter whose inputs need grads, generation without a cache) should fail here first.
    assert all(PROFILES["gpu"].train(stage)["activation_checkpointing"] for stage in ("sft", "dpo", "reward", "grpo"))
    trainer = _checkpointed_trainers(tokenizer, town_pairs, tmp_path)[kind]()
    trained = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    assert trainer.model.is_activation_checkpointing
    logged(trainer, "loss")
    assert any(not torch.equal(p.detach(), trained[name]) for name, p in trainer.model.named_parameters()
               if p.requires_grad)


def test_a_step_tracker_measures_at_the_start_every_few_steps_and_at_the_end():
    measured = []

    def measure(model, step):
        measured.append(step)
        return {"accuracy": step / 10}

    def run(tracker, steps):
        model, state = torch.nn.Linear(1, 1), SimpleNamespace(global_step=0)
        tracker.on_train_begin(None, state, None, model=model)
        for state.global_step in range(1, steps + 1):
            tracker.on_step_end(None, state, None, model=model)
        tracker.on_train_end(None, state, None, model=model)
        assert model.training   # put back in training mode
        return [point["step"] for point in tracker.points]

    first = grpo.step_tracker(measure, every=2)
    assert run(first, 5) == [0, 2, 4, 5] and measured == [0, 2, 4, 5]
    # a second run from the same starting policy takes the first's step-0 point instead of measuring it again
    second = grpo.step_tracker(measure, every=2, start=first.points[0])
    assert run(second, 4) == [0, 2, 4] and measured == [0, 2, 4, 5, 2, 4]
    assert second.points[0] == {"step": 0, "accuracy": 0.0} and second.points[0] is not first.points[0]


def test_a_bar_is_drawn_for_many_steps_and_never_for_one(monkeypatch):
    """A cell that scores eight pairs one batch each would otherwise leave eight bars that said nothing."""
    from shared.progress import progress

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("FT_QUIET", "0")
    assert not progress(range(3)).disable
    assert progress(range(1)).disable and progress([]).disable
    assert not progress(i for i in range(1)).disable   # a generator's length is unknown: drawn
    monkeypatch.setenv("FT_QUIET", "1")
    assert progress(range(3)).disable


def test_beta_labels_of_runs_a_hair_apart_do_not_overlap():
    from shared import plots

    runs = [{"beta": beta, "kl": kl, "abstains_when_unrecorded": 0.96, "right_when_recorded": 0.95}
            for beta, kl in ((0.02, 57.6), (0.1, 61.7), (0.5, 61.65))]
    figure = plots.beta_sweep(runs)
    labels = {text.get_text(): text.xyann[1] for text in figure.axes[0].texts}
    assert labels == {"beta 0.02": 6, "beta 0.5": 6, "beta 0.1": 15}   # the later of the close pair, stacked
