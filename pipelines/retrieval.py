"""Retrieved examples: each record's k most similar labelled records as its own few-shot turns.

Issue 18: the loop teaches the LLM. The method is kNN demonstration selection (Liu et al. 2022,
"What Makes Good In-Context Examples for GPT-3?", DeeLIO, arXiv:2101.06804): the labelled texts
nearest to the record by the cosine of sentence embeddings, the nearest placed last (next to the
record's own turn, the order Liu et al. found best). Pure: numpy and pandas; the caller embeds
(``labeltriage.api.prelabel`` with :func:`curation.adapters.embeddings.embed_texts`).

A record never sees its own label: pool entries sharing its id or its text (after
:func:`text_key`) are left out. So a gold record is answered from the same kind of prompt as any
other record, and the gold still measures the answers honestly.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipelines.injection import find_instructions, redact_instructions

POOL_COLUMNS = ["id", "text", "label", "source"]
CUT_MARK = " [...]"


ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def text_key(text: str) -> str:
    """The text as compared for "the same text": Unicode NFKC, zero-width characters and soft
    hyphens removed, whitespace collapsed, case folded."""
    normal = unicodedata.normalize("NFKC", str(text)).translate(ZERO_WIDTH)
    return " ".join(normal.split()).casefold()


def example_pool(
    tables: Sequence[tuple[str, pd.DataFrame]], labels: Sequence[str]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """One example pool from labelled tables, each ``(source name, frame with id, text, label)``.

    Earlier tables win: a text (by :func:`text_key`) already in the pool is not added again. Rows
    without a label in ``labels`` (none, a tie) are not labelled records and are skipped; labelled
    rows with an empty text or a text already in the pool are left out. Returns the pool, columns
    ``id, text, label, source`` (``source``: the table's name), index 0..n-1, and the labelled
    rows left out per source."""
    names, seen, rows = set(labels), set(), []
    left_out: dict[str, int] = {}
    for source, frame in tables:
        for rid, text, label in zip(frame["id"], frame["text"], frame["label"], strict=True):
            if not (isinstance(label, str) and label in names):  # single-label: a tie or none is no label
                continue
            key = text_key(str(text)) if text is not None and str(text).strip() else ""
            if not key or key in seen:
                left_out[source] = left_out.get(source, 0) + 1
                continue
            seen.add(key)
            rows.append({"id": str(rid), "text": str(text), "label": label, "source": source})
    return pd.DataFrame(rows, columns=POOL_COLUMNS), left_out


def nearest_examples(
    query_vectors: np.ndarray,
    pool_vectors: np.ndarray,
    k: int,
    *,
    query_keys: Sequence[Sequence[str]] = (),
    pool_keys: Sequence[Sequence[str]] = (),
    chunk_size: int = 1024,
) -> np.ndarray:
    """The ``k`` most similar pool rows of each query row, by cosine similarity.

    ``query_vectors`` ``(n, d)`` and ``pool_vectors`` ``(m, d)``: embeddings (normalised here).
    ``query_keys`` / ``pool_keys``: parallel lists of key columns (e.g. ids, then :func:`text_key`
    of the texts), each of length ``n`` / ``m``: a pool row equal to the query on any key column
    is never its example. Returns ``(n, k)`` int indices into the pool, nearest last; ``-1`` on
    the left where fewer than ``k`` pool rows are eligible. Memory: ``chunk_size x m`` floats.
    Raises ValueError for mismatched shapes or key columns."""
    query = np.asarray(query_vectors, dtype=np.float32)
    pool = np.asarray(pool_vectors, dtype=np.float32)
    if query.ndim != 2 or pool.ndim != 2 or (len(pool) and query.shape[1] != pool.shape[1]):
        raise ValueError(f"vectors must be (n, d) and (m, d); got {query.shape} and {pool.shape}")
    if len(query_keys) != len(pool_keys):
        raise ValueError("query_keys and pool_keys need the same number of key columns")
    n, m = len(query), len(pool)
    out = np.full((n, k), -1, dtype=np.int64)
    if k == 0 or m == 0 or n == 0:
        return out
    query = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    pool = pool / np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
    codes = []
    for q_keys, p_keys in zip(query_keys, pool_keys, strict=True):
        if len(q_keys) != n or len(p_keys) != m:
            raise ValueError(f"key columns must have {n} (query) and {m} (pool) entries")
        both, _ = pd.factorize(pd.Series([*map(str, q_keys), *map(str, p_keys)]))
        codes.append((both[:n], both[n:]))
    take = min(k, m)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sims = query[start:stop] @ pool.T
        for q_codes, p_codes in codes:
            sims[q_codes[start:stop, None] == p_codes[None, :]] = -np.inf
        top = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        top_sims = np.take_along_axis(sims, top, axis=1)
        # least similar first (-inf, the excluded, leftmost), nearest last; a tie puts the
        # earlier pool row nearer
        order = np.lexsort((-top, top_sims), axis=1)
        ranked = np.take_along_axis(top, order, axis=1)
        ranked[np.isneginf(np.take_along_axis(top_sims, order, axis=1))] = -1
        out[start:stop, k - take :] = ranked
    return out


def example_text(text: str, max_chars: int, labels: Sequence[str] = ()) -> str:
    """An example's text as the model reads it: instructions to the model redacted (as the
    record's own text, :mod:`pipelines.injection`), cut to ``max_chars`` characters."""
    shown = redact_instructions(text, find_instructions(text, list(labels)))
    if len(shown) <= max_chars:
        return shown
    return shown[: max(max_chars - len(CUT_MARK), 1)].rstrip() + CUT_MARK


def examples_for(
    records: pd.DataFrame,
    pool: pd.DataFrame,
    record_vectors: np.ndarray,
    pool_vectors: np.ndarray,
    k: int,
    max_chars: int,
    labels: Sequence[str] = (),
) -> tuple[list[list[tuple[str, Any]]], list[list[str]]]:
    """Per record of ``records`` (``id``, ``text``): its examples as ``(text, label)`` pairs, nearest
    last (for :func:`pipelines.prompt.render_messages`), and the pool ids they came from.

    ``pool``: :func:`example_pool`'s frame; ``record_vectors`` ``(n, d)`` and ``pool_vectors``
    ``(m, d)`` their embeddings, row for row. Leave-one-out by id and by :func:`text_key`."""
    texts = records["text"].fillna("").astype(str).tolist()
    nearest = nearest_examples(
        record_vectors,
        pool_vectors,
        k,
        query_keys=[records["id"].astype(str).tolist(), [text_key(t) for t in texts]],
        pool_keys=[pool["id"].astype(str).tolist(), [text_key(t) for t in pool["text"]]],
    )
    shown = [example_text(t, max_chars, labels) for t in pool["text"]]
    pool_labels, pool_ids = pool["label"].tolist(), pool["id"].astype(str).tolist()
    examples, ids = [], []
    for row in nearest:
        chosen = [int(j) for j in row if j >= 0]
        examples.append([(shown[j], pool_labels[j]) for j in chosen])
        ids.append([pool_ids[j] for j in chosen])
    return examples, ids
