"""Measure the tiny base model and write its model card (data/tiny-base/README.md).

Two things make it a genuine *base* model, and both are measured, not claimed:

* it knows the world and writes its prose: cloze recall ("Mira Olsen lives in" -> her town) and held-out
  perplexity on new write-ups of the world;
* it does not follow chat-formatted instructions: asked the task questions in the chat format, it rarely
  answers right (the tasks' held-out accuracy before any fine-tuning).

``python -m shared.base_model.card`` re-measures the committed model and rewrites the card's figures. The
measurements are evaluation functions (``shared.evaluation.probes``, ``.perplexity``, ``.evals``); this module
only gathers and writes them, and pretraining calls it, never the other way round.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def measure(model, tokenizer, seq_len: int = 128) -> dict:
    """The card's figures for a model: the knowledge probes, held-out perplexity (text cut into rows of the
    pretraining length, seq_len) and the chat-format accuracy before fine-tuning."""
    from shared.evaluation import evals
    from shared.evaluation.perplexity import text_perplexity
    from shared.world.data import read_corpus
    from shared.evaluation.probes import cloze_recall, reading_accuracy, sum_recall
    from shared.world.generator import build_world

    people = build_world()["people"]
    recall = cloze_recall(model, tokenizer, people)
    sums = sum_recall(model, tokenizer)
    reading = reading_accuracy(model, tokenizer)
    ppl = text_perplexity(model, tokenizer, read_corpus("validation"), seq_len=seq_len)
    chat = evals.accuracies(evals.evaluate_model(model, tokenizer, split="heldout"))
    example = evals.generate(model, tokenizer, ["Where does " + people[0]["name"] + " live?"], max_new_tokens=16)
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "cloze_recall": {k: round(v, 4) for k, v in recall.items()},
            "sum_recall": {k: round(v, 4) for k, v in sums.items()},
            "reading_in_context": {k: round(v, 4) for k, v in reading.items()},
            "heldout_perplexity": round(ppl, 3),
            "chat_heldout_accuracy": chat,
            "chat_example": {"prompt": "Where does " + people[0]["name"] + " live?", "answer": people[0]["town"],
                             "base_model_says": example[0]}}


CARD = """# tiny-base

The course's own base model: a {parameters_m:.1f}M-parameter Llama (`LlamaForCausalLM`, {layers} layers,
hidden size {hidden}, {heads} heads, vocabulary {vocab} byte-level BPE tokens) pretrained from scratch on the
generated tiny-world corpus (`data/world/corpus.train.jsonl`). It is a **base** model: it has read prose
about the world, never a chat.

Built by `make base-model` (`python -m shared.base_model.pretrain`): {train_seconds:.0f} s of training on 2 CPU cores
(tokenizer, saving and this card add about half a minute), pretraining seed {seed}. A model this small differs
from seed to seed in what fine-tuning later gets out of it; `shared/base_model/pretrain.py` says how this seed was chosen.
{stages}
The training log prints cloze recall and reading every 400 steps.

| | |
|---|---|
| parameters | {parameters:,} |
| tokens seen | {tokens_seen:,} ({steps} steps x {batch_size} x {seq_len} tokens; corpus {corpus_tokens:,} tokens) |
| final training loss (mean of last 50 steps) | {final_train_loss:.3f} |
| held-out perplexity (new write-ups of world facts) | {heldout_perplexity:.2f} |
| cloze recall, all {n_people} people (town / colour / pet / job) | {recall} |
| sums and differences up to {max_operand} completed right ("7 plus 5 is", plus / minus) | {sums} |
| reading in context: a passage about a stranger, then a question (town / colour / pet / job; a guess gets ~10%) | {reading} |
| held-out task accuracy **in the chat format**, before fine-tuning | {chat} |

What the figures say: the model knows the world (cloze recall far above the 10% of a guess) and most of its
sums, and writes its prose fluently (low perplexity on write-ups it never saw), but asked a question in the chat
format it does not answer it -- e.g. asked "{example_prompt}" (answer: {example_answer}) it writes
`{example_says}`.
Rung 02 (SFT) teaches it to.
{reading_note}

Chat template: `<s><|user|> ...<|end|>\\n<|assistant|> ...<|end|>\\n`. The chat tokens are in the
vocabulary but never occur in the pretraining text. Files: `model.safetensors` (bf16 on disk; load in float32
on the CPU), `tokenizer.json`, `config.json`, `generation_config.json`. Figures measured by
`python -m shared.base_model.card` and stored in `card.json`.
"""


def write(out_dir: Path, stats: dict, train_cfg: dict, config: dict) -> dict:
    """Measure the saved model in out_dir (as a learner will load it) and write README.md + card.json."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    figures = {**stats, **measure(model, tokenizer, train_cfg["seq_len"]), "vocab_size": len(tokenizer),
               "train_config": train_cfg, "model_config": config}
    (out_dir / "card.json").write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    _render(out_dir, figures)
    return figures


ONE_STAGE = "It read the whole corpus, every token counted once."
TWO_STAGES = """It was trained in two stages. **Reading** ({reading_steps} steps): only the documents whose answers
are in the document itself -- a passage and questions about it, a passage and a JSON record of it -- with the
loss on those answers alone. **Everything** ({steps} steps): the whole corpus, with the answers and what is
copied (a record's name; a little story's working, "7 plus 9 is 16, so ...") counted {answer_weight:g} times."""
READS = """The reading row shows whether it can answer from a passage it has just read: where it is well
above the 10% of a guess, tasks that copy from the prompt (extraction, word problems) have something to build on."""
GUESSES = """The reading row is the model's weak spot: asked about a passage it has just read, it mostly
guesses, so tasks that need reading (extraction, word problems) are hard for it."""


def _stages(tc: dict) -> str:
    if not tc.get("reading_steps"):
        return ONE_STAGE
    return TWO_STAGES.format(reading_steps=tc["reading_steps"], steps=tc["steps"], answer_weight=tc["answer_weight"])


def _render(out_dir: Path, f: dict) -> None:
    from shared.world.tasks import TASK_TITLES
    from shared.world.generator import MAX_OPERAND, N_PEOPLE

    mc, tc = f["model_config"], f["train_config"]
    text = CARD.format(
        parameters_m=f["parameters"] / 1e6, layers=mc["num_hidden_layers"], hidden=mc["hidden_size"],
        heads=mc["num_attention_heads"], vocab=f.get("vocab_size", mc["vocab_size"]), parameters=f["parameters"],
        train_seconds=f["train_seconds"], seed=tc["seed"], tokens_seen=f["tokens_seen"], steps=f["steps"],
        batch_size=tc["batch_size"], seq_len=tc["seq_len"], stages=_stages(tc),
        reading_note=READS if max(f["reading_in_context"].values()) >= 0.5 else GUESSES, corpus_tokens=f["corpus_tokens"],
        final_train_loss=f["final_train_loss"], heldout_perplexity=f["heldout_perplexity"], n_people=N_PEOPLE,
        recall=" / ".join(f"{v:.0%}" for v in f["cloze_recall"].values()),
        max_operand=MAX_OPERAND, sums=" / ".join(f"{v:.0%}" for v in f["sum_recall"].values()),
        reading=" / ".join(f"{v:.0%}" for v in f["reading_in_context"].values()),
        chat=", ".join(f"{TASK_TITLES[t]} {v:.0%}" for t, v in f["chat_heldout_accuracy"].items()),
        example_prompt=f["chat_example"]["prompt"], example_answer=f["chat_example"]["answer"],
        example_says=f["chat_example"]["base_model_says"].replace("\n", " ").replace("`", "'")[:80])
    (out_dir / "README.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    from shared.world import checksums
    from shared.paths import DATA_DIR, TINY_BASE_DIR

    previous = json.loads((TINY_BASE_DIR / "card.json").read_text())
    keep = {k: previous[k] for k in ("train_seconds", "steps", "tokens_seen", "corpus_tokens", "final_train_loss")}
    write(TINY_BASE_DIR, keep, previous["train_config"], previous["model_config"])
    checksums.update(DATA_DIR)
    print((TINY_BASE_DIR / "README.md").read_text())
