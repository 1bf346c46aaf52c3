"""Read the records to label (JSONL, CSV, parquet, a saved `datasets` dataset); stable ids."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

GOLD_COLUMNS = ("gold_label", "label")


class InputError(ValueError):
    """The input cannot be read or lacks the text column; the message says how to fix it."""


def record_id(source: str, text: str) -> str:
    """Stable id: a hash of (source, text)."""
    return hashlib.sha256(f"{source}\x1f{text}".encode()).hexdigest()[:16]


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"{path}: no such file or directory. Fix: pass a .jsonl, .csv, .parquet file or a saved dataset"
        )
    if path.is_dir():
        if not any((path / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json")):
            raise InputError(f"{path}: a directory but not a saved `datasets` dataset (no dataset_info.json)")
        import datasets

        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            split = "train" if "train" in loaded else next(iter(loaded))
            loaded = loaded[split]
        return loaded.to_pandas()
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix in {".gz", ".bz2"} else path.suffix.lower()
    if suffix.startswith(".jsonl") or suffix.startswith(".ndjson"):
        return pd.read_json(path, lines=True, dtype=False)
    if suffix.startswith(".json"):
        return pd.read_json(path, dtype=False)
    if suffix.startswith(".csv"):
        return pd.read_csv(path, keep_default_na=False)
    if suffix.startswith(".tsv"):
        return pd.read_csv(path, sep="\t", keep_default_na=False)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    raise InputError(f"{path}: unknown format '{path.suffix}'. Fix: use .jsonl, .csv, .parquet or a saved dataset")


def load_records(
    path: str | Path, text_column: str = "text", source: str | None = None, limit: int | None = None
) -> pd.DataFrame:
    """Columns: id, text, source (+ gold_label when the input has `gold_label` or `label`)."""
    frame = read_table(path)
    if text_column not in frame.columns:
        raise InputError(
            f"{path}: no column '{text_column}' (columns: {', '.join(map(str, frame.columns))}). "
            "Fix: pass --text-column NAME or set text_column in the task config"
        )
    if limit is not None:
        frame = frame.head(limit)
    source = source or Path(path).name
    texts = frame[text_column].map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    out = pd.DataFrame({"text": texts.to_numpy()})
    sources = frame["source"].astype(str).to_numpy() if "source" in frame.columns else [source] * len(frame)
    out["source"] = sources
    out.insert(0, "id", [record_id(s, t) for s, t in zip(sources, out["text"], strict=True)])
    for column in GOLD_COLUMNS:
        if column in frame.columns and column != text_column:
            out["gold_label"] = frame[column].to_numpy()
            break
    return out.reset_index(drop=True)
