"""Dense retrieval with a small sentence-embedding model: what RAG puts in front of a question.

    vectors = embed(texts)                            # all-MiniLM-L6-v2, one unit-length row per text
    ranked = top_k(embed(questions), vectors, k=3)    # per question, the k best documents' rows, best first
    recall_at_k(ranked, relevant, k=1)                # how often the right document is among the first k

Rung 01 retrieves passages about people to answer questions from; rung 05 finds paraphrased duplicates.
"""

from __future__ import annotations

import numpy as np


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length all-MiniLM-L6-v2 sentence embeddings (numpy, one row per text)."""
    from sentence_transformers import SentenceTransformer

    from shared.models import minilm_path
    from shared.progress import quiet

    model = SentenceTransformer(minilm_path(), device="cpu")
    return model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=not quiet())


def top_k(queries: np.ndarray, documents: np.ndarray, k: int) -> np.ndarray:
    """For each query row, the rows of the k documents with the highest cosine similarity (unit vectors: the dot
    product), best first; ties go to the earlier document."""
    scores = queries @ documents.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def recall_at_k(ranked, relevant, k: int) -> float:
    """The share of queries whose relevant document (relevant[i], a row) is among the first k of ranked[i]."""
    if len(ranked) == 0:
        raise ValueError("no queries to measure recall on")
    return float(np.mean([relevant[i] in list(row[:k]) for i, row in enumerate(ranked)]))
