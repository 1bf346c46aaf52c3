"""Where a run's retrieved examples come from (``retrieval.k`` > 0; the method: :mod:`pipelines.retrieval`).

The example pool is every labelled record ``labeltriage prelabel`` can see, in this order (a text
already in the pool is not added again): the input's own gold column, ``--examples FILE``, the
run's collected gold (``gold.parquet``) and the reviewers' majority labels already pulled
(``responses.parquet``, :func:`curation.feedback.human_majority`; ties and ``::audit`` copies
left out). Texts are embedded with the bundled MiniLM (:mod:`curation.adapters.embeddings`),
cached per text under ``<run>/cache/embeddings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from labeltriage.config import TaskConfig
from labeltriage.errors import InputError
from pipelines.io import gold_column_of, read_parquet, read_table, record_id
from pipelines.retrieval import example_pool, examples_for

EMBEDDING_CACHE = "cache/embeddings"


def _examples_file(path: Path, label_column: str | None) -> pd.DataFrame:
    frame = read_table(path)
    if "text" not in frame.columns:
        raise InputError(f"{path}: --examples needs a `text` column (columns: {', '.join(map(str, frame.columns))})")
    column = gold_column_of(frame, label_column, path)
    if "id" in frame.columns:
        ids = frame["id"].astype(str)
    else:
        ids = frame["text"].map(lambda text: record_id("examples", str(text)))
    return pd.DataFrame({"id": ids, "text": frame["text"], "label": frame[column]})


def _reviewed(run_dir: Path, labels: list[str]) -> pd.DataFrame:
    from curation.feedback import human_majority

    responses, prelabels = run_dir / "responses.parquet", run_dir / "prelabels.parquet"
    if not responses.is_file() or not prelabels.is_file():
        return pd.DataFrame(columns=["id", "text", "label"])
    majority = human_majority(read_parquet(responses), labels).dropna(subset=["majority"])
    majority = majority[~majority["record_id"].astype(str).str.contains("::", regex=False)]
    texts = read_parquet(prelabels).set_index("id")["text"]
    majority = majority[majority["record_id"].isin(texts.index)]
    return pd.DataFrame(
        {
            "id": majority["record_id"].astype(str),
            "text": texts.loc[majority["record_id"]].to_numpy(),
            "label": majority["majority"].to_numpy(),
        }  # fmt: skip
    )


def run_example_pool(
    task: TaskConfig, records: pd.DataFrame, run_dir: Path, examples: Path | None = None
) -> pd.DataFrame:
    """The run's example pool (:func:`pipelines.retrieval.example_pool`: ``id, text, label,
    source``, sources ``gold``, ``examples``, ``collected_gold``, ``reviewed``). Raises InputError
    for an unreadable ``examples`` file or one without ``text`` and a label column."""
    tables: list[tuple[str, pd.DataFrame]] = []
    if "gold_label" in records.columns:
        tables.append(("gold", records[["id", "text"]].assign(label=records["gold_label"])))
    if examples is not None:
        tables.append(("examples", _examples_file(Path(examples), None)))
    collected = run_dir / "gold.parquet"
    if collected.is_file() and (run_dir / "prelabels.parquet").is_file():
        gold = read_parquet(collected)
        texts = read_parquet(run_dir / "prelabels.parquet").set_index("id")["text"]
        gold = gold[gold["id"].isin(texts.index)]
        tables.append(("collected_gold", pd.DataFrame(
            {"id": gold["id"], "text": texts.loc[gold["id"]].to_numpy(), "label": gold["gold_label"].to_numpy()}
        )))  # fmt: skip
    tables.append(("reviewed", _reviewed(run_dir, task.label_names)))
    return example_pool(tables, task.label_names)


def attach_examples(
    task: TaskConfig, records: pd.DataFrame, pool: pd.DataFrame, run_dir: Path
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``records`` with ``examples`` (the ``(text, label)`` turns) and ``example_ids`` (their pool
    ids) per row, and what run.json says about it (``k``, pool size per source, records with
    examples). An empty pool adds nothing: the records are asked with the config's few-shot only."""
    k = task.retrieval.k
    info: dict[str, Any] = {
        "k": k,
        "max_example_chars": task.retrieval.max_example_chars,
        "pool": len(pool),
        "pool_by_source": {str(s): int(n) for s, n in pool["source"].value_counts().items()},
    }
    if pool.empty or records.empty:
        return records, info | {"records_with_examples": 0}
    from curation.adapters.embeddings import embed_texts

    cache = run_dir / EMBEDDING_CACHE
    record_vectors = embed_texts(records["text"].fillna("").astype(str).tolist(), cache_dir=cache)
    pool_vectors = embed_texts(pool["text"].tolist(), cache_dir=cache)
    examples, ids = examples_for(
        records, pool, record_vectors, pool_vectors, k, task.retrieval.max_example_chars, task.label_names
    )
    out = records.assign(examples=examples, example_ids=ids)
    return out, info | {"records_with_examples": sum(1 for chosen in ids if chosen)}


def reviews_not_yet_examples(task: TaskConfig, run_dir: Path) -> int:
    """Reviewed labels pulled since the last ``prelabel`` built its pool (0 with retrieval off):
    rerunning ``prelabel`` would show them to the model."""
    if not task.retrieval.k or not (run_dir / "run.json").is_file():
        return 0
    import json

    used = (json.loads((run_dir / "run.json").read_text()).get("retrieval") or {}).get("pool_by_source") or {}
    return max(len(_reviewed(run_dir, task.label_names)) - int(used.get("reviewed") or 0), 0)
