"""A rung made for the grading tests: the checking framework's whole path (a notebook run, a graded function in
its own process with a forbidden reference, figures recomputed from what the run saved, hidden cases, a written
answer) in seconds, so a class of thirty can be graded in a test. Its notebook is built by
tests/grading_class.py, the exercise from the solution as every rung's is."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository

from shared.checking import Context, hidden, main, read_json, require, sandbox  # noqa: E402
from shared.checking.guards import Forbidden  # noqa: E402

RUNG = "90"
FOLDER = "90-fixture"
sandbox.PRELOAD = ["shared.checking.guards", "shared.notebooks.graded"]  # no torch needed here
TEXTS = ["the owl keeps watch", "Fenwick", "a potter in Quillby makes jugs"]   # what the notebook measures
CASES = [[["one two", "three"], 1.5], [["  spaced   out  "], 2.0], [["a b c d", "", "e"], 5 / 3]]
FORBIDDEN = {"mean_words": Forbidden("the mean is yours to compute", modules=("statistics",))}


def mean_words(texts):
    """The reference: the mean number of whitespace-separated words."""
    if not texts:
        raise ValueError("no texts")
    return sum(len(text.split()) for text in texts) / len(texts)


def check_mean_words(graded) -> str:
    cases = hidden.cases(RUNG, "CASES", CASES)
    for texts, _ in cases:
        got = graded(list(texts))
        require(abs(got - mean_words(texts)) < 1e-9, f"mean_words({texts!r}) returned {got!r}, "
                                                     f"expected {mean_words(texts)!r}")
    return f"{len(cases)} unseen cases"


def verify(ctx: Context) -> None:
    metrics = ctx.collect("metrics were saved", lambda: read_json(ctx.outputs_root / FOLDER / "metrics.json",
                                                                   "the metrics"))

    def agrees():
        require(bool(metrics), "no metrics (see above)")
        require(abs(metrics.get("mean_words", -1) - mean_words(TEXTS)) < 1e-9,
                f"metrics.json says {metrics.get('mean_words')!r}; the texts have {mean_words(TEXTS)!r} words "
                "on average")
        return "recomputed here"

    ctx.criterion("the saved figure is the texts' mean", agrees, hint="Run the cell that saves metrics.json.")


def check(ctx: Context) -> None:
    ctx.run_notebook()
    graded = ctx.graded(["mean_words"], forbidden=FORBIDDEN)
    ctx.criterion("mean_words gives the mean word count, on unseen texts",
                  lambda: check_mean_words(graded["mean_words"]), hint="Split on whitespace; divide by len(texts).")
    ctx.from_the_run(verify)
    ctx.review("written answer: why a mean", ctx.answers().get("why-a-mean"), min_words=5,
               hint="Write a sentence in the last cell.")


if __name__ == "__main__":
    sys.exit(main(check, rung=RUNG, folder=Path(__file__).parent))
