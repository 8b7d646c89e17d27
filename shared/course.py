"""The course manifest: the one list of rungs that the README table, Colab badges, bench and tests read.

The README's rung table is generated from ``RUNGS`` (never edited by hand), so the two cannot drift:

    python -m shared.course --write-readme   # rewrite the table between the markers in README.md
    python -m shared.course --check          # exit 1 when README.md is out of date (a test runs this too)

Only the standard library is used here, so this works before the course's packages are installed.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # not from shared.paths: keep this module dependency-free
README = REPO_ROOT / "README.md"

# The GitHub repository the Colab badges open. Every badge URL is built from this one slug.
REPOSITORY = "shaper-of-models/fine-tuning-course"
BRANCH = "main"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BEGIN, END = "<!-- rungs:begin -->", "<!-- rungs:end -->"
STATUSES = ("ready", "coming")


@dataclass(frozen=True)
class Rung:
    number: str               # "01".."11", and "12" for the capstone
    slug: str                 # folder rungs/NN-slug, solution solutions/NN-slug.ipynb
    title: str
    what_you_do: str
    cpu_minutes: float | None  # expected minutes on CPU with the tiny profile (None: not measured yet)
    colab: bool               # offered on a GPU (Colab) with the gpu profile
    status: str               # "ready" or "coming"

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"rung {self.number}: status {self.status!r} is not one of {STATUSES}")

    @property
    def name(self) -> str:
        return f"{self.number}-{self.slug}"

    @property
    def folder(self) -> str:
        return f"rungs/{self.name}"

    @property
    def exercise(self) -> str:
        return f"{self.folder}/exercise.ipynb"

    @property
    def solution(self) -> str:
        return f"solutions/{self.name}.ipynb"

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def colab_url(self) -> str:
        return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/{self.exercise}"

    @property
    def colab_badge(self) -> str:
        return f"[![Open In Colab]({COLAB_BADGE})]({self.colab_url})"


RUNGS = [
    Rung("01", "when-to-fine-tune", "When to fine-tune",
         "Fine-tune new facts into a model and retrieve them instead, on questions in the trained wording, in "
         "other words and turned round; teach it a behaviour that prompting cannot; then decide, request by "
         "request, between prompting, RAG and fine-tuning.",
         2, True, "ready"),
    Rung("02", "sft", "Supervised fine-tuning",
         "Turn a base model into an instruction follower: chat format, loss only on the answer, "
         "before/after scores on three held-out tasks.",
         2, True, "ready"),
    Rung("03", "lora", "LoRA",
         "Train small low-rank adapters instead of every weight, and compare memory, speed and scores "
         "with full fine-tuning.",
         3, True, "ready"),
    Rung("04", "qlora", "QLoRA",
         "Load the base model in 4 bit and train LoRA adapters on top, so a much larger model fits one GPU.",
         2, True, "ready"),
    Rung("05", "data-curation", "Data curation",
         "Clean a dirty instruction set stage by stage — exact, MinHash and embedding deduplication, "
         "decontamination, answers checked against the world, rebalancing — and measure what it buys: a curated "
         "third of the data against all of it, and the score leaked test questions fake.",
         2, True, "ready"),
    Rung("06", "dpo", "Direct preference optimisation",
         "Derive the DPO loss from the RLHF objective, write it and the answer log-probabilities, and teach a "
         "model to say what it does not know with TRL's DPOTrainer, set against SFT on the chosen answers alone.",
         3, True, "ready"),
    Rung("07", "grpo", "GRPO",
         "Write GRPO's group-relative advantages and clipped loss, check them against TRL, and raise held-out "
         "accuracy on two-step word problems with TRL's GRPOTrainer and an exact reward; pass@k before and "
         "after, and what GRPO keeps out of memory compared with PPO.",
         4, True, "ready"),
    Rung("08", "reward-modelling", "Reward modelling",
         "Write the Bradley–Terry loss and train a reward model with TRL's RewardTrainer, pick the best of n "
         "answers by it and watch the judge disagree as n grows, and read the reward DPO holds implicitly.",
         2, True, "ready"),
    Rung("09", "evals", "Evals",
         "Measure every earlier model with one harness — three task types held out, a forgetting check, an "
         "interval on every figure — write the bootstrap and McNemar's test that say when a difference is real, "
         "check training sets for leaked test questions, and run the same tasks in lm-evaluation-harness.",
         1, True, "ready"),
    Rung("10", "forgetting", "Catastrophic forgetting",
         "Fine-tune on a new task until the old ones break and watch it happen step by step, then win them back "
         "three ways — replay, EWC (you write the Fisher estimate and the penalty) and LoRA — each a trade-off "
         "curve between what is kept and what is learned.",
         4, True, "ready"),
    Rung("11", "ecosystem", "The ecosystem",
         "Run one fine-tune through TRL's Python API, TRL's command line, Axolotl and LLaMA-Factory — each tool's "
         "config written by you, each in its own environment — and compare accuracy, time, memory and config; "
         "train on two processes with accelerate launch and get the same losses; compute what ZeRO and FSDP save; "
         "pick a tool for a job.",
         2, True, "ready"),
    Rung("12", "capstone", "Capstone: your own fine-tune",
         "Choose a task, a base and a method from the rungs; fine-tune, measure before and after with rung 09's "
         "harness — the task held out, rung 02's three tasks, the forgetting check — and leave with a model card "
         "generated from the results, which `make check RUNG=capstone` verifies against the model.",
         1, True, "ready"),
]


def rung(number: str | int) -> Rung:
    """The rung with this number ("02" or 2) or slug ("sft", "capstone")."""
    key = f"{int(number):02d}" if str(number).isdigit() else str(number)
    for r in RUNGS:
        if key in (r.number, r.slug):
            return r
    raise KeyError(f"no rung {number!r}; the rungs are {', '.join(r.number for r in RUNGS)}")


def ready_rungs() -> list[Rung]:
    return [r for r in RUNGS if r.ready]


# -- the README table ---------------------------------------------------------------------------------
def _minutes(value: float | None) -> str:
    if value is None:
        return "—"
    return f"~{value:g}"


def readme_table() -> str:
    """The markdown table of rungs. Only a ready rung gets a link and a badge: nothing points at a missing file."""
    lines = ["| Rung | What you do | CPU minutes (tiny) | GPU / Colab | Status |",
             "|---|---|---|---|---|"]
    for r in RUNGS:
        label = f"{r.number} · {r.title}"
        if r.ready:
            cells = [f"[{label}]({r.folder}/)", r.what_you_do, _minutes(r.cpu_minutes),
                     r.colab_badge if r.colab else "—", "ready"]
        else:
            cells = [label, r.what_you_do, "—", "—", "coming"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_block(text: str) -> str:
    """What stands between the markers in a README text (stripped)."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"README.md has no {BEGIN} ... {END} block")
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def with_table(text: str) -> str:
    """The README text with a freshly generated table between the markers."""
    readme_block(text)  # raises a clear error when the markers are missing
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{BEGIN}\n{readme_table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The course manifest (rungs) and the README table made from it.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write-readme", action="store_true", help="rewrite the rung table in README.md")
    group.add_argument("--check", action="store_true", help="exit 1 when README.md's rung table is out of date")
    args = parser.parse_args(argv)
    if not (args.write_readme or args.check):
        print(readme_table())
        return 0
    text = README.read_text(encoding="utf-8")
    fresh = with_table(text)
    if args.check:
        if fresh != text:
            print("README.md's rung table is out of date with shared/course.py. "
                  "Run `make readme` (python -m shared.course --write-readme).", file=sys.stderr)
            return 1
        print("README.md's rung table is up to date.")
        return 0
    if fresh != text:
        README.write_text(fresh, encoding="utf-8")
        print("wrote the rung table in README.md")
    else:
        print("README.md's rung table was already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
