"""Where a run's retrieved examples come from (``retrieval.k`` > 0; the method: :mod:`pipelines.retrieval`).

The example pool is every labelled record ``labeltriage prelabel`` can see, in this order (a text
already in the pool is not added again): the input's own gold column, ``--examples FILE`` (ids
``examples:<id>``, so they never collide with the run's record ids), the run's collected gold
(``gold.parquet``) and the reviewers' majority labels already pulled (``responses.parquet``,
:func:`curation.feedback.human_majority`; ties and ``::audit`` copies left out). Gold and example
labels are checked as gold labels are (:func:`curation.gold.check_gold_labels`: ``Positive`` is
read as ``positive``, an unknown label stops the run). The pool is written to
``examples_pool.parquet``; texts are embedded with the bundled MiniLM
(:mod:`curation.adapters.embeddings`), cached per text under ``<run>/cache/embeddings``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from curation.gold import check_gold_labels
from labeltriage.config import TaskConfig
from labeltriage.errors import InputError, LabeltriageError
from pipelines.io import GOLD_COLUMNS, is_missing, read_parquet, read_table, record_id, user_ids
from pipelines.retrieval import example_pool, examples_for

EMBEDDING_CACHE = "cache/embeddings"
POOL_FILE = "examples_pool.parquet"


def _examples_file(path: Path, task: TaskConfig) -> pd.DataFrame:
    frame = read_table(path)
    text = next((c for c in ("text", task.text_column) if c in frame.columns), None)
    label = next((c for c in GOLD_COLUMNS if c in frame.columns), None)
    if text is None or label is None:
        missing = "a `text`" if text is None else f"a label column ({' or '.join(GOLD_COLUMNS)})"
        raise InputError(
            f"{path}: --examples needs {missing} (columns: {', '.join(map(str, frame.columns))}). "
            "Fix: name the columns `text` and `label`"
        )
    if "id" in frame.columns:  # unique and never empty, as --id-column (ids as the file spells them)
        ids = [f"examples:{rid}" for rid in user_ids(frame, "id", path, option="the `id` column")]
    else:
        ids = [record_id("examples", str(value)) for value in frame[text]]
    return pd.DataFrame({"id": ids, "text": frame[text], "label": frame[label]})


def _checked(frame: pd.DataFrame, task: TaskConfig, source: str) -> pd.DataFrame:
    labels = [None if is_missing(v) else v for v in frame["label"]]
    return frame.assign(label=check_gold_labels(labels, task.label_names, source=source).labels)


def _with_texts(ids: pd.Series, labels: pd.Series, texts: pd.Series) -> pd.DataFrame:
    """``id, text, label`` of labelled run records; ``texts``: the run's text by id (ids it does
    not have are dropped)."""
    ids = ids.astype(str)
    keep = ids.isin(texts.index).to_numpy()
    return pd.DataFrame(
        {"id": ids[keep].to_numpy(), "text": texts.loc[ids[keep]].to_numpy(), "label": labels[keep].to_numpy()}
    )


def run_example_pool(
    task: TaskConfig, records: pd.DataFrame, run_dir: Path, examples: Path | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The run's example pool (:func:`pipelines.retrieval.example_pool`: ``id, text, label,
    source``, sources ``gold``, ``examples``, ``collected_gold``, ``reviewed``) and the rows left
    out per source (no text, no label, a text already in the pool). Raises InputError for an
    unreadable ``examples`` file, one without ``text`` and a label column, or a gold or example
    label outside the task's labels (GoldLabelError, naming the labels and the nearest)."""
    tables: list[tuple[str, pd.DataFrame]] = []
    if "gold_label" in records.columns:
        gold = records[["id", "text"]].assign(label=records["gold_label"])
        tables.append(("gold", _checked(gold, task, "the input's gold column")))
    if examples is not None:
        tables.append(("examples", _checked(_examples_file(examples, task), task, str(examples))))
    prelabels, collected, responses = (
        run_dir / "prelabels.parquet",
        run_dir / "gold.parquet",
        run_dir / "responses.parquet",
    )
    texts = read_parquet(prelabels).set_index("id")["text"] if prelabels.is_file() else None
    if texts is not None and collected.is_file():
        gold = read_parquet(collected)
        tables.append(("collected_gold", _with_texts(gold["id"], gold["gold_label"], texts)))
    if texts is not None and responses.is_file():
        from curation.feedback import human_majority

        majority = human_majority(read_parquet(responses), task.label_names).dropna(subset=["majority"])
        majority = majority[~majority["record_id"].astype(str).str.contains("::", regex=False)]  # audit copies
        tables.append(("reviewed", _with_texts(majority["record_id"], majority["majority"], texts)))
    return example_pool(tables, task.label_names)


def attach_examples(
    task: TaskConfig, records: pd.DataFrame, run_dir: Path, examples: Path | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``records`` with ``examples`` (the ``(text, label)`` turns, nearest last) and
    ``example_ids`` (their pool ids) per row, and run.json's ``retrieval`` (``k``, the pool size
    per source, rows left out per source, the examples file). Writes the
    pool to ``examples_pool.parquet``. An empty pool adds nothing: the records are asked with the
    config's few-shot only. Raises as :func:`run_example_pool`."""
    pool, left_out = run_example_pool(task, records, run_dir, examples)
    run_dir.mkdir(parents=True, exist_ok=True)
    pool.to_parquet(run_dir / POOL_FILE, index=False)
    k = task.retrieval.k
    info: dict[str, Any] = {
        "k": k,
        "max_example_chars": task.retrieval.max_example_chars,
        "examples_file": str(examples.resolve()) if examples is not None else None,
        "pool": len(pool),
        "pool_by_source": {str(s): int(n) for s, n in pool["source"].value_counts().items()},
        "left_out_by_source": left_out,
    }
    if pool.empty or records.empty:
        return records, info
    from curation.adapters.embeddings import embed_texts

    cache = run_dir / EMBEDDING_CACHE
    record_vectors = embed_texts(records["text"].fillna("").astype(str).tolist(), cache_dir=cache)
    pool_vectors = embed_texts(pool["text"].tolist(), cache_dir=cache)
    chosen, ids = examples_for(
        records, pool, record_vectors, pool_vectors, k, task.retrieval.max_example_chars, task.label_names
    )
    return records.assign(examples=chosen, example_ids=ids), info


def reviews_not_yet_examples(task: TaskConfig, run_dir: Path) -> int:
    """Reviewed labels (record and label) that would join the example pool now but are not in the
    last ``prelabel``'s ``examples_pool.parquet``: new reviews, or a majority that changed (0 with
    retrieval off). Never raises: a hint that cannot be computed is 0."""
    run_json, used_pool = run_dir / "run.json", run_dir / POOL_FILE
    if not task.retrieval.k or not run_json.is_file() or not used_pool.is_file():
        return 0
    try:
        used = json.loads(run_json.read_text()).get("retrieval") or {}
        prelabels = read_parquet(run_dir / "prelabels.parquet")
        records = prelabels[[c for c in ("id", "text", "gold_label") if c in prelabels.columns]]
        examples = Path(used["examples_file"]) if used.get("examples_file") else None
        pool, _ = run_example_pool(task, records, run_dir, examples if examples and examples.is_file() else None)
        before = read_parquet(used_pool)
    except (LabeltriageError, OSError, ValueError, KeyError):
        return 0
    shown = set(zip(before["id"].astype(str), before["label"].astype(str), strict=True))
    reviewed = pool[pool["source"] == "reviewed"]
    return sum((rid, str(label)) not in shown for rid, label in zip(reviewed["id"], reviewed["label"], strict=True))


def retrieval_note(info: dict[str, Any]) -> str:
    """One line on the pool :func:`attach_examples` built (``info``: its run.json ``retrieval``)."""
    left = ", ".join(f"{n} {s}" for s, n in info["left_out_by_source"].items())
    left_out = f"; left out (no text, no label or a repeated text): {left}" if left else ""
    if not info["pool"]:
        return (
            f"retrieval: no labelled records to show (input gold, --examples, gold, reviews){left_out}: few-shot only"
        )
    sources = ", ".join(f"{n} {s}" for s, n in info["pool_by_source"].items())
    return (
        f"retrieval: up to {info['k']} examples per record from {info['pool']} labelled records ({sources}), never "
        f"a record's own; the farthest are dropped where a record's text needs the room{left_out}"
    )
