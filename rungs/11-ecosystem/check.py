"""Checker for rung 11 (the ecosystem): `make check RUNG=11 [NOTEBOOK=path]`.

It runs a copy of the notebook, then verifies rather than trusts:
* `trl_cli_config`, `axolotl_config` and `llamafactory_config` are given recipes, models and folders the notebook
  never uses, and every key that carries the recipe is compared with what the tool reads;
* `memory_per_gpu` is tested on model sizes, GPU counts and stages the notebook never uses;
* every run's saved config carries this profile's recipe and the course's training data (rewritten here and
  compared); every run's model is reloaded and scored again on every held-out question: TRL's Python API and at
  least one tool run from a config must pass the mark, and none of the models is another's copy;
* the one- and two-process runs had the same global batch and the same losses;
* five tool choices are compared with the key; the written answer is flagged for an instructor.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere, even before `pip install -e`

from shared.checking import CheckFailed, Context, inside, main, read_json, refusal, require  # noqa: E402
from shared.checking import require_key, require_measured, same_setting  # noqa: E402
from shared.checking.artefacts import copied_from  # noqa: E402
from shared.checking.figures import AGREEMENT  # noqa: E402
from shared.checking.guards import Forbidden  # noqa: E402
from shared.numbers import is_finite_number  # noqa: E402

RUNG = "11"
RUNG_FOLDER = "11-ecosystem"
# Measured (tiny profile, the solution, seeds 0 / 1 / 2), the mean held-out accuracy over rung 02's three tasks:
# TRL's Python API and command line 78.5 / 78.7 / 88.0%, Axolotl 91.3 / 87.8 / 87.4%, LLaMA-Factory 78.5 / 78.7 /
# 87.7%; the base model 0%. Axolotl without eot_tokens: 27% (closed questions 0%).
MEAN_AT_LEAST = 0.7            # each run's mean held-out accuracy
DDP_LOSSES_WITHIN = 1e-3       # one process against two, step by step (measured: 1e-6)
CONFIG_RUNS = ("trl-cli", "axolotl", "llamafactory")
TITLES = {"trl-python": "TRL (Python API)", "trl-cli": "TRL (command line)", "axolotl": "Axolotl",
          "llamafactory": "LLaMA-Factory"}
KEY = {"1": ("TRL", "a new loss is a trainer subclass in TRL's Python API, where every line of it is yours to read"),
       "2": ("Axolotl", "one reviewed YAML per run, with packing and FSDP/DeepSpeed switched on from it"),
       "3": ("Unsloth", "its kernels make single-GPU LoRA and QLoRA faster and lighter"),
       "4": ("LLaMA-Factory", "its web UI (LlamaBoard) and its hundreds of registered models need no code"),
       "5": ("torchtune", "its recipes are plain PyTorch training loops, no Trainer, meant to be copied and edited")}
TOOLS = ("TRL", "Axolotl", "Unsloth", "LLaMA-Factory", "torchtune")


def check(ctx: Context) -> None:
    ctx.run_notebook()
    check_graded(ctx)
    ctx.from_the_run(verify_outputs)
    ctx.review("written answer: which tool for your own fine-tune", ctx.answers().get("which-tool"),
               hint="Write a few sentences of your own at the end of section 8.")


# -- the graded functions ------------------------------------------------------------------------------------
def unseen_cases() -> list[tuple[dict, dict]]:
    """Recipes (under TRL's names, warm-up as a fraction as the course's recipes give it) and paths the notebook
    never uses: a GPU recipe in bf16 with accumulation and checkpointing, a CPU one, an fp16 one."""
    return [
        (dict(learning_rate=2e-5, num_train_epochs=3, per_device_train_batch_size=4, gradient_accumulation_steps=4,
              warmup_steps=0.1, lr_scheduler_type="linear", activation_checkpointing=True, max_length=1024,
              seed=7, use_cpu=False, bf16=True, fp16=False),
         dict(base_model="Qwen/Qwen2.5-0.5B", folder="/data/runs/qwen", end_of_turn="<|im_end|>")),
        (dict(learning_rate=0.001, num_train_epochs=2, per_device_train_batch_size=16, gradient_accumulation_steps=1,
              warmup_steps=0.03, lr_scheduler_type="cosine", activation_checkpointing=False, max_length=128,
              seed=123, use_cpu=True, bf16=False, fp16=False),
         dict(base_model="/models/tiny", folder="/tmp/elsewhere", end_of_turn="<|end|>")),
        (dict(learning_rate=5e-5, num_train_epochs=1, per_device_train_batch_size=2, gradient_accumulation_steps=8,
              warmup_steps=0.0, lr_scheduler_type="constant", activation_checkpointing=True, max_length=2048,
              seed=1, use_cpu=False, bf16=False, fp16=True),
         dict(base_model="meta-llama/Llama-3.2-1B", folder="/scratch/llama", end_of_turn="<|eot_id|>")),
    ]


def expected_trl_cli(recipe: dict, model: str, data: str, output_dir: str) -> dict:
    return {"model_name_or_path": model, "dataset_name": data, "output_dir": output_dir, **recipe,
            "completion_only_loss": True}


def expected_axolotl(recipe: dict, model: str, data: str, output_dir: str, end_of_turn: str) -> dict:
    return {"base_model": model, "datasets.0.path": data, "datasets.0.type": "chat_template",
            "chat_template": "tokenizer_default", "eot_tokens": [end_of_turn], "train_on_inputs": (False, None),
            "output_dir": output_dir, "sequence_len": recipe["max_length"],
            "micro_batch_size": recipe["per_device_train_batch_size"],
            "gradient_accumulation_steps": recipe["gradient_accumulation_steps"],
            "num_epochs": recipe["num_train_epochs"], "learning_rate": recipe["learning_rate"],
            "lr_scheduler": recipe["lr_scheduler_type"], "warmup_ratio": recipe["warmup_steps"],
            "seed": recipe["seed"], "bf16": recipe["bf16"], "fp16": recipe["fp16"],
            "gradient_checkpointing": recipe["activation_checkpointing"]}


def expected_llamafactory(recipe: dict, model: str, dataset_dir: str, output_dir: str) -> dict:
    return {"model_name_or_path": model, "stage": "sft", "do_train": True, "finetuning_type": "full",
            "dataset": "course_sft", "dataset_dir": dataset_dir, "cutoff_len": recipe["max_length"],
            "train_on_prompt": (False, None), "output_dir": output_dir,
            "per_device_train_batch_size": recipe["per_device_train_batch_size"],
            "gradient_accumulation_steps": recipe["gradient_accumulation_steps"],
            "num_train_epochs": recipe["num_train_epochs"], "learning_rate": recipe["learning_rate"],
            "lr_scheduler_type": recipe["lr_scheduler_type"], "warmup_ratio": recipe["warmup_steps"],
            "seed": recipe["seed"], "bf16": recipe["bf16"], "fp16": recipe["fp16"],
            "disable_gradient_checkpointing": not recipe["activation_checkpointing"]}


WHY = {  # what a wrong value of a key most likely means, shown with the failure
    "eot_tokens": "the token that ends a turn in the model's chat template, or the model never learns to stop",
    "warmup_ratio": "TRL's warmup_steps below 1 is a fraction of the steps: the other tools call that warmup_ratio",
    "disable_gradient_checkpointing": "LLaMA-Factory checkpoints unless told not to: the opposite of the recipe's "
                                      "activation_checkpointing",
    "train_on_inputs": "the loss on the answer only", "train_on_prompt": "the loss on the answer only",
    "completion_only_loss": "the loss on the completion only, written so a reader sees it",
}


def lookup(config: dict, dotted: str):
    """A key of a config, `datasets.0.path` reaching into lists and dicts; KeyError when absent."""
    value = config
    for part in dotted.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def require_config(config, expected: dict, case: str) -> None:
    """`config` is a plain dict YAML can write, holding every expected key and value (a tuple: any of them, None
    meaning the key may be left out)."""
    import yaml

    require(isinstance(config, dict), f"{case}: must return a dict (the YAML's keys and values), returned "
                                      f"{type(config).__name__}")
    try:
        yaml.safe_dump(config)
    except yaml.YAMLError as error:
        raise CheckFailed(f"{case}: YAML cannot write it ({str(error).splitlines()[0]}): use plain str, int, "
                          "float, bool, lists and dicts (str(path) for a Path)") from error
    for key, value in expected.items():
        allowed = value if isinstance(value, tuple) else (value,)
        try:
            got = lookup(config, key)
        except (KeyError, IndexError, TypeError, ValueError):
            require(None in allowed, f"{case}: no {key!r}" + (f" ({WHY[key]})" if key in WHY else ""))
            continue
        require(any(same_setting(got, v) for v in allowed if v is not None),
                f"{case}: {key} is {got!r}, expected {allowed[0]!r}" + (f" ({WHY[key]})" if key in WHY else ""))


def check_config_function(function, expected, with_end_of_turn: bool = False) -> str:
    for number, (recipe, where) in enumerate(unseen_cases(), 1):
        data, output_dir = f"{where['folder']}/data", f"{where['folder']}/model"
        extra = (where["end_of_turn"],) if with_end_of_turn else ()
        config = function(dict(recipe), where["base_model"], data, output_dir, *extra)
        require_config(config, expected(recipe, where["base_model"], data, output_dir, *extra),
                       f"recipe {number} ({recipe['learning_rate']:g}, {recipe['lr_scheduler_type']}, "
                       f"{'bf16' if recipe['bf16'] else 'fp16' if recipe['fp16'] else 'fp32'})")
    return f"{len(unseen_cases())} recipes, models and folders the notebook does not use"


def check_memory(memory_per_gpu) -> str:
    cases = [(1.3e9, 4), (70e9, 64), (123_456_789, 3), (7e9, 1)]
    for parameters, gpus in cases:
        for stage in (0, 1, 2, 3):
            got = memory_per_gpu(parameters, gpus, stage)
            expected = {"weights": 2 * parameters / (gpus if stage >= 3 else 1),
                        "gradients": 2 * parameters / (gpus if stage >= 2 else 1),
                        "optimizer": 12 * parameters / (gpus if stage >= 1 else 1)}
            require(isinstance(got, dict) and set(got) == set(expected),
                    f"{parameters:g} parameters, {gpus} GPUs, stage {stage}: must return a dict with the keys "
                    f"weights, gradients, optimizer; returned {got!r}")
            for kind, value in expected.items():
                require(is_finite_number(got[kind]) and abs(got[kind] - value) <= 1e-6 * value + 1e-9,
                        f"{parameters:g} parameters on {gpus} GPUs at stage {stage}: {kind} {got[kind]!r} bytes, "
                        f"expected {value:,.0f} (2 bytes a parameter of weights, 2 of gradients, 12 of optimiser "
                        "state; stage 1 splits the optimiser state, 2 the gradients too, 3 the weights too)")
    for arguments in ((7e9, 8, 4), (7e9, 0, 1)):
        result = refusal(lambda: memory_per_gpu(*arguments))
        require(not result, f"memory_per_gpu{arguments} {result}: raise ValueError (no stage 4; no GPUs)")
    return f"{len(cases)} model sizes and GPU counts at every stage; stage 4 and no GPUs refused"


GRADED = ("trl_cli_config", "axolotl_config", "llamafactory_config", "memory_per_gpu")
# What each function is compared with lives in this file: a function that loads it and answers with it is refused.
FORBIDDEN = {name: Forbidden("the checker's expectations are what it is checked against",
                             files=("11-ecosystem/check.py",)) for name in GRADED}


def check_graded(ctx: Context) -> None:
    graded = ctx.graded(list(GRADED), forbidden=FORBIDDEN)
    ctx.criterion("trl_cli_config gives `trl sft` the recipe under TRL's names, on unseen recipes",
                  lambda: check_config_function(graded["trl_cli_config"], expected_trl_cli),
                  hint="model_name_or_path, dataset_name, output_dir, every key of the recipe as it is, and "
                       "completion_only_loss: True.")
    ctx.criterion("axolotl_config gives Axolotl the recipe under its names, the answers and their end trained",
                  lambda: check_config_function(graded["axolotl_config"], expected_axolotl, with_end_of_turn=True),
                  hint="datasets: [{path, type: chat_template, ...}], chat_template: tokenizer_default, eot_tokens: "
                       "[end_of_turn]; micro_batch_size, num_epochs, sequence_len, lr_scheduler, warmup_ratio, "
                       "gradient_checkpointing.")
    ctx.criterion("llamafactory_config gives LLaMA-Factory the recipe under its names, a full SFT",
                  lambda: check_config_function(graded["llamafactory_config"], expected_llamafactory),
                  hint="stage: sft, do_train: true, finetuning_type: full, dataset: course_sft, dataset_dir, "
                       "cutoff_len, warmup_ratio, disable_gradient_checkpointing = not activation_checkpointing.")
    ctx.criterion("memory_per_gpu splits weights, gradients and optimiser state by ZeRO stage, on unseen sizes",
                  lambda: check_memory(graded["memory_per_gpu"]),
                  hint="16 bytes a parameter: 2 weights, 2 gradients, 12 optimiser state; stage 1 divides the "
                       "optimiser state by the GPUs, stage 2 the gradients too, stage 3 the weights too.")


# -- what the run saved ----------------------------------------------------------------------------------
def verify_outputs(ctx: Context) -> None:
    saved = ctx.collect("the metrics and every run were saved, in this rung's outputs", lambda: read_saved(ctx),
                        hint="Run every section, then section 9; keep the models where the notebook saved them.")
    ctx.criterion("every saved config carries this profile's recipe and the course's training data",
                  lambda: check_saved_configs(saved, ctx),
                  hint="Run sections 2-4 again with your corrected functions: a config saved before a fix still "
                       "holds the old values.")
    measured = ctx.collect("every run's model reloads, and the checker scores it again on every held-out question",
                           lambda: measure_runs(saved, ctx),
                           hint="Keep each model where its run saved it; do not move or edit them.")
    ctx.criterion(f"TRL's Python API and a tool run from a config each reach {MEAN_AT_LEAST:.0%} held out",
                  lambda: check_scores(saved, measured),
                  hint="A config that runs but scores low usually trains the wrong tokens: the prompt too, or not the "
                       "end of the answer (Axolotl: eot_tokens).")
    ctx.criterion("the saved figures agree with the models", lambda: check_agree(saved, measured),
                  hint="metrics.json must hold what the notebook measured; a hand edit shows here.")
    ctx.criterion("one process and two: the same global batch, the same losses",
                  lambda: check_ddp(saved),
                  hint="Run section 6 as it is: both launches with --global-batch 8.")
    ctx.criterion("your five tool choices", lambda: check_tools(saved),
                  hint="The lesson's when-to-use table: a new loss in Python (TRL), team YAML at scale (Axolotl), one "
                       "GPU fast (Unsloth), no code and a web UI (LLaMA-Factory), plain PyTorch loops (torchtune).")


def read_saved(ctx: Context) -> dict:
    outputs = ctx.outputs()
    metrics = read_json(outputs / "metrics.json", "metrics")
    runs = metrics.get("runs")
    require(isinstance(runs, dict) and isinstance(runs.get("trl-python"), dict),
            "metrics.json must hold the runs, TRL's Python API's among them (section 9 saves them)")
    unknown = sorted(set(runs) - set(TITLES))
    require(not unknown, f"metrics.json names runs this rung does not make: {', '.join(unknown)}")
    require(any(name in runs for name in CONFIG_RUNS),
            "no run from a config was saved: section 2 (TRL's command line) runs everywhere")
    folders = {}
    for name, run in runs.items():
        model = run.get("model") if isinstance(run, dict) else None
        require(isinstance(model, str), f"the {TITLES[name]} run names no model folder")
        folder = outputs / model
        require(inside(folder, outputs), f"the {TITLES[name]} run's model {model} is outside this rung's outputs")
        require((folder / "config.json").is_file(), f"the {TITLES[name]} model ({model}) is not there: run its "
                                                    "section again")
        copied = copied_from(folder, ctx.outputs_root, outputs)
        require(copied is None, f"the {TITLES[name]} model's weights are a copy of {copied}: train it here")
        folders[name] = folder
    weights = {name: _weights_key(folder) for name, folder in folders.items()}
    # TRL's command line runs TRL's Python API's trainer with the same seed: the same weights, bit for bit.
    same = [(a, b) for a in weights for b in weights
            if a < b and weights[a] == weights[b] and {a, b} != {"trl-cli", "trl-python"}]
    require(not same, "the same weights saved as two runs: " + ", ".join(f"{TITLES[a]} and {TITLES[b]}"
                                                                        for a, b in same))
    if "trl-cli" in folders:
        require(any(_where(said, folders["trl-cli"]) == said for said in _trainer_output_dirs(folders["trl-cli"])),
                "the TRL command-line model was not saved by a trainer writing to its own folder (its "
                "training_args.bin names another): run section 2's command rather than copying a model there")
    return {**metrics, "folders": folders}


def _trainer_output_dirs(folder: Path) -> set[str]:
    """The strings in the trainer arguments a Trainer saved with its model (training_args.bin), read from the
    pickle's opcodes without unpickling it: its output_dir is one of them."""
    import io
    import pickletools
    import zipfile

    try:
        with zipfile.ZipFile(folder / "training_args.bin") as archive:
            pickle = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
        return {arg for _, arg, _ in pickletools.genops(io.BytesIO(pickle)) if isinstance(arg, str)}
    except (OSError, zipfile.BadZipFile, StopIteration, ValueError):
        return set()


def _weights_key(folder: Path):
    from shared.checking.integrity import content_key

    return content_key(sorted(folder.glob("*.safetensors")))[0] if list(folder.glob("*.safetensors")) else None


def check_saved_configs(saved: dict, ctx: Context) -> str:
    from shared.ecosystem.runs import recipe

    require(bool(saved), "needs the saved runs (see above)")
    outputs = ctx.outputs()
    expected_recipe = recipe(ctx.profile)
    said = saved.get("recipe") or {}
    differ = {key: said.get(key) for key, value in expected_recipe.items() if not same_setting(said.get(key), value)}
    require(not differ, f"metrics.json's recipe differs from the {ctx.profile.name} profile's: "
                        + ", ".join(f"{k} {v!r}, expected {expected_recipe[k]!r}" for k, v in differ.items()))
    check_training_data(outputs / "data", ctx.profile)
    checked = []
    for name in CONFIG_RUNS:
        if name not in saved["runs"]:
            continue
        path = outputs / "runs" / name / "config.yaml"
        require(path.is_file(), f"the {TITLES[name]} run's config.yaml is missing")
        config = _read_yaml(path)
        model_folder = saved["folders"][name]
        if name == "trl-cli":
            expected = expected_trl_cli(expected_recipe, config.get("model_name_or_path"),
                                        _where(config.get("dataset_name"), outputs / "data" / "prompt-completion"),
                                        _where(config.get("output_dir"), model_folder))
        elif name == "axolotl":
            expected = expected_axolotl(expected_recipe, config.get("base_model"),
                                        _where(_dataset_path(config), outputs / "data" / "conversations" /
                                               "train.jsonl"),
                                        _where(config.get("output_dir"), model_folder), saved.get("end_of_turn"))
        else:
            expected = expected_llamafactory(expected_recipe, config.get("model_name_or_path"),
                                             _where(config.get("dataset_dir"), outputs / "data" / "conversations"),
                                             _where(config.get("output_dir"), model_folder))
        require_config(config, expected, f"{TITLES[name]}, config.yaml")
        base = config.get("base_model", config.get("model_name_or_path"))
        require(_is_the_base(base, outputs, ctx.profile), f"{TITLES[name]}, config.yaml: trains {base}, not the "
                                                          f"profile's base model ({ctx.profile.base_model})")
        lines = saved["runs"][name].get("config_lines")
        from shared.ecosystem.runs import config_lines
        require(lines == config_lines(path), f"metrics.json gives {TITLES[name]} {lines!r} lines of config; "
                                             f"config.yaml has {config_lines(path)}")
        checked.append(TITLES[name])
    from shared.ecosystem.runs import end_of_turn
    from shared.models import load_tokenizer
    require(saved.get("end_of_turn") == end_of_turn(load_tokenizer(profile=ctx.profile)),
            f"metrics.json's end of turn is {saved.get('end_of_turn')!r}, not the chat template's")
    return f"{', '.join(checked)}: the recipe, the base model, the data and the model folder"


def _where(said, expected: Path) -> str:
    """A path a saved config names, when it is `expected` -- the same place in this rung's outputs, wherever the
    outputs folder lay when the notebook ran (an instructor may check a copy) -- or else `expected` itself, which the
    comparison then shows."""
    tail = "/".join(expected.parts[-_depth(expected):])
    if isinstance(said, str) and said.replace("\\", "/").rstrip("/").endswith("/" + tail):
        return said
    return str(expected)


def _depth(path: Path) -> int:
    """How many trailing parts of `path` lie inside the outputs folder (the rung's folder and below)."""
    parts = path.parts
    return len(parts) - parts.index(RUNG_FOLDER)


def _dataset_path(config: dict):
    try:
        return config["datasets"][0]["path"]
    except (KeyError, IndexError, TypeError):
        return None


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise CheckFailed(f"{path.name} is not valid YAML: {str(error).splitlines()[0]}") from error
    require(isinstance(config, dict), f"{path} holds no keys")
    return config


def _is_the_base(name, outputs: Path, profile) -> bool:
    """The profile's base, or the copy of it for transformers 4 the notebook made under its outputs."""
    if not isinstance(name, str):
        return False
    if name == str(profile.base_model):
        return True
    copy = outputs / "data" / "base-for-transformers4"
    base = Path(profile.base_model)
    return (_where(name, copy) == name and base.is_dir() and (copy / "model.safetensors").is_file()
            and (copy / "model.safetensors").read_bytes() == (base / "model.safetensors").read_bytes())


def check_training_data(folder: Path, profile) -> None:
    """The data every tool read is the course's training set, in both shapes (rewritten here and compared)."""
    from shared.ecosystem.runs import write_datasets
    from shared.world import data
    import tempfile

    examples = data.mixed("train", limit_per_task=profile.train("ecosystem")["examples_per_task"])
    with tempfile.TemporaryDirectory() as scratch:
        expected = write_datasets(examples, Path(scratch))
        for shape, file in (("prompt-completion", expected["prompt_completion"] / "train.jsonl"),
                            ("conversations", expected["conversations"])):
            saved = folder / file.relative_to(scratch)
            require(saved.is_file() and saved.read_bytes() == file.read_bytes(),
                    f"the training data the tools read ({saved.relative_to(folder.parent)}) is not the course's "
                    f"training set: write it with write_datasets and do not edit it")


def measure_runs(saved: dict, ctx: Context) -> dict:
    require(bool(saved), "needs the saved runs (see above)")
    return {name: ctx.measure([folder], lambda folder=folder: _score(folder, ctx.profile))
            for name, folder in saved["folders"].items()}


def _score(folder: Path, profile) -> dict:
    from shared.evaluation import evals
    from shared.models import load_model, load_tokenizer

    try:
        model = load_model(folder, profile=profile)
    except Exception as error:
        raise CheckFailed(f"the model in {folder} does not load: {type(error).__name__}: {str(error)[:160]}") from error
    results = evals.evaluate_model(model, load_tokenizer(profile=profile), split="heldout", limit=profile.eval_limit)
    return evals.accuracies(results)


def _mean(accuracy: dict) -> float:
    return sum(accuracy.values()) / len(accuracy)


def check_scores(saved: dict, measured: dict) -> str:
    measured = require_measured(measured)
    shown = "; ".join(f"{TITLES[name]} {_mean(accuracy):.0%}" for name, accuracy in measured.items())
    low = [TITLES[name] for name, accuracy in measured.items() if _mean(accuracy) < MEAN_AT_LEAST]
    require(not low, f"{shown}: {', '.join(low)} below {MEAN_AT_LEAST:.0%}")
    require(any(name in measured for name in CONFIG_RUNS), f"{shown}: no tool run from a config")
    absent = [TITLES[name] for name in CONFIG_RUNS if name not in measured]
    return f"mean held-out accuracy: {shown}" + (f" ({' and '.join(absent)} not run: their environments are not "
                                                 "built -- `make ecosystem`)" if absent else "")


def check_agree(saved: dict, measured: dict) -> str:
    measured = require_measured(measured)
    for name, accuracy in measured.items():
        said = saved["runs"][name].get("accuracy") or {}
        for task, value in accuracy.items():
            figure = said.get(task)
            require(is_finite_number(figure) and abs(figure - value) <= AGREEMENT,
                    f"metrics.json says {TITLES[name]} answers {task} {figure!r}; scored again, {value:.1%}")
        for key in ("seconds", "peak_mb"):
            value = saved["runs"][name].get(key)
            require(is_finite_number(value) and value > 0, f"{TITLES[name]}'s {key} is {value!r}: a measured "
                                                           "figure, above 0")
    return f"within {AGREEMENT:.0%}, {len(measured)} runs"


def check_ddp(saved: dict) -> str:
    require(bool(saved), "needs the saved metrics (see above)")
    ddp = saved.get("ddp") or {}
    one, two = ddp.get("one") or {}, ddp.get("two") or {}
    require(one.get("processes") == 1 and two.get("processes") == 2,
            f"the runs had {one.get('processes')!r} and {two.get('processes')!r} processes: expected 1 and 2")
    require(one.get("global_batch") == two.get("global_batch") and two.get("per_process_batch") ==
            two.get("global_batch", 0) // 2, "the two runs must share the global batch, each of the two processes "
                                             "taking half of it")
    require(two.get("backend") in ("gloo", "nccl"), f"the two processes talked over {two.get('backend')!r}: "
                                                    "expected gloo (CPU) or NCCL (GPU)")
    a, b = one.get("losses") or [], two.get("losses") or []
    require(len(a) == len(b) >= 10, f"{len(a)} and {len(b)} losses: the same number of steps, at least 10")
    gap = max(abs(x - y) for x, y in zip(a, b))
    require(gap <= DDP_LOSSES_WITHIN, f"the losses differ by up to {gap:.2g} (at most {DDP_LOSSES_WITHIN:g})")
    require(max(a) - min(a) > 0.1, "the loss did not move: these runs did not train")
    return f"{len(a)} steps over {two['backend']}, losses within {gap:.1g}"


def check_tools(saved: dict) -> str:
    require(bool(saved), "needs the saved metrics (see above)")
    return require_key(saved.get("tool_for") or {}, KEY, TOOLS, "situation")


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG))
