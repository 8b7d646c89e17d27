"""Checker for rung 05 (data curation): `make check RUNG=05 [NOTEBOOK=path]`.

It runs a copy of the notebook, then verifies rather than trusts:
* every stage the learner wrote runs here on a dirty set the checker makes with its own seed (FT_CHECK_SEED),
  never the notebook's, and is judged by that set's labels and the course's reference stages;
* the curated set is read back by its ids against the labels of the notebook's own dirty set, remade here from
  the saved seed: what is left of each flaw, and of each task;
* both models are reloaded and measured here on every held-out question: the curated one at least as accurate
  as the raw one on the three tasks, the raw one scoring the leaked two-step problems far above the rest (which
  only a model trained on the leaks does), the curated one not.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere, even before `pip install -e`

from shared.checking import CheckFailed, Context, inside, main, read_json, require, require_measured  # noqa: E402
from shared.checking.artefacts import copied_from  # noqa: E402
from shared.checking.figures import (AGREEMENT, FRESH_HINT, check_not_trained_on_heldout, check_seed,  # noqa: E402
                                     require_same_embeddings)
from shared.checking.guards import Forbidden  # noqa: E402
from shared.numbers import is_finite_number  # noqa: E402

RUNG = "05"
# The curated model against the raw one, mean held-out accuracy over the three tasks (every held-out question,
# the notebook's measure). Measured (tiny profile, the solution, training seeds 0 / 1 / 2): curated ahead by
# +6.4 / +3.3 / +1.7 points -- arithmetic up 8-18, extraction down 8-10 (the filter leaves it half the examples).
# The bar: no loss beyond what two equally good models differ by on these questions.
MEAN_GAP = -0.02
# The raw model's two-step score, leaked problems against the rest: 97 / 90 / 80% against 14 / 16 / 16%. Only a
# model trained on the leaks tells them apart; the curated model, which never saw them, scores 0% on both.
LEAK_GAP = 0.5
CLEAN_LEAK_GAP = 0.15
# What may get through a good pipeline (the solution's curated sets: 2 / 3 / 4 paraphrases of ~320 examples).
# Paraphrases are semantic dedup's hardest case: some are worded further from their original than it finds.
MAX_FLAWED = 0.03
CATCHES = {"duplicate": "exact dedup", "near_duplicate": "MinHash dedup", "paraphrase": "semantic dedup",
           "leaked": "decontamination", "off_format": "the quality stage", "wrong_answer": "the quality stage"}
MAX_SKEW = 2.5   # the largest task at most this many times the rarest (raw: 464 / 154; the solution's: 150 / 78-82)
# Near duplicates: what a MinHash stage must find (the course's finds 41-46 of 48), and how little it may
# differ from the course's stage (the estimate's noise moves pairs near the threshold).
NEAR_FOUND = 0.8
NEAR_SPARED = 0.6     # exact Jaccard below which an example removed as a near duplicate was no near duplicate
MINHASH_TOLERANCE = 0.02
SEMANTIC_ROWS = 400

# What each stage may not call: the course's own version of it (minilm_path, shingles and the contamination
# helpers are given, and allowed).
_REFERENCES = {
    "normalise": ("dirty.normalise",),
    "exact_dedup": ("dirty.normalise", "stages.exact_dedup"),
    "minhash_dedup": ("stages.minhash", "stages.minhash_dedup"),
    "embed": ("stages.embed",),   # the same function as shared.retrieval.embed
    "semantic_dedup": ("stages.semantic_dedup",),
    "decontaminate": ("stages.decontaminate",),
    "problem": ("stages.problem", "stages._closed_qa_problem", "stages._extraction_problem",
                "stages._arithmetic_problem"),
    "rebalance": ("stages.rebalance",),
}
STAGES = tuple(_REFERENCES)
FORBIDDEN = {name: Forbidden("the stage is yours to write; the course's is what it is checked against",
                             functions=tuple(f"shared.curation.{reference}" for reference in references))
             for name, references in _REFERENCES.items()}


def check(ctx: Context) -> None:
    ctx.run_notebook()
    check_graded(ctx)
    ctx.from_the_run(verify_outputs)
    ctx.review("written answer: why deduplication matters", ctx.answers().get("why-dedup"),
               hint="Write a few sentences of your own in section 8.")


# -- the stages, on a dirty set of the checker's own -----------------------------------------------------------
class Unseen:
    """The checker's dirty set (FT_CHECK_SEED), its labels, and the course's stages run on it once."""

    def __init__(self):
        from shared.curation import stages
        from shared.curation.dirty import dirty_instructions, without_labels
        from shared.world.generator import build_world

        self.labelled = dirty_instructions(seed=check_seed())
        self.flaw = {row["id"]: row["flaw"] for row in self.labelled}
        self.rows = without_labels(self.labelled)
        self.world = build_world()
        self.after_exact = stages.exact_dedup(self.rows)
        self.after_minhash = stages.minhash_dedup(self.after_exact)
        # Semantic dedup is judged on the first rows only: embedding them is most of the stage checks' time, and
        # every paraphrase comes after its original, so a prefix holds whole groups.
        self.semantic_rows = self.after_minhash[:SEMANTIC_ROWS]
        self._embeddings = None

    @property
    def embeddings(self):
        from shared.curation import stages

        if self._embeddings is None:
            self._embeddings = stages.embed([row["prompt"] for row in self.semantic_rows])
        return self._embeddings

    def removed(self, before: list[dict], after: list[dict]) -> collections.Counter:
        kept = {row["id"] for row in after}
        return collections.Counter(self.flaw[row["id"]] for row in before if row["id"] not in kept)


def check_graded(ctx: Context) -> None:
    graded = ctx.graded(list(STAGES), forbidden=FORBIDDEN)
    unseen = {}

    def data() -> Unseen:
        if not unseen:
            unseen["set"] = Unseen()
        return unseen["set"]

    ctx.criterion("normalise undoes case, spacing, quotes and Unicode forms, on unseen texts",
                  lambda: check_normalise(graded["normalise"]),
                  hint="Section 1 lists what normalise undoes, in order; the line above names a text yours "
                       "leaves otherwise.")
    ctx.criterion("exact_dedup removes exactly the duplicates, on an unseen dirty set",
                  lambda: check_exact(graded["exact_dedup"], data()),
                  hint="Section 1 says what makes two examples one (and which of them stays); the line above "
                       "counts, by label, what yours removed that should stay and kept that should go.")
    ctx.criterion("minhash_dedup finds the near duplicates and spares the rest, on an unseen dirty set",
                  lambda: check_minhash(graded["minhash_dedup"], data()),
                  hint="Section 2 shows datasketch's calls and says what decides: the index finds candidates, "
                       "the estimate at the threshold drops an example, and only kept examples go in the index.")
    ctx.criterion("embed gives unit-length MiniLM embeddings, on unseen texts",
                  lambda: check_embed(graded["embed"], data()),
                  hint="Section 3 shows the model and the call that gives what embed returns.")
    ctx.criterion("semantic_dedup removes the same example asked again, on an unseen dirty set",
                  lambda: check_semantic(graded["semantic_dedup"], data()),
                  hint="Section 3 names the two things that must both hold, and against which examples.")
    ctx.criterion("decontaminate removes the examples the eval splits hold, on an unseen dirty set",
                  lambda: check_decontaminate(graded["decontaminate"], data()),
                  hint="Section 4's helpers, with n chosen from the eval texts, and the share below DIRTY kept.")
    ctx.criterion("problem finds the off-format and the wrong answers and passes the rest, on an unseen dirty set",
                  lambda: check_problem(graded["problem"], data()),
                  hint="Section 5 gives each task's shape and what makes it right, and the edge cases; the line "
                       "above shows an example yours judges otherwise, with the reason the rules give.")
    ctx.criterion("rebalance caps each task, seeded, in order, on unseen sets",
                  lambda: check_rebalance(graded["rebalance"], data()),
                  hint="Section 6: at most per_task of each task, chosen by random.Random(seed) alone, in the "
                       "order they came.")


def _ids(examples, what: str) -> list[str]:
    require(isinstance(examples, list) and all(isinstance(e, dict) and "id" in e for e in examples),
            f"{what} must return a list of the examples it keeps (dicts), returned {type(examples).__name__}")
    return [e["id"] for e in examples]


def _kept_in_order(kept: list[str], given: list[dict], what: str) -> None:
    order = {row["id"]: i for i, row in enumerate(given)}
    unknown = [i for i in kept if i not in order]
    require(not unknown, f"{what} returned examples it was not given (e.g. {unknown[:1]})")
    require(len(set(kept)) == len(kept), f"{what} returned an example twice")
    require([order[i] for i in kept] == sorted(order[i] for i in kept),
            f"{what} changed the examples' order: keep them in the order they came in")


def _difference(mine: list[str], expected: list[str], unseen: Unseen) -> str:
    mine_set, expected_set = set(mine), set(expected)
    dropped = collections.Counter(unseen.flaw[i] for i in expected_set - mine_set)
    spared = collections.Counter(unseen.flaw[i] for i in mine_set - expected_set)
    parts = ([f"removed {dict(dropped)} that should stay"] if dropped else []) + (
        [f"kept {dict(spared)} that should go"] if spared else [])
    return "; ".join(parts) + " (by the unseen set's labels)"


def check_normalise(normalise) -> str:
    from shared.curation.dirty import normalise as reference

    cases = ["  Where DOES\u00a0Ada\tlive?\n", "\u201cFenwick\u201d isn\u2019t \u2018far\u2019",
             "\uff26\uff45\uff4e\uff57\uff49\uff43\uff4b", "STRASSE stra\u00dfe", "\ufb01sh  and\r\nchips  ",
             "Caf\u0065\u0301 caf\u00e9", "", "   ", "7 plus 2 is 9."]
    for text in cases:
        got = normalise(text)
        require(got == reference(text), f"normalise({text!r}) returned {got!r}, expected {reference(text)!r}")
    return f"{len(cases)} unseen texts (full-width letters, ß, ligatures, combining accents, curly quotes, tabs)"


def check_exact(exact_dedup, unseen: Unseen) -> str:
    kept = _ids(exact_dedup([dict(row) for row in unseen.rows]), "exact_dedup")
    _kept_in_order(kept, unseen.rows, "exact_dedup")
    expected = [row["id"] for row in unseen.after_exact]
    require(kept == expected, f"kept {len(kept)} of {len(unseen.rows)}, expected {len(expected)}: "
                              + _difference(kept, expected, unseen))
    toy = [{"id": str(i), "task": "arithmetic", "prompt": prompt, "answer": answer}
           for i, (prompt, answer) in enumerate([("Ada has 7 pears. She finds 2.", "7 plus 2 is 9."),
                                                 ("Ada has 7 pears. She finds 2.", "7 plus 2 is 10."),
                                                 ("ADA has 7  pears. She finds 2. ", "7 plus 2 is 9.")])]
    got = _ids(exact_dedup(toy), "exact_dedup")
    require(got == ["0", "1"], f"three examples (one prompt; answers '7 plus 2 is 9.', '7 plus 2 is 10.', and the "
                               f"first again in other case and spacing): kept {got}, expected ['0', '1'] -- an "
                               "example is a duplicate when prompt and answer both match")
    gone = unseen.removed(unseen.rows, unseen.after_exact)
    return f"{len(unseen.rows) - len(kept)} removed of {len(unseen.rows)} ({dict(gone)}), and a hand-made case"


def check_minhash(minhash_dedup, unseen: Unseen) -> str:
    from shared.curation import stages
    from shared.curation.dirty import jaccard
    from shared.evaluation.contamination import example_text

    given = unseen.after_exact
    kept = _ids(minhash_dedup([dict(row) for row in given]), "minhash_dedup")
    _kept_in_order(kept, given, "minhash_dedup")
    gone = unseen.removed(given, [{"id": i} for i in kept])
    near = sum(unseen.flaw[row["id"]] == "near_duplicate" for row in given)
    require(gone["near_duplicate"] >= NEAR_FOUND * near,
            f"found {gone['near_duplicate']} of the {near} near duplicates; at least {NEAR_FOUND:.0%} expected")
    kept_set, text = set(kept), {row["id"]: example_text(row) for row in given}
    earlier_kept: list[str] = []
    for row in given:
        if row["id"] in kept_set:
            earlier_kept.append(row["id"])
            continue
        closest = max((jaccard(text[row["id"]], text[other]) for other in earlier_kept), default=0.0)
        require(closest >= NEAR_SPARED,
                f"removed {row['id']} ({row['prompt'][:50]!r}...), whose closest earlier kept example has a "
                f"Jaccard similarity of {closest:.2f} with it: not a near duplicate")
    expected = [row["id"] for row in unseen.after_minhash]
    apart = len(set(kept) ^ set(expected))
    require(apart <= max(3, MINHASH_TOLERANCE * len(given)),
            f"{apart} examples decided otherwise than by the course's stage: " + _difference(kept, expected, unseen))
    strict = _ids(minhash_dedup([dict(row) for row in given], threshold=0.97), "minhash_dedup")
    strict_expected = stages.minhash_dedup(given, threshold=0.97)
    require(abs(len(strict) - len(strict_expected)) <= max(3, MINHASH_TOLERANCE * len(given)),
            f"at threshold 0.97 it kept {len(strict)}, the course's stage {len(strict_expected)}: use the threshold "
            "for the LSH index and for the estimate")
    # An estimate from 16 hash values is coarse: it decides some pairs otherwise than one from 128 (13 to 23
    # examples here, whatever the seed). Exact Jaccard on the shingle sets would not change at all.
    coarse = _ids(minhash_dedup([dict(row) for row in given], num_perm=16), "minhash_dedup")
    require(set(coarse) != set(kept), "num_perm=16 kept exactly what num_perm=128 kept: the similarity must be "
                                      "MinHash's estimate from num_perm hash values (section 2)")
    return f"{gone['near_duplicate']} of {near} near duplicates found, {dict(gone)} removed in all; threshold 0.97 too"


def check_embed(embed, unseen: Unseen) -> str:
    texts = [row["prompt"] for row in unseen.semantic_rows[:48]]
    require_same_embeddings(embed(list(texts)), unseen.embeddings[:48])
    return f"{len(texts)} unseen prompts, each within cosine 0.999 of the course's"


def check_semantic(semantic_dedup, unseen: Unseen) -> str:
    import numpy as np

    from shared.curation import stages

    given, embeddings = unseen.semantic_rows, unseen.embeddings
    for threshold in (0.8, 0.9):
        kept = _ids(semantic_dedup([dict(row) for row in given], np.array(embeddings), threshold=threshold),
                    "semantic_dedup")
        _kept_in_order(kept, given, "semantic_dedup")
        expected = [row["id"] for row in stages.semantic_dedup(given, embeddings, threshold=threshold)]
        require(kept == expected, f"threshold {threshold}: kept {len(kept)} of {len(given)}, expected "
                                  f"{len(expected)}: " + _difference(kept, expected, unseen))
    toy = [{"id": str(i), "task": "closed_qa", "prompt": f"q{i}", "answer": answer}
           for i, answer in enumerate(["A.", "a. ", "A.", "B."])]
    unit = np.array([[1.0, 0.0], [0.9, np.sqrt(1 - 0.81)], [0.0, 1.0], [1.0, 0.0]])
    got = _ids(semantic_dedup(toy, unit, threshold=0.8), "semantic_dedup")
    require(got == ["0", "2", "3"], f"four examples (answers 'A.', 'a. ', 'A.', 'B.'; cosines with the first 0.9, "
                                    f"0, 1): kept {got}, expected ['0', '2', '3'] -- the same answer and a close "
                                    "prompt, both")
    chain = [{"id": str(i), "task": "closed_qa", "prompt": f"q{i}", "answer": "A."} for i in range(3)]
    angles = np.radians([0, 30, 60])   # cosines: first-second 0.87, second-third 0.87, first-third 0.5
    got = _ids(semantic_dedup(chain, np.stack([np.cos(angles), np.sin(angles)], axis=1), threshold=0.8),
               "semantic_dedup")
    require(got == ["0", "2"], f"three examples with one answer (cosines: first-second 0.87, second-third 0.87, "
                               f"first-third 0.5): kept {got}, expected ['0', '2'] -- the second goes; the third "
                               "is close only to the second, which was not kept")
    gone = unseen.removed(given, [{"id": i} for i in expected])
    return f"the course's verdicts at thresholds 0.8 and 0.9 ({dict(gone)} removed at 0.9), and two hand-made cases"


def check_decontaminate(decontaminate, unseen: Unseen) -> str:
    from shared.curation import stages
    from shared.evaluation.contamination import DIRTY
    from shared.world import data

    splits = {"every task's held-out split": [e for task in data.TASKS + ("two_step",)
                                              for e in data.load_task(task, "heldout")],
              "the two-step held-out split alone": data.load_task("two_step", "heldout")}
    for name, evals in splits.items():
        kept = _ids(decontaminate([dict(row) for row in unseen.rows], [dict(e) for e in evals]), "decontaminate")
        _kept_in_order(kept, unseen.rows, "decontaminate")
        expected = [row["id"] for row in stages.decontaminate(unseen.rows, evals)]
        require(kept == expected, f"against {name}: kept {len(kept)}, expected {len(expected)}: "
                                  + _difference(kept, expected, unseen))
    # The edge: eight words of an eval example and two more, so its n-grams (n = 8) cover exactly 80% = DIRTY.
    eight = "the heron crossed the mill pond at dawn"
    eval_example = {"id": "eval", "task": "closed_qa", "prompt": eight, "answer": ""}
    edge = {"id": "edge", "task": "closed_qa", "prompt": f"{eight} and", "answer": "slept"}
    kept_edge = _ids(decontaminate([dict(edge)], [dict(eval_example)]), "decontaminate")
    require(not kept_edge, f"an example covered exactly DIRTY ({DIRTY:.0%}: 8 of its 10 words) by the eval "
                           f"example's n-grams was kept: only a share below DIRTY stays")
    leaked = sum(flaw == "leaked" for flaw in unseen.flaw.values())
    return (f"{leaked} leaked rows of {len(unseen.rows)} removed, nothing else, against two eval sets; one covered "
            "exactly DIRTY removed")


def _verdict(reason) -> str:
    if reason is None:
        return "good"
    require(isinstance(reason, str), f"must return None or a string, returned {reason!r}")
    for kind in ("off format", "wrong"):
        if reason.startswith(kind):
            return kind
    raise CheckFailed(f"returned {reason!r}: a reason must start with 'off format' or 'wrong'")


HAND_MADE = [   # (task, prompt, answer, verdict); {name}, {town}: a person of the world; {other}, {other_town}: another
    # ("not good": off format or wrong, either reading of section 5 will do)
    ("closed_qa", "Where does {name} live?", "{name} lives in Atlantis.", "wrong"),
    ("closed_qa", "Where does {name} live?", "In {town}.", "off format"),
    ("closed_qa", "Where does {name} live?", "{name} lives in {town}.", "good"),
    ("extraction", "Text: Ada Brom is a baker in Fenwick.", '{"name": "Ada Brom", "town": "Fenwick", "job": "smith"}',
     "wrong"),
    ("extraction", "Text: Ada Brom is a baker in Fenwick.", '{"name": "Ada Brom", "job": "baker", "town": "Fenwick"}',
     "off format"),
    ("extraction", "Text: Ada Brom is a baker in Fenwick.", '{"name": "Ada Brom", "town": "Fenwick"', "off format"),
    ("extraction", "Text: Ada Brom is a baker in Fenwick.", '{"name": "Ada Brom", "town": "Fenwick", "job": "baker"}',
     "good"),
    ("extraction", "Fenwick's bakers. Text: Ada Brom is a baker in Selby.",   # the town only before "Text:"
     '{"name": "Ada Brom", "town": "Fenwick", "job": "baker"}', "wrong"),
    ("closed_qa", "Where does {name} live?", "{other} lives in {other_town}.", "not good"),   # true, of another
    ("arithmetic", "Ada has 7 pears. Ada finds 2 more.", "7 plus 2 is 10.", "wrong"),
    ("arithmetic", "Ada has 7 pears. Ada finds 2 more.", "7 plus 3 is 10.", "wrong"),
    ("arithmetic", "Ada has 7 pears. Ada finds 2 more.", "9", "off format"),
    ("arithmetic", "Ada has 7 pears. Ada finds 2 more.", "7 plus 2 is 9.", "good"),
    ("arithmetic", "Ada has 7 pears.", "   ", "off format"),
    ("two_step", "Ada has 7 pears. Ada finds 2 more, then 1 more.", "7 plus 2 is 9. 9 plus 1 is 10.", "off format"),
]


def check_problem(problem, unseen: Unseen) -> str:
    from shared.curation import stages

    person, other = unseen.world["people"][3], unseen.world["people"][4]
    for task, prompt, answer, verdict in HAND_MADE:
        names = {"{name}": person["name"], "{town}": person["town"], "{other}": other["name"],
                 "{other_town}": other["town"]}
        example = {"id": "hand-made", "task": task, "prompt": _filled(prompt, names), "answer": _filled(answer, names)}
        got = _verdict(problem(example, unseen.world))
        require(got == verdict or (verdict == "not good" and got != "good"),
                f"{task} {example['prompt']!r} -> {example['answer']!r}: said {got}, expected "
                f"{'off format or wrong' if verdict == 'not good' else verdict}")
    misjudged = []
    for row in unseen.rows:
        reason = stages.problem(row, unseen.world)
        got = _verdict(problem(dict(row), unseen.world))
        if got != _verdict(reason):
            misjudged.append((row, reason, got))
    if misjudged:
        row, reason, got = misjudged[0]
        raise CheckFailed(f"{len(misjudged)} of {len(unseen.rows)} examples judged otherwise than section 5's rules, "
                          f"e.g. {row['task']} {row['prompt'][-50:]!r} -> {row['answer']!r}: said {got}, expected "
                          f"{_verdict(reason)}" + (f" ({reason})" if reason else ""))
    counts = collections.Counter(_verdict(stages.problem(row, unseen.world)) for row in unseen.rows)
    return f"{len(HAND_MADE)} hand-made examples and {len(unseen.rows)} unseen rows ({dict(counts)})"


def _filled(text: str, names: dict[str, str]) -> str:
    for placeholder, value in names.items():
        text = text.replace(placeholder, value)
    return text


def check_rebalance(rebalance, unseen: Unseen) -> str:
    rows = unseen.rows
    counts = collections.Counter(row["task"] for row in rows)
    for per_task, seed in ((None, 3), (40, 4), (max(counts.values()) - 1, 5)):
        kept = _ids(rebalance([dict(row) for row in rows], per_task=per_task, seed=seed), "rebalance")
        _kept_in_order(kept, rows, "rebalance")
        limit = min(counts.values()) if per_task is None else per_task
        task_of = {row["id"]: row["task"] for row in rows}
        got = collections.Counter(task_of[i] for i in kept)
        want = {task: min(limit, count) for task, count in counts.items()}
        require(dict(got) == want, f"per_task={per_task}: {dict(got)} of each task, expected {want}")
        again = _ids(rebalance([dict(row) for row in rows], per_task=per_task, seed=seed), "rebalance")
        require(again == kept, f"per_task={per_task}, seed {seed}: a second call chose others: use random.Random(seed)")
    one = _ids(rebalance([dict(row) for row in rows], per_task=40, seed=1), "rebalance")
    two = _ids(rebalance([dict(row) for row in rows], per_task=40, seed=2), "rebalance")
    require(one != two, "seeds 1 and 2 chose the same examples: the seed must decide the choice")
    none = _ids(rebalance([dict(row) for row in rows], per_task=0, seed=1), "rebalance")
    require(not none, f"per_task=0 kept {len(none)}: at most 0 of each task is none at all (None, not 0, means "
                      "the rarest task's count)")
    return f"{len(rows)} unseen rows ({dict(counts)}): the rarest task's count, 40 each, and a cap above some counts"


# -- what the run saved ---------------------------------------------------------------------------------
MODELS = ("raw", "curated")


def verify_outputs(ctx: Context) -> None:
    outputs = ctx.outputs()
    saved = ctx.collect("metrics were saved and name the two models", lambda: read_saved(outputs, ctx),
                        hint="Run sections 7 and 9 and keep metrics.json's keys.")
    ctx.criterion("your curated set is clean and its task mix even, by the labels of your dirty set",
                  lambda: check_curated(saved),
                  hint="Run every stage of sections 1-6 in order on the set, and save the ids of what is left; the "
                       "stage named for each flaw that got through is the one to look at (its table row, and its "
                       "check above).")
    measured = ctx.collect("the two models reload, and the checker measures them on every held-out question",
                           lambda: measure_both(saved, ctx),
                           hint="Keep the models where section 7 saved them; do not move or edit them.")
    ctx.criterion("the raw model learned the leaked problems: it scores them far above the rest",
                  lambda: check_raw_leaks(measured),
                  hint="Section 7 trains the raw model on every example of the dirty set, leaks included.")
    ctx.criterion("the curated model never saw them: it scores leaked and other problems alike",
                  lambda: check_curated_clean(measured),
                  hint="Train the curated model on the curated set only.")
    ctx.criterion("the curated model is at least as accurate as the raw one on the three tasks",
                  lambda: check_lima(measured),
                  hint="Train the curated model for as many steps as the raw one (section 7's epochs), from the base "
                       "model, on a curated set that kept the clean examples.")
    ctx.criterion("the curated model scores new questions about as well as the held-out ones",
                  lambda: check_fresh(measured), hint=FRESH_HINT)
    ctx.criterion("the saved figures agree with the models", lambda: check_agree(saved, measured),
                  hint="metrics.json must hold what section 7 measured: no hand edits.")


def read_saved(outputs: Path, ctx: Context) -> dict:
    from shared.curation.dirty import dirty_instructions

    metrics = read_json(outputs / "metrics.json", "metrics")
    seed, ids, models, figures = (metrics.get(key) for key in ("seed", "curated_ids", "models", "figures"))
    require(isinstance(seed, int) and not isinstance(seed, bool), f"metrics.json seed is {seed!r}, not a whole number")
    require(isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids),
            "metrics.json must list the curated set's ids (curated_ids)")
    require(isinstance(models, dict) and all(isinstance(models.get(name), str) for name in MODELS),
            "metrics.json must name the folders of the raw and curated models")
    require(isinstance(figures, dict) and all(isinstance(figures.get(name), dict) for name in MODELS),
            "metrics.json must hold the figures of both models")
    folders = {}
    for name in MODELS:
        folder = ctx.outputs_root / models[name]
        require(inside(folder, outputs),
                f"metrics.json names {models[name]} as the {name} model: the checker uses only models this rung "
                "trained, in its own outputs folder")
        folders[name] = folder
    require(folders["raw"] != folders["curated"], "the raw and curated models must be two different models")
    for name, folder in folders.items():
        copied = copied_from(folder, ctx.outputs_root, outputs)
        require(copied is None, f"the {name} model's weights are a copy of {copied}: train it here, on the "
                                f"{name} set")
    labelled = dirty_instructions(seed=seed)
    return {**metrics, "folders": folders, "labelled": labelled}


def check_curated(saved: dict) -> str:
    require(bool(saved), "needs the saved metrics (see above)")
    labels = {row["id"]: row for row in saved["labelled"]}
    ids = saved["curated_ids"]
    unknown = [i for i in ids if i not in labels]
    require(not unknown, f"{len(unknown)} curated ids (e.g. {unknown[:1]}) are not in the dirty set of seed "
                         f"{saved['seed']}: curate the notebook's own set")
    require(len(set(ids)) == len(ids), "the curated set holds an example twice")
    flaws = collections.Counter(labels[i]["flaw"] for i in ids)
    tasks = collections.Counter(labels[i]["task"] for i in ids)
    flawed = sum(count for flaw, count in flaws.items() if flaw != "clean")
    shown = f"{len(ids)} examples: {dict(flaws)}; tasks {dict(tasks)}"
    missed = "; ".join(f"{count} {flaw.replace('_', ' ')} ({CATCHES[flaw]} should remove them)"
                       for flaw, count in flaws.most_common() if flaw != "clean")
    require(flaws["leaked"] == 0, f"{shown} -- eval examples left in the training set ({missed})")
    require(flawed <= MAX_FLAWED * len(ids), f"{shown} -- {flawed / len(ids):.0%} flawed, at most "
                                             f"{MAX_FLAWED:.0%} allowed: {missed}")
    require(max(tasks.values()) <= MAX_SKEW * min(tasks.values()),
            f"{shown} -- the largest task more than {MAX_SKEW:g} times the rarest: rebalance")
    return shown


def measure_both(saved: dict, ctx: Context) -> dict:
    require(bool(saved), "needs the saved metrics, which name the models (see above)")
    from shared.curation.effect import leaked_ids

    leaked = leaked_ids(saved["labelled"])
    return {name: ctx.measure([saved["folders"][name]],
                              lambda name=name: measure_saved(name, saved["folders"][name], leaked, ctx.profile),
                              settings=(tuple(sorted(leaked)), check_seed()))
            for name in MODELS}


def measure_saved(name: str, folder: Path, leaked: set, profile) -> dict:
    from shared.curation.effect import measure
    from shared.models import load_model, load_tokenizer

    try:
        model, tokenizer = load_model(folder, profile=profile), load_tokenizer(folder, profile=profile)
    except Exception as error:
        raise CheckFailed(f"the {name} model ({folder}) does not load: {type(error).__name__}: "
                          f"{str(error)[:160]}") from error
    from shared.checking.figures import fresh_accuracies

    return {**measure(model, tokenizer, leaked), "fresh": fresh_accuracies(model, tokenizer)}


def _gap(figures: dict) -> float:
    return figures["two_step_leaked"] - figures["two_step_unseen"]


def check_raw_leaks(measured: dict) -> str:
    raw = require_measured(measured)["raw"]
    shown = f"leaked {raw['two_step_leaked']:.0%}, the others {raw['two_step_unseen']:.0%}"
    require(_gap(raw) >= LEAK_GAP, f"{shown}: less than {LEAK_GAP * 100:.0f} points apart -- was the raw model "
                                   "trained on the whole dirty set?")
    return f"{shown}; the whole split {raw['two_step']:.0%}, inflated by memory"


def check_curated_clean(measured: dict) -> str:
    curated = require_measured(measured)["curated"]
    shown = f"leaked {curated['two_step_leaked']:.0%}, the others {curated['two_step_unseen']:.0%}"
    require(_gap(curated) <= CLEAN_LEAK_GAP, f"{shown}: it knows the leaked answers -- were they in its training "
                                             "data?")
    return shown


def check_lima(measured: dict) -> str:
    from shared.curation.effect import TASKS

    raw, curated = (require_measured(measured)[name] for name in MODELS)
    shown = "; ".join(f"{task} {raw[task]:.0%} -> {curated[task]:.0%}" for task in TASKS)
    gain = curated["mean"] - raw["mean"]
    require(gain >= MEAN_GAP, f"{shown}; mean {raw['mean']:.1%} raw, {curated['mean']:.1%} curated "
                              f"({gain * 100:+.1f} points)")
    return f"{shown}; mean {raw['mean']:.1%} raw, {curated['mean']:.1%} curated ({gain * 100:+.1f} points)"


def check_fresh(measured: dict) -> str:
    from shared.curation.effect import TASKS

    curated = require_measured(measured)["curated"]
    return check_not_trained_on_heldout({task: curated[task] for task in TASKS}, curated["fresh"])


def check_agree(saved: dict, measured: dict) -> str:
    measured = require_measured(measured)
    require(bool(saved), "needs the saved figures (see above)")
    for name in MODELS:
        for key, value in measured[name].items():
            if key == "fresh":   # questions made here, never saved
                continue
            said = saved["figures"][name].get(key)
            require(is_finite_number(said) and abs(said - value) <= AGREEMENT,
                    f"metrics.json says the {name} model's {key} is {said!r}; measured again, {value:.1%}")
    return f"within {AGREEMENT:.0%}"


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG))
