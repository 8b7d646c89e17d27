"""Checker for the capstone: `make check RUNG=capstone [NOTEBOOK=path]`.

It runs a copy of the notebook, then verifies the model card rather than trusting it:
* the card has the Hugging Face header (base model, `model-index` with every figure) and every section, in order;
* the held-out split the notebook saved is the task's own, example for example, and shares nothing with the
  training data it saved;
* the saved model (or adapter, on the base the card names) reloads, and the checker measures it and the base again
  with rung 09's harness and on the task's own held-out split (not the saved copy): every figure in the card's
  header and tables must be the one measured here, every verdict the one the paired test gives;
* the fine-tune learned its task (a real gain, p < 0.05);
* the two written sections are flagged for an instructor.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere, even before `pip install -e`

from shared.checking import CheckFailed, Context, inside, main, read_json, require, require_measured  # noqa: E402
from shared.checking.artefacts import copied_from  # noqa: E402
from shared.checking.figures import AGREEMENT  # noqa: E402
from shared.numbers import is_finite_number  # noqa: E402

RUNG = "12"
PERPLEXITY_AGREEMENT = 0.02   # the card's perplexity against the one measured here
METHODS = ("sft", "lora", "qlora")


def check(ctx: Context) -> None:
    ctx.run_notebook()
    ctx.from_the_run(verify_outputs)


def verify_outputs(ctx: Context) -> None:
    from shared.capstone.card import WRITTEN

    saved = ctx.collect("the results and the model card were saved", lambda: read_saved(ctx),
                        hint="Run every section; section 6 writes results.json and the card (model/README.md).")
    ctx.criterion("the card has the Hub's header and every section, in order", lambda: check_sections(saved),
                  hint="Write the card with card.model_card(results), then edit only the two written sections.")
    ctx.criterion("the held-out split is the task's own, and training never saw it", lambda: check_split(saved, ctx),
                  hint="Hold out the task's `heldout` split and train on `train` (and other tasks): nothing shared.")
    measured = ctx.collect("the model reloads on the base the card names, and is measured again",
                           lambda: measure(saved, ctx),
                           hint="Keep the model (or adapter) and its tokenizer in OUT / 'model', beside the card.")
    ctx.criterion("every figure and verdict on the card is the one measured here", lambda: check_figures(saved, measured),
                  hint="The card must come from what the notebook measured; a figure typed in by hand shows here.")
    ctx.criterion("the fine-tune learned its task: a real gain on the held-out split",
                  lambda: check_learned(measured),
                  hint="A change is real when McNemar's test gives p < 0.05: train longer, or on more examples.")
    sections = (saved or {}).get("sections", {})
    for section in WRITTEN:
        ctx.review(f"written answer: the card's {section}", sections.get(section),
                   hint=f"Write the card's '{section}' section in your own words (section 6).")


def read_saved(ctx: Context) -> dict:
    from shared.capstone.card import read_card

    outputs = ctx.outputs()
    results = read_json(outputs / "results.json", "results")
    folder = outputs / str(results.get("model_folder", "model"))
    require(inside(folder, outputs), f"results.json names {folder} as the model: the checker uses only a model in "
                                     "this capstone's outputs folder")
    card_path = folder / "README.md"
    require(card_path.is_file(), f"no model card: {card_path.relative_to(outputs.parent)} is missing")
    try:
        header, sections = read_card(card_path.read_text())
    except ValueError as error:
        raise CheckFailed(f"the card cannot be read: {error}") from error
    require(results.get("method") in METHODS, f"results.json's method is {results.get('method')!r}: one of "
                                              f"{', '.join(METHODS)}")
    copied = copied_from(folder, ctx.outputs_root, outputs)
    require(copied is None, f"the model's weights are a copy of {copied}: train it here")
    return {"results": results, "folder": folder, "header": header, "sections": sections, "card": card_path}


def check_sections(saved: dict) -> str:
    from shared.capstone.card import SECTIONS

    require(bool(saved), "needs the card (see above)")
    header, sections = saved["header"], saved["sections"]
    for key in ("base_model", "model-index"):
        require(key in header, f"the card's header has no {key!r}: the Hub reads it from there")
    missing = [section for section in SECTIONS if not sections.get(section, "").strip()]
    require(not missing, f"the card has no (or an empty) {', '.join(repr(s) for s in missing)} section")
    order = [title for title in sections if title in SECTIONS]
    require(order == list(SECTIONS), f"the sections are in the order {order}; expected {list(SECTIONS)}")
    return f"{len(SECTIONS)} sections; base_model {header['base_model']}"


def check_split(saved: dict, ctx: Context) -> str:
    from shared.capstone.project import overlap, read_jsonl

    require(bool(saved), "needs the results (see above)")
    outputs, task = ctx.outputs(), saved["results"].get("task", {}).get("name")
    train_path, heldout_path = outputs / "data" / "train.jsonl", outputs / "data" / "heldout.jsonl"
    require(train_path.is_file() and heldout_path.is_file(), "the training and held-out data were not saved "
                                                             "(section 2 writes data/train.jsonl and heldout.jsonl)")
    train, heldout = read_jsonl(train_path), read_jsonl(heldout_path)
    official = task_heldout(task)
    require(sorted(e["id"] for e in heldout) == sorted(e["id"] for e in official),
            f"the held-out data is not the {task} task's heldout split ({len(heldout)} examples saved, "
            f"{len(official)} in the split)")
    by_id = {e["id"]: e for e in official}
    edited = [e["id"] for e in heldout if e != by_id[e["id"]]]
    require(not edited, f"saved held-out examples differ from the {task} task's own: {len(edited)} (e.g. "
                        f"{edited[0] if edited else ''}); the held-out figures are measured on the task's split")
    shared = overlap(train, heldout)
    require(shared == 0, f"{shared} held-out examples are in the training data: the held-out figure would "
                         "measure memory, not the task")
    said = saved["results"]["task"].get("overlap")
    require(said == 0, f"results.json says {said!r} examples are shared; counted here: 0")
    return f"{len(heldout)} held-out examples of {task}, none of them among {len(train)} training examples"


def task_heldout(task) -> list[dict]:
    """The course's own held-out split of the card's task."""
    from shared.world import data

    try:
        return data.load_task(task, "heldout")
    except (KeyError, ValueError, FileNotFoundError) as error:
        raise CheckFailed(f"the card's task {task!r} has no held-out split here: {error}") from error


def measure(saved: dict, ctx: Context) -> dict:
    require(bool(saved), "needs the results (see above)")
    results, folder = saved["results"], saved["folder"]
    profile = ctx.profile
    from shared.capstone.card import portable
    from shared.world import data

    base_model = saved["header"].get("base_model")
    require(base_model == portable(profile.base_model) and results.get("base_model") == profile.base_model,
            f"the card's base model is {base_model!r}; the {profile.name} profile's is "
            f"{portable(profile.base_model)}")
    adapter = (folder / "adapter_config.json").is_file()
    require(adapter == bool(results.get("adapter")), f"results.json says adapter={results.get('adapter')!r}, "
                                                    f"but {folder.name}/ {'holds' if adapter else 'holds no'} adapter")
    # On the task's own held-out split, never the copy the notebook saved (the criterion above compares them).
    task = results["task"]["name"]
    heldout, heldout_path = task_heldout(task), data.split_path(task, "heldout")
    # Measured once for the same weights and held-out data (the card beside the weights may change, not them).
    weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".json") and p.is_file())
    return {"tuned": ctx.measure([*weights, heldout_path],
                                 lambda: _measure_model(folder, adapter, results, heldout, profile),
                                 settings=(results.get("method"),)),
            "base": ctx.measure([heldout_path], lambda: _measure_model(None, False, results, heldout, profile),
                                settings=(profile.base_model, results["task"]["name"]))}


def _measure_model(folder, adapter: bool, results: dict, heldout: list[dict], profile) -> dict:
    from shared.capstone.project import target_scores
    from shared.evaluation import harness
    from shared.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(profile=profile)
    try:
        if folder is None:
            model = load_model(profile=profile)
        elif adapter:
            model = load_model(profile=profile, four_bit=results.get("method") == "qlora", adapter=folder)
        else:
            model = load_model(folder, profile=profile)
    except Exception as error:
        raise CheckFailed(f"the model in {folder} does not load: {type(error).__name__}: {str(error)[:160]}") from error
    report = harness.evaluate(model, tokenizer, "measured", limit=profile.eval_limit)
    return {"scores": report.scores, "target": target_scores(model, tokenizer, results["task"]["name"], heldout)}


def check_figures(saved: dict, measured: dict) -> str:
    from shared.capstone import card, project
    from shared.evaluation import harness

    measured = require_measured(measured)
    results = saved["results"]
    before = harness.Report("base", "heldout", measured["base"]["scores"])
    after = harness.Report("tuned", "heldout", measured["tuned"]["scores"])
    comparison = project.comparison(before, after)
    target = project.target_change(measured["base"]["target"], measured["tuned"]["target"])
    said = card.card_metrics(saved["header"])
    expected = {f"{results['task']['title']} (held out)": target["after"],
                **{harness.FIGURES[f][0]: row["after"] for f, row in comparison.items()}}
    for name, value in expected.items():
        figure = said.get(name)
        tolerance = PERPLEXITY_AGREEMENT if name == harness.FIGURES["perplexity"][0] else AGREEMENT
        require(is_finite_number(figure) and abs(figure - value) <= tolerance,
                f"the card's header says {name} {figure!r}; measured here, {value:.4g}")
    rows = {**{harness.FIGURES[f][0]: ((results.get("comparison") or {}).get(f) or {}, row)
               for f, row in comparison.items()},
            results["task"]["title"] + " (held out)": (results.get("target") or {}, target)}
    for name, (said_row, row) in rows.items():
        tolerance = PERPLEXITY_AGREEMENT if name == harness.FIGURES["perplexity"][0] else AGREEMENT
        for key in ("before", "after"):
            value = said_row.get(key)
            require(is_finite_number(value) and abs(value - row[key]) <= tolerance,
                    f"{name}: the card's {key} is {value!r}; measured here, {row[key]:.4g}")
        require(said_row.get("verdict") == row["verdict"], f"{name}: the card says {said_row.get('verdict')!r}; "
                                                           f"the paired test here gives {row['verdict']!r}")
    generated = card.model_card(results)
    _, regenerated = card.read_card(generated)
    edited = [section for section in card.SECTIONS if section not in card.WRITTEN
              and saved["sections"].get(section) != regenerated.get(section)]
    require(not edited, f"the card's {', '.join(repr(s) for s in edited)} section differs from what results.json "
                        "generates: generated sections are not edited by hand")
    return (f"{len(expected)} figures within {AGREEMENT:.0%} (perplexity {PERPLEXITY_AGREEMENT}); the task "
            f"{target['before']:.0%} -> {target['after']:.0%}")


def check_learned(measured: dict) -> str:
    from shared.capstone import project

    measured = require_measured(measured)
    target = project.target_change(measured["base"]["target"], measured["tuned"]["target"])
    require(target["verdict"] == "real gain", f"held out: {target['before']:.0%} -> {target['after']:.0%}, "
                                              f"p = {target['p_value']:.2g} ({target['verdict']})")
    return f"held out: {target['before']:.0%} -> {target['after']:.0%}, p = {target['p_value']:.2g}"


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG))
