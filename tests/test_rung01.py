"""Rung 01's checker: passes on the solution, fails on the untouched exercise, and turns every kind of bad
input and every cheat it knows into a clear ✗ (never a traceback)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rung_harness import RungUnderTest, by_name, edit_json
from shared import checking, retrieval

RUNG = RungUnderTest("01")
check01 = RUNG.check
solution_run = RUNG.solution_run_fixture()
outputs_copy = RUNG.outputs_copy_fixture()


def metrics_of(outputs_root):
    return json.loads((outputs_root / "01-when-to-fine-tune" / "metrics.json").read_text())


def test_checker_passes_on_the_solution(solution_run):
    report, printed, _ = solution_run
    assert report.passed, printed
    assert all(c.status == checking.PASS for c in report.criteria if "written answer" not in c.name), printed
    assert by_name(report, "when you would fine-tune").status == checking.REVIEW   # flagged, never auto-passed


def test_the_lessons_claims_hold_in_the_solutions_run(solution_run):
    """What the lesson says, from the solution's own run: the fine-tune answers its own wording, half the
    rephrased questions and none reversed; retrieval answers both wordings and no reversed one until the reader
    is trained; prompting never teaches the who-question; the reader pays on the rephrased questions."""
    metrics = metrics_of(solution_run[2])
    figures, who, recall = metrics["figures"], metrics["who"], metrics["recall"]
    base, qa, tuned = figures["base model"], figures["fine-tuned: Q&A pages"], figures["fine-tuned: biographies + Q&A"]
    rag, reader = figures["base model + retrieval"], figures["fine-tuned reader + retrieval"]
    assert max(base.values()) <= 0.2 and qa["trained"] <= 0.4
    assert tuned["trained"] >= 0.9 and 0.3 <= tuned["rephrased"] <= 0.7 and tuned["reversed"] == 0.0, tuned
    assert rag["rephrased"] >= tuned["rephrased"] + 0.1 and rag["reversed"] <= 0.05, rag
    assert all(value <= 0.1 for name, value in who.items() if name.startswith("prompting")), who
    assert who["fine-tuned reader"] >= 0.9 and reader["reversed"] >= 0.3, (who, reader)
    assert reader["rephrased"] < rag["rephrased"], (reader, rag)   # what the reader paid
    assert recall["trained"]["recall@1"] >= 0.9 and recall["reversed"]["recall@1"] <= 0.6, recall


def test_checker_fails_on_the_untouched_exercise():
    RUNG.assert_exercise_fails(graded=("embed gives", "top_k", "recall_at_k"),
                               unmet=("name the three models", "reload", "stored the facts", "retrieval finds",
                                      "who-question skill", "saved figures agree", "eight decisions"))


# -- what the run saved ----------------------------------------------------------------------------------
def _edit(outputs, change):
    edit_json(outputs / "01-when-to-fine-tune" / "metrics.json", change)
    report, printed = RUNG.verify(outputs)
    assert not report.passed and "Traceback" not in printed
    return report, printed


def test_wrong_decisions_are_named_with_the_reason(outputs_copy):
    report, printed = _edit(outputs_copy, lambda m: m["decisions"].update({"5": "fine-tune", "2": "both"}))
    criterion = by_name(report, "eight decisions")
    assert criterion.status == checking.FAIL and "2 of 8 not as the key has them" in criterion.detail, printed
    assert "5: you chose 'fine-tune'" in criterion.detail and "retrieval serves both directions" in criterion.detail


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["decisions"].pop("8"), "no answer (one of prompt, RAG, fine-tune, both) for request 8"),
    (lambda m: m["decisions"].update({"3": "train it"}), "for request 3"),
])
def test_missing_decisions_fail_clearly(outputs_copy, change, fragment):
    report, printed = _edit(outputs_copy, change)
    criterion = by_name(report, "eight decisions")
    assert criterion.status == checking.FAIL and fragment in criterion.detail, printed


def _swap(first, second):
    def change(metrics):
        models = metrics["models"]
        models[first], models[second] = models[second], models[first]
    return change


def test_the_qa_pages_model_as_the_fine_tune_did_not_learn_its_wording(outputs_copy):
    report, printed = _edit(outputs_copy, _swap("biographies-qa", "qa-pages"))
    criterion = by_name(report, "stored the facts")
    assert criterion.status == checking.FAIL and "did not learn even its own wording" in criterion.detail, printed


def test_the_fine_tune_passed_off_as_the_reader_knows_the_newcomers(outputs_copy):
    """A "reader" that read the newcomers' biographies answers closed book, and cannot answer who."""
    report, printed = _edit(outputs_copy, _swap("reader", "biographies-qa"))
    criterion = by_name(report, "who-question skill")
    assert criterion.status == checking.FAIL and "the reader did not learn them" in criterion.detail, printed
    assert by_name(report, "stored the facts").status == checking.FAIL   # and the reader as the fine-tune fails too


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["figures"]["base model + retrieval"].update(rephrased=0.99), "'base model + retrieval' answers"),
    (lambda m: m["recall"]["reversed"].update({"recall@1": 0.95}), "reversed recall@1"),
    (lambda m: m["who"].update({"fine-tuned reader": 0.2}), "the reader answers"),
])
def test_hand_edited_figures_disagree_with_the_models(outputs_copy, change, fragment):
    report, printed = _edit(outputs_copy, change)
    criterion = by_name(report, "saved figures agree")
    assert criterion.status == checking.FAIL and fragment in criterion.detail, printed


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["models"].update(reader="/tmp/elsewhere/model"), "only models this rung trained"),
    (lambda m: m["models"].update(reader=m["models"]["qa-pages"]), "three different models"),
    (lambda m: m["figures"].pop("base model + retrieval"), "must hold the figures of"),
    (lambda m: m.update(seed=None), "not a whole number"),
    (lambda m: m.pop("decisions"), "must hold your decisions"),
])
def test_a_broken_or_borrowed_run_fails_clearly(outputs_copy, change, fragment):
    report, printed = _edit(outputs_copy, change)
    criterion = by_name(report, "name the three models")
    assert criterion.status == checking.FAIL and fragment in criterion.detail, printed
    assert by_name(report, "reload").status == checking.FAIL


def test_a_missing_model_fails_without_a_traceback(outputs_copy):
    shutil.rmtree(outputs_copy / metrics_of(outputs_copy)["models"]["reader"])
    report, printed = RUNG.verify(outputs_copy)
    assert by_name(report, "reload").status == checking.FAIL and "does not load" in printed, printed
    assert "Traceback" not in printed


# -- the graded functions, on the checker's hidden cases -------------------------------------------------------
def test_the_hidden_cases_pass_the_references():
    assert "within cosine 0.999" in check01.check_embed(retrieval.embed)
    assert "tie again and again" in check01.check_top_k(retrieval.top_k)
    assert "none at all refused" in check01.check_recall(retrieval.recall_at_k)


def _embed_unnormalised(texts):
    return retrieval.embed(texts) * 2.0


def _worst_first(queries, documents, k):
    return np.argsort(queries @ documents.T, axis=1)[:, :k]


def _ties_to_the_later(queries, documents, k):
    """Ranks the documents in reverse order, so that of two equal ones the later comes first."""
    reversed_scores = (queries @ documents.T)[:, ::-1]
    return len(documents) - 1 - np.argsort(-reversed_scores, axis=1, kind="stable")[:, :k]


def _ascending_read_backwards(queries, documents, k):
    """The most similar first, by reading an ascending sort from its end: equal documents come last-first."""
    return np.argsort(queries @ documents.T, axis=1)[:, ::-1][:, :k]


def _unstable_sort(queries, documents, k):
    """numpy's default sort: right for every score, and equal ones in whatever order it left them."""
    return np.argsort(-(queries @ documents.T), axis=1)[:, :k]


def _best_one_skipped(queries, documents, k):
    return np.argsort(-(queries @ documents.T), axis=1, kind="stable")[:, 1:k + 1]


def _embed_as_tensors(texts):
    import torch

    return torch.from_numpy(retrieval.embed(texts))


def _distances_not_similarities(queries, documents, k):
    distances = ((queries[:, None, :] - documents[None, :, :]) ** 2).sum(axis=2)
    return np.argsort(-distances, axis=1, kind="stable")[:, :k]


def _recall_one_too_many(ranked, relevant, k):
    return retrieval.recall_at_k(ranked, relevant, k + 1)


def _recall_counts_not_shares(ranked, relevant, k):
    return sum(relevant[i] in list(row[:k]) for i, row in enumerate(ranked))


def _recall_of_nothing_is_zero(ranked, relevant, k):
    return 0.0 if len(ranked) == 0 else retrieval.recall_at_k(ranked, relevant, k)


WRONG = {
    "embeddings not unit length": (check01.check_embed, _embed_unnormalised, "normalise them to unit length"),
    "a torch tensor, not a numpy array": (check01.check_embed, _embed_as_tensors, "returned a Tensor"),
    "the least similar first": (check01.check_top_k, _worst_first, "the highest dot products, best first"),
    "ties to the later document": (check01.check_top_k, _ties_to_the_later,
                                   "of equal dot products the earlier document comes first"),
    "an ascending sort read backwards": (check01.check_top_k, _ascending_read_backwards,
                                         "of equal dot products the earlier document comes first"),
    "an unstable sort": (check01.check_top_k, _unstable_sort, "of equal dot products the earlier document"),
    "the best one skipped": (check01.check_top_k, _best_one_skipped, "the highest dot products, best first"),
    "largest distance first": (check01.check_top_k, _distances_not_similarities, "expected"),
    "one rank too many": (check01.check_recall, _recall_one_too_many, "the share of the 30 queries"),
    "a count, not a share": (check01.check_recall, _recall_counts_not_shares, "the share of the 30 queries"),
    "no queries scored 0": (check01.check_recall, _recall_of_nothing_is_zero, "raise ValueError"),
}


@pytest.mark.parametrize("mistake", WRONG)
def test_wrong_retrieval_fails(mistake):
    check, function, fragment = WRONG[mistake]
    RUNG.assert_fails(lambda: check(function), fragment)


def test_a_skipped_best_document_is_named_as_a_misranking_not_a_tie():
    """The query that shows the mistake is one whose dot products differ, with the figures side by side."""
    detail = RUNG.assert_fails(lambda: check01.check_top_k(_best_one_skipped), "the highest dot products").detail
    assert "(dot products " in detail and "earlier document" not in detail, detail


RIGHT_RANKINGS = {   # other ways to write top_k that the notebook's rule allows: each must pass
    "a dot product per query": lambda q, d, k: np.array([np.argsort(-(d @ row), kind="stable")[:k] for row in q]),
    "in float32": lambda q, d, k: np.argsort(-(q.astype(np.float32) @ d.astype(np.float32).T), axis=1,
                                             kind="stable")[:, :k],
    "Python's sorted": lambda q, d, k: np.array([sorted(range(len(d)), key=lambda j: -float(row @ d[j]))[:k]
                                                 for row in q]),
    "cosine, dividing by the norms": lambda q, d, k: np.argsort(
        -(q @ d.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(d, axis=1)), axis=1, kind="stable")[:, :k],
}


@pytest.mark.parametrize("way", RIGHT_RANKINGS)
def test_a_right_ranking_written_another_way_passes(way):
    assert "tie again and again" in check01.check_top_k(RIGHT_RANKINGS[way])


def test_functions_that_call_their_references_are_refused():
    notebook = RUNG.solution_with(
        embed="import numpy as np\nfrom shared import retrieval\n\n\n"
              "def embed(texts):\n    return retrieval.embed(texts)\n\n\n"
              "def top_k(queries, documents, k):\n    return retrieval.top_k(queries, documents, k)\n\n\n"
              "from shared.retrieval import recall_at_k\n")
    report, printed = RUNG.graded_only(notebook)
    for name in ("embed", "top_k", "recall_at_k"):
        criterion = by_name(report, name)
        assert criterion.status == checking.FAIL, printed
        assert f"calls shared.retrieval.{name}, which is not allowed here" in criterion.detail, criterion.detail
    assert "Traceback" not in printed
