"""The course's package. Read the architecture from the tree:

    shared/
        paths.py, course.py       where things live; the rung manifest (README table, Colab badges)
        profiles.py, models.py    the tiny and gpu profiles; loading models, tokenizers and adapters
        progress.py, numbers.py   progress bars that stay quiet under CI; "is this a finite number/fraction?"
        plots.py                  every figure a notebook draws
        doctor.py, lab.py         `make doctor` and `make lab`
        world/                    the tiny world and its data: generator, task registry (answers, preference pairs,
                                  retrieval, dirty instructions), loading, checksums; newcomers no text mentions
        curation/                 a dirty instruction set with every flaw labelled, the curation stages, their funnel
        retrieval.py              sentence embeddings, top-k and recall@k: what RAG puts in front of a question
        ecosystem/                Axolotl, LLaMA-Factory and torchtune, each in an environment of its own; a
                                  fine-tune run as a measured command; the data in the shapes the tools read
        base_model/               the tiny base model: pretraining and its model card
        training/                 one recipe for the SFT, DPO, reward and GRPO trainers; LoRA, NF4, memory, run records;
                                  the recipe as a script for `accelerate launch`, and multi-GPU configs (accelerate/)
        evaluation/               greedy and sampled generation, per-example scores and rewards, log-probabilities,
                                  perplexity, knowledge probes, the local `evaluate` metric
        checking/                 the checker framework and the pieces checkers share; hidden tests; the jail a
                                  graded notebook runs in; each check's verdict, kept for `make progress`
        grading/                  grading a class (`make grade`): submissions, a check per subprocess with its limits,
                                  grades.csv, the HTML report and its marking server, the learners' release
        notebooks/                exercises from solutions, running notebooks, graded functions, Colab set-up

Notebooks import what they need, e.g. ``from shared.evaluation import evals`` -- nothing is pasted between rungs.
"""

import warnings

# TRL 1.16 and PEFT 0.21 still read transformers' old name for activation checkpointing (`get_peft_model` does, on
# every model it wraps). The warning is about their code, not the learner's: it would appear in every LoRA, DPO and
# GRPO notebook and in the checkers' graded processes for nothing a learner can change.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

import logging  # noqa: E402

# bitsandbytes' CPU backend looks for an optional faster kernel (the `kernels` package) when it loads, and warns
# that it is missing: on machines with AVX-512 BF16, in every notebook that imports TRL's DPO or reward trainers.
# The course's 4-bit code runs without it, and there is nothing for a learner to do about it.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

import importlib  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402


def _defer_iri_grammars() -> None:
    """jsonschema, which every reader of a notebook imports (nbformat validates with it), imports rfc3987_syntax
    to check "iri" strings, and that package compiles 38 grammars when it is imported: a second on 2 cores, in
    every check, every graded-function server and every submission `make grade` runs, for a format no notebook
    schema uses. A stand-in takes its place until an IRI is actually checked, then the real package loads."""
    name = "rfc3987_syntax"
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return
    stand_in = types.ModuleType(name, "Stands in for rfc3987_syntax until it is used (see shared/__init__.py).")

    def real() -> types.ModuleType:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        return importlib.import_module(name)

    def is_valid_syntax(*args, **kwargs):  # what jsonschema imports from it
        return real().is_valid_syntax(*args, **kwargs)

    def anything_else(attribute: str):
        if attribute.startswith("__"):  # the import system asks for __path__ and the like: not a use
            raise AttributeError(attribute)
        return getattr(real(), attribute)

    stand_in.is_valid_syntax = is_valid_syntax
    stand_in.__getattr__ = anything_else
    sys.modules[name] = stand_in


_defer_iri_grammars()
