"""Checker for rung 01 (when not to fine-tune): `make check RUNG=01 [NOTEBOOK=path]`.

It runs a copy of the notebook, then verifies rather than trusts:
* `embed`, `top_k` and `recall_at_k` are tested on texts, vectors and rankings the notebook never uses, against
  the course's references;
* the newcomers, their questions and the passages are remade from the saved seed; the three saved models are
  reloaded, retrieval is done again with the course's embeddings, and every figure is measured here: the
  fine-tune answering its trained wording and not the rest, retrieval answering both wordings, the who-question
  reader trained (on other people's passages: it knows nothing of the newcomers) where prompting fails;
* the eight decisions are compared with the key.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere, even before `pip install -e`

from shared.checking import (CheckFailed, Context, inside, main, read_json, refusal, require,  # noqa: E402
                             require_key, require_measured)
from shared.checking.artefacts import copied_from  # noqa: E402
from shared.checking.figures import AGREEMENT, require_same_embeddings  # noqa: E402
from shared.checking.guards import Forbidden  # noqa: E402
from shared.numbers import is_finite_number  # noqa: E402

RUNG = "01"
# Measured (tiny profile, the solution, training seeds 0 / 1 / 2; newcomers drawn with the same seed), every
# question, this checker:
# * the fine-tune on biographies and Q&A pages, closed book: trained wording 99 / 100 / 100%, rephrased 52 / 57 /
#   59%, reversed 0 / 0 / 0%;
# * the base model reading the passage retrieval ranked first: rephrased 73 / 70 / 73% (14-21 points above the
#   fine-tune); recall@1 on questions naming the person 95-98 / 92-94 / 97-98%;
# * who-questions with the right passage: the base model 0 / 0 / 3%, the reader 100 / 97 / 97%; the reader's
#   closed-book accuracy on the newcomers' facts 8% (the base model's: 8-12%).
LEARNED_WORDING = 0.8     # the fine-tune answers its own wording...
WORDING_GAP = 0.2         # ...this much better than the same facts asked otherwise...
REVERSED_AT_MOST = 0.1    # ...and (almost) no question turned round
RETRIEVAL_GAIN = 0.05     # retrieval + reading beats the fine-tune on the rephrased questions by this much
RECALL_AT_1 = 0.85        # a question that names a person finds their passage first
READER_LEARNED = 0.8      # the reader answers who-questions with the right passage
PROMPTED_AT_MOST = 0.2    # the base model, asked as is (tiny profile: a larger base may follow the question)
READER_KNOWS_NOTHING = 0.3   # the reader's closed-book accuracy on the newcomers' facts: it never read them

MODELS = ("qa-pages", "biographies-qa", "reader")
ROWS = ("base model", "fine-tuned: Q&A pages", "fine-tuned: biographies + Q&A", "base model + retrieval",
        "fine-tuned reader + retrieval")
KINDS = ("trained", "rephrased", "reversed")
CHOICES = ("prompt", "RAG", "fine-tune", "both")
# The key, and the one-line reason a wrong answer is shown with.
KEY = {
    "1": ("RAG", "prices change daily: facts the model cannot hold, kept current by retrieval"),
    "2": ("prompt", "the prompt already does it"),
    "3": ("fine-tune", "a narrow skill a small model lacks, with labelled data to teach it"),
    "4": ("both", "changing guidelines are facts (retrieval); the format is a behaviour prompting does not hold"),
    "5": ("RAG", "changing facts asked both ways round, for a model that already reads documents well: retrieval "
                 "serves both directions from the current chart, and there is no behaviour left to train"),
    "6": ("fine-tune", "a skill prompting gets 40% of, with 5,000 checked pairs"),
    "7": ("prompt", "one example in the prompt does it"),
    "8": ("both", "changing manuals are facts (retrieval); a voice the model drops is a behaviour (training)"),
}

FORBIDDEN = {
    name: Forbidden("retrieval is yours to write; the course's is what it is checked against",
                    functions=(f"shared.retrieval.{name}",))
    for name in ("embed", "top_k", "recall_at_k")
}


def check(ctx: Context) -> None:
    ctx.run_notebook()
    check_graded(ctx)
    ctx.from_the_run(verify_outputs)
    ctx.review("written answer: when you would fine-tune", ctx.answers().get("when-to-fine-tune"),
               hint="Write a few sentences of your own in section 7.")


# -- the graded functions ------------------------------------------------------------------------------------
def check_graded(ctx: Context) -> None:
    graded = ctx.graded(list(FORBIDDEN), forbidden=FORBIDDEN)
    ctx.criterion("embed gives unit-length MiniLM embeddings, on unseen texts", lambda: check_embed(graded["embed"]),
                  hint="Section 3 shows the model and the call that gives what embed returns.")
    ctx.criterion("top_k ranks documents by cosine similarity, best first, on unseen vectors",
                  lambda: check_top_k(graded["top_k"]),
                  hint="Section 3 says how to rank; the line above names a query yours ranks otherwise, with the "
                       "dot products of the documents it put first and of those expected.")
    ctx.criterion("recall_at_k gives the share of queries whose document is in their first k, on unseen rankings",
                  lambda: check_recall(graded["recall_at_k"]),
                  hint="Section 3 says what recall@k counts, and what to do when there is nothing to count.")


def check_embed(embed) -> str:
    from shared.retrieval import embed as reference

    texts = ["Which town is the miller from?", "Ada Brom keeps a tortoise.", "A recipe for bread", "",
             "Who lives in Pellmarsh, keeps a goat and works as a smith?", "7 plus 2 is 9."]
    require_same_embeddings(embed(list(texts)), reference(texts))
    return f"{len(texts)} unseen texts (an empty one too), each within cosine 0.999 of the course's"


def _unit_rows(generator, rows: int, width: int = 16):
    import numpy as np

    vectors = generator.normal(size=(rows, width))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def check_top_k(top_k) -> str:
    import numpy as np

    from shared.retrieval import top_k as reference

    generator = np.random.default_rng(101)
    queries, documents = _unit_rows(generator, 12), _unit_rows(generator, 40)
    for k in (1, 3, 7):
        _require_same_ranking(top_k, queries, documents, k, reference)
    queries, documents = _tied_rows(generator, 10), _tied_rows(generator, 30)
    for k in (1, 4, 10):
        _require_same_ranking(top_k, queries, documents, k, reference)
    return ("12 unseen queries against 40 documents, k = 1, 3, 7; and 10 against 30 whose dot products tie again "
            "and again, k = 1, 4, 10")


def _tied_rows(generator, rows: int, width: int = 16):
    """Unit vectors of four entries of +-1/2: their dot products are quarters, exact however a product sums them
    (in float32 too), so the ties the check sets are ties for the learner's code as well."""
    import numpy as np

    vectors = np.zeros((rows, width))
    for row in vectors:
        row[generator.choice(width, size=4, replace=False)] = generator.choice([-0.5, 0.5], size=4)
    return vectors


def _require_same_ranking(top_k, queries, documents, k: int, reference) -> None:
    import numpy as np

    got = np.asarray(top_k(queries.copy(), documents.copy(), k))
    expected = reference(queries, documents, k)
    require(got.shape == expected.shape, f"k={k}: shape {got.shape}, expected {expected.shape} (queries x k)")
    require(np.issubdtype(got.dtype, np.integer), f"k={k}: must return row numbers (integers), got {got.dtype}")
    require(got.min() >= 0 and got.max() < len(documents),
            f"k={k}: ranked row {got.min() if got.min() < 0 else got.max()}: the rows are 0 to {len(documents) - 1}")
    if np.array_equal(got, expected):
        return
    scores = queries @ documents.T

    def ties_only(i: int) -> bool:   # the same dot products, in another order of equal documents
        return np.array_equal(scores[i, got[i]], scores[i, expected[i]])

    wrong = [i for i in range(len(queries)) if not np.array_equal(got[i], expected[i])]
    i = next((i for i in wrong if not ties_only(i)), wrong[0])   # a plain misranking says more than a tie
    why = ("of equal dot products the earlier document comes first" if ties_only(i)
           else "the highest dot products, best first")
    raise CheckFailed(f"k={k}: query {i} ranked {got[i].tolist()} (dot products {_rounded(scores[i, got[i]])}), "
                      f"expected {expected[i].tolist()} ({_rounded(scores[i, expected[i]])}): {why}")


def _rounded(values) -> str:
    return ", ".join(f"{value:.3f}" for value in values)


def check_recall(recall_at_k) -> str:
    import numpy as np

    from shared.retrieval import recall_at_k as reference

    generator = np.random.default_rng(202)
    ranked = np.array([generator.permutation(20)[:5] for _ in range(30)])
    relevant = [int(row[generator.integers(0, 5)]) if generator.random() < 0.6 else int(generator.integers(0, 20))
                for row in ranked]   # mostly ranked somewhere in the first five, some anywhere
    for k in (1, 2, 5):
        got = recall_at_k(ranked, list(relevant), k)
        expected = reference(ranked, relevant, k)
        require(is_finite_number(got) and abs(float(got) - expected) <= 1e-9,
                f"k={k}: returned {got!r}, expected {expected:.4f} (the share of the 30 queries whose document "
                f"is among their first {k})")
    result = refusal(lambda: recall_at_k(np.zeros((0, 5), dtype=int), [], 1))
    require(not result, f"no queries {result}: raise ValueError saying there is nothing to measure")
    return "30 unseen rankings at k = 1, 2, 5, and none at all refused"


# -- what the run saved ----------------------------------------------------------------------------------
def verify_outputs(ctx: Context) -> None:
    outputs = ctx.outputs()
    saved = ctx.collect("metrics were saved and name the three models", lambda: read_saved(outputs, ctx),
                        hint="Run sections 2, 5 and 8 and keep metrics.json's keys.")
    measured = ctx.collect("the models reload, and the checker retrieves and measures every question again",
                           lambda: measure_all(saved, ctx),
                           hint="Keep the models where the notebook saved them; do not move or edit them.")
    ctx.criterion("fine-tuning stored the facts for its own wording, not for others, and not turned round",
                  lambda: check_fine_tune(measured),
                  hint="Section 2 trains the base model on the newcomers' biographies and Q&A pages "
                       "(knowledge_texts) with the profile's 'knowledge' stage.")
    ctx.criterion("retrieval finds the passages and answers the rephrased questions the fine-tune misses",
                  lambda: check_retrieval(measured),
                  hint="Section 4 puts the passage your top_k ranks first in front of each question, for the base "
                       "model to read.")
    ctx.criterion("the who-question skill: prompting does not give it, a short fine-tune on other people does",
                  lambda: check_reader(measured),
                  hint="Section 5 trains the base model on who_reading_texts (strangers, never the newcomers).")
    ctx.criterion("the saved figures agree with the models", lambda: check_agree(saved, measured),
                  hint="metrics.json must hold what the notebook measured. A figure that differs comes from a hand "
                       "edit, or from a graded function above that is not right yet (the checker retrieves with the "
                       "course's own).")
    ctx.criterion("your eight decisions", lambda: check_decisions(saved),
                  hint="Facts that change or are missing: RAG. A behaviour, format or skill prompting does not give, "
                       "with data to teach it: fine-tune. What the prompt already does: prompt. Both needs: both.")


def read_saved(outputs: Path, ctx: Context) -> dict:
    metrics = read_json(outputs / "metrics.json", "metrics")
    seed, models, figures = metrics.get("seed"), metrics.get("models"), metrics.get("figures")
    require(isinstance(seed, int) and not isinstance(seed, bool), f"metrics.json seed is {seed!r}, not a whole number")
    require(isinstance(models, dict) and all(isinstance(models.get(name), str) for name in MODELS),
            f"metrics.json must name the folders of the {', '.join(MODELS)} models")
    require(isinstance(figures, dict) and all(isinstance(figures.get(row), dict) for row in ROWS),
            f"metrics.json must hold the figures of: {', '.join(ROWS)}")
    require(isinstance(metrics.get("decisions"), dict), "metrics.json must hold your decisions")
    folders = {}
    for name in MODELS:
        folder = ctx.outputs_root / models[name]
        require(inside(folder, outputs), f"metrics.json names {models[name]} as the {name} model: the checker uses "
                                         "only models this rung trained, in its own outputs folder")
        copied = copied_from(folder, ctx.outputs_root, outputs)
        require(copied is None, f"the {name} model's weights are a copy of {copied}: train it here")
        folders[name] = folder
    require(len(set(folders.values())) == len(MODELS), "the three models must be three different models")
    return {**metrics, "folders": folders}


def measure_all(saved: dict, ctx: Context) -> dict:
    require(bool(saved), "needs the saved metrics, which name the models (see above)")
    setting = (saved["seed"],)
    measured = {name: ctx.measure([saved["folders"][name]],
                                  lambda name=name: measure_saved(name, saved["folders"][name], saved["seed"],
                                                                  ctx.profile), settings=setting)
                for name in MODELS}
    base_folder = Path(ctx.profile.base_model)
    measured["profile"] = ctx.profile.name
    measured["base"] = ctx.measure([base_folder] if base_folder.is_dir() else [],
                                   lambda: measure_model(None, saved["seed"], ctx.profile),
                                   settings=(*setting, ctx.profile.base_model))
    return measured


@functools.lru_cache(maxsize=2)
def _setting(seed: int):
    """The newcomers, questions, passages and the course's retrieval for the notebook's seed."""
    from shared.retrieval import embed, recall_at_k, top_k
    from shared.world.generator import build_world
    from shared.world.newcomers import knowledge_documents, knowledge_questions, newcomers

    world = build_world()
    people = newcomers(seed=seed, world=world)
    questions = knowledge_questions(people)
    documents = knowledge_documents(people, world)
    vectors = embed([document["text"] for document in documents])
    row_of = {document["name"]: i for i, document in enumerate(documents)}
    retrieved, recall, gold = {}, {}, {}
    for kind, items in questions.items():
        ranked = top_k(embed([q["prompt"] for q in items]), vectors, 5)
        recall[kind] = {f"recall@{k}": recall_at_k(ranked, [row_of[q["person"]] for q in items], k) for k in (1, 3, 5)}
        for question, rows in zip(items, ranked):
            retrieved[question["id"]] = documents[rows[0]]["text"]
            gold[question["id"]] = documents[row_of[question["person"]]]["text"]
    return questions, retrieved, gold, recall


def measure_saved(name: str, folder: Path, seed: int, profile) -> dict:
    from shared.models import load_model

    try:
        model = load_model(folder, profile=profile)
    except Exception as error:
        raise CheckFailed(f"the {name} model ({folder}) does not load: {type(error).__name__}: "
                          f"{str(error)[:160]}") from error
    return measure_model(model, seed, profile)


def measure_model(model, seed: int, profile) -> dict:
    """Closed book, open book (the checker's retrieval), and the who-questions with the right passage: the same
    measurement whatever role a model plays (it is kept by the model's files)."""
    from shared.evaluation.knowledge import closed_book, open_book
    from shared.models import load_model, load_tokenizer

    model = model if model is not None else load_model(profile=profile)
    tokenizer = load_tokenizer(profile=profile)
    questions, retrieved, gold, recall = _setting(seed)
    return {"closed": closed_book(model, tokenizer, questions), "recall": recall,
            "retrieval": open_book(model, tokenizer, questions, retrieved),
            "who": open_book(model, tokenizer, {"reversed": questions["reversed"]}, gold)["reversed"]}


def check_fine_tune(measured: dict) -> str:
    figures = require_measured(measured)["biographies-qa"]["closed"]
    shown = ", ".join(f"{kind} {figures[kind]:.0%}" for kind in KINDS)
    require(figures["trained"] >= LEARNED_WORDING, f"{shown}: it did not learn even its own wording (at least "
                                                   f"{LEARNED_WORDING:.0%} expected)")
    require(figures["rephrased"] <= figures["trained"] - WORDING_GAP,
            f"{shown}: the rephrased questions as well as the trained ones -- was it trained on them too?")
    require(figures["reversed"] <= REVERSED_AT_MOST, f"{shown}: reversed questions answered -- was it trained on "
                                                     "them, or on the answers?")
    return f"closed book: {shown}"


def check_retrieval(measured: dict) -> str:
    measured = require_measured(measured)
    recall, base, fine_tuned = measured["base"]["recall"], measured["base"]["retrieval"], measured["biographies-qa"]
    first = min(recall[kind]["recall@1"] for kind in ("trained", "rephrased"))
    require(first >= RECALL_AT_1, f"recall@1 {first:.0%} on questions that name the person (the course's "
                                  f"embeddings): at least {RECALL_AT_1:.0%} expected")
    gain = base["rephrased"] - fine_tuned["closed"]["rephrased"]
    shown = (f"rephrased: retrieval + reading {base['rephrased']:.0%}, fine-tune {fine_tuned['closed']['rephrased']:.0%}"
             f"; recall@1 {recall['trained']['recall@1']:.0%} / {recall['rephrased']['recall@1']:.0%} / "
             f"{recall['reversed']['recall@1']:.0%}")
    require(gain >= RETRIEVAL_GAIN, f"{shown}: less than {RETRIEVAL_GAIN * 100:.0f} points apart")
    return shown


def check_reader(measured: dict) -> str:
    measured = require_measured(measured)
    base, reader = measured["base"], measured["reader"]
    shown = f"who-questions with the right passage: base model {base['who']:.0%}, reader {reader['who']:.0%}"
    if measured["profile"] == "tiny":   # measured there; a larger base model may answer some when asked
        require(base["who"] <= PROMPTED_AT_MOST, f"{shown}: the base model already answers them")
    require(reader["who"] >= READER_LEARNED, f"{shown}: the reader did not learn them (at least "
                                             f"{READER_LEARNED:.0%} expected)")
    knows = reader["closed"]["trained"]
    require(knows <= READER_KNOWS_NOTHING, f"{shown}; but closed book it knows {knows:.0%} of the newcomers' facts: "
                                           "train it on other people's passages, never the newcomers'")
    return f"{shown}; closed book it knows {knows:.0%} of the newcomers' facts (it never read them)"


def _shown(value) -> str:
    return f"{value:.1%}" if is_finite_number(value) else repr(value)


def check_agree(saved: dict, measured: dict) -> str:
    measured = require_measured(measured)
    require(bool(saved), "needs the saved figures (see above)")
    expected = {"base model": measured["base"]["closed"], "fine-tuned: Q&A pages": measured["qa-pages"]["closed"],
                "fine-tuned: biographies + Q&A": measured["biographies-qa"]["closed"],
                "base model + retrieval": measured["base"]["retrieval"],
                "fine-tuned reader + retrieval": measured["reader"]["retrieval"]}
    for row, values in expected.items():
        for kind, value in values.items():
            said = saved["figures"][row].get(kind)
            require(is_finite_number(said) and abs(said - value) <= AGREEMENT,
                    f"metrics.json says {row!r} answers {kind} {_shown(said)}; measured again, {value:.1%}")
    for kind, values in measured["base"]["recall"].items():
        for k, value in values.items():
            said = (saved.get("recall") or {}).get(kind, {}).get(k)
            require(is_finite_number(said) and abs(said - value) <= AGREEMENT,
                    f"metrics.json says {kind} {k} is {_shown(said)}; retrieved again, {value:.1%}")
    said = (saved.get("who") or {}).get("fine-tuned reader")
    require(is_finite_number(said) and abs(said - measured["reader"]["who"]) <= AGREEMENT,
            f"metrics.json says the reader answers {_shown(said)} of the who-questions; measured again, "
            f"{measured['reader']['who']:.1%}")
    return f"within {AGREEMENT:.0%}"


def check_decisions(saved: dict) -> str:
    require(bool(saved), "needs the saved decisions (see above)")
    return require_key(saved["decisions"], KEY, CHOICES, "request")


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG))
