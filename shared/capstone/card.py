"""The capstone's model card, written from the saved results -- never by hand -- in the Hugging Face format: a YAML
header (`model-index` holds every figure, which the Hub shows and the checker compares with the model) and the
sections a reader of a model card expects.

    card = model_card(results)           # results: what the capstone notebook saved (results.json)
    (folder / "README.md").write_text(card)
    read_card(card)                      # -> (header, sections): what the checker reads back

The figures come from rung 09's harness: every held-out figure of the base model and the fine-tune, the paired
95% interval of each change and its verdict, and the learner's own task on its held-out split.
"""

from __future__ import annotations

import re

import yaml

from shared.evaluation.harness import FIGURES

# Sections every card has, in order. The first two and the last are written by the learner (their text is flagged
# for an instructor); the rest are generated from the results.
SECTIONS = ("Intended use", "Model details", "Training data", "Training procedure", "Evaluation", "Forgetting",
            "Limitations and risks", "How to use")
WRITTEN = {"Intended use": "intended_use", "Limitations and risks": "limitations"}
FORGETTING = ("fact_recall", "perplexity")


def portable(base_model: str) -> str:
    """A base model as a card names it: a hub id as it is, the course's tiny base by its path in the course
    (`data/tiny-base`), never a path of one machine."""
    from pathlib import Path

    from shared.paths import REPO_ROOT

    path = Path(base_model)
    if path.is_absolute() and path.is_relative_to(REPO_ROOT):
        return path.relative_to(REPO_ROOT).as_posix()
    return base_model


def model_card(results: dict) -> str:
    """The card for one capstone run, from its results (see the capstone template for every key)."""
    header = yaml.safe_dump(_header(results), sort_keys=False, allow_unicode=True, width=100)
    body = [f"# {results['name']}", "",
            f"{results['summary']}", ""]
    for section in SECTIONS:
        body += [f"## {section}", "", _section(section, results).strip(), ""]
    return f"---\n{header}---\n\n" + "\n".join(body)


def _header(results: dict) -> dict:
    task = results["task"]
    metrics = [{"type": "accuracy", "name": f"{task['title']} (held out)", "value": results["target"]["after"]}]
    metrics += [{"type": "perplexity" if figure == "perplexity" else "accuracy", "name": FIGURES[figure][0],
                 "value": round(row["after"], 4)} for figure, row in results["comparison"].items()]
    return {"base_model": portable(results["base_model"]), "library_name": "peft" if results["adapter"] else "transformers",
            "tags": ["fine-tuning-course", "capstone", results["method"]],
            "model-index": [{"name": results["name"], "results": [{
                "task": {"type": "text-generation", "name": task["title"]},
                "dataset": {"name": task["name"], "type": task["name"], "split": "heldout"},
                "metrics": metrics}]}]}


def _section(section: str, results: dict) -> str:
    if section in WRITTEN:
        return results["written"][WRITTEN[section]]
    task, recipe = results["task"], results["recipe"]
    if section == "Model details":
        return (f"- **Base model:** `{portable(results['base_model'])}` ({results['profile']} profile)\n"
                f"- **Method:** {results['method']}" + (" (a LoRA adapter; load it on the base)" if results["adapter"]
                                                        else " (every weight)") + "\n"
                f"- **Seed:** {results['seed']}\n- **Trained in:** {results['train_seconds']:.0f} s")
    if section == "Training data":
        return (f"{task['description']}\n\n- **Task:** {task['title']} (`{task['name']}`)\n"
                f"- **Examples:** {task['train_examples']} for training, {task['heldout_examples']} held out; "
                f"{task['overlap']} of the held-out examples in the training set (the same id or prompt)\n"
                f"- **Source:** {task['source']}")
    if section == "Training procedure":
        rows = "\n".join(f"| `{key}` | {value} |" for key, value in recipe.items())
        return f"| setting | value |\n|---|---|\n{rows}"
    if section == "Evaluation":
        target = results["target"]
        lines = [f"On held-out data, by the course's harness (rung 09): 95% intervals from the bootstrap, "
                 f"changes tested pair by pair (McNemar's exact test; p < 0.05 is a real change).", "",
                 "| figure | base model | fine-tuned | change [paired 95% interval] | verdict |", "|---|---|---|---|---|",
                 f"| {task['title']} (held out) | {target['before']:.0%} | {target['after']:.0%} | "
                 f"{target['change'] * 100:+.0f} pts [{target['low'] * 100:+.0f}, {target['high'] * 100:+.0f}] | "
                 f"{target['verdict']} |"]
        lines += [_row(figure, row) for figure, row in results["comparison"].items() if figure not in FORGETTING]
        return "\n".join(lines)
    if section == "Forgetting":
        lines = ["What the fine-tune may have erased: the base model's facts recalled, and perplexity on held-out "
                 "prose (lower is better; its interval is of the change in mean log-loss, which perplexity "
                 "exponentiates).", "",
                 "| figure | base model | fine-tuned | change [paired 95% interval] | verdict |", "|---|---|---|---|---|"]
        return "\n".join(lines + [_row(f, results["comparison"][f]) for f in FORGETTING])
    if section == "How to use":
        folder = results["model_folder"]
        if results["adapter"]:
            load = (f"from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
                    f"model = AutoPeftModelForCausalLM.from_pretrained(\"{folder}\")   # the base, then the adapter")
        else:
            load = (f"from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                    f"model = AutoModelForCausalLM.from_pretrained(\"{folder}\")")
        load += f"\ntokenizer = AutoTokenizer.from_pretrained(\"{folder}\")"
        return f"```python\n{load}\n```\n\nAsk in the chat format it was trained in (`tokenizer.apply_chat_template`)."
    raise KeyError(section)


def _row(figure: str, row: dict) -> str:
    if figure == "perplexity":
        shown = (f"{row['before']:.2f} | {row['after']:.2f} | {row['change']:+.2f} "
                 f"[log-loss {row['low']:+.3f}, {row['high']:+.3f}]")
    else:
        shown = (f"{row['before']:.0%} | {row['after']:.0%} | {row['change'] * 100:+.0f} pts "
                 f"[{row['low'] * 100:+.0f}, {row['high'] * 100:+.0f}]")
    return f"| {FIGURES[figure][0]} | {shown} | {row['verdict']} |"


def read_card(text: str) -> tuple[dict, dict[str, str]]:
    """A card's YAML header and its sections (title -> text), as the checker reads them back."""
    match = re.match(r"---\n(.*?)\n---\n(.*)", text, flags=re.S)
    if not match:
        raise ValueError("the card has no YAML header between two `---` lines at its top")
    header = yaml.safe_load(match.group(1)) or {}
    parts = re.split(r"^## (.+)$", match.group(2), flags=re.M)
    sections = {title.strip(): body.strip() for title, body in zip(parts[1::2], parts[2::2])}
    return header, sections


def card_metrics(header: dict) -> dict[str, float]:
    """The figures a card's `model-index` reports: metric name -> value."""
    metrics = {}
    for entry in header.get("model-index") or []:
        for result in entry.get("results") or []:
            for metric in result.get("metrics") or []:
                metrics[metric.get("name")] = metric.get("value")
    return metrics
