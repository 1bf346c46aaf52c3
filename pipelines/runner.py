"""Pre-label a table of records into a run directory: :func:`run_prelabel` and its outputs.

The engine is :class:`pipelines.prelabeller.Prelabeller` (or, for the OpenAI Batch API,
:class:`pipelines.batch.BatchPrelabeller`); this module picks one, writes prelabels.parquet and
run.json, and describes how the input was read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from labeltriage.config import TaskConfig
from labeltriage.jsonio import write_json
from pipelines.batch import BatchPrelabeller
from pipelines.prelabeller import (  # noqa: F401  (re-exported: the names callers used before the split)
    CONTRACT_COLUMNS,
    EXTRA_COLUMNS,
    NOT_ERRORS,
    Prelabeller,
    RunResult,
    build_llm,
    model_identity,
    with_overrides,
)


def write_outputs(result: RunResult, output_dir: Path) -> tuple[Path, Path]:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    parquet = output_dir / "prelabels.parquet"
    tmp = parquet.with_suffix(".parquet.tmp")
    result.frame.to_parquet(tmp, index=False)
    os.replace(tmp, parquet)
    run_json = output_dir / "run.json"
    write_json(run_json, result.summary)
    return parquet, run_json


def input_summary(records: pd.DataFrame) -> dict[str, Any]:
    """How the input was read (from :func:`pipelines.io.load_records`' attrs): for run.json and the console."""
    duplicates = int(records["duplicate_of"].notna().sum()) if "duplicate_of" in records.columns else 0
    gold = int(records["gold_label"].notna().sum()) if "gold_label" in records.columns else 0
    return {
        "encoding": records.attrs.get("encoding"),
        "encoding_detected": bool(records.attrs.get("encoding_detected", False)),
        "gold_column": records.attrs.get("gold_column"),
        "gold_labels": gold,
        "duplicate_rows": duplicates,
        "distinct_texts": int(len(records) - duplicates),
        "input_columns": dict(records.attrs.get("input_columns") or {}),
    }


def input_notes(info: dict[str, Any]) -> list[str]:
    """One line per thing the user should know about how their input was read."""
    notes = []
    if info.get("encoding_detected"):
        notes.append(f"note: the input is not UTF-8; read it as {info['encoding']} (pass --encoding to choose)")
    if info.get("gold_column"):
        notes.append(
            f"note: column '{info['gold_column']}' holds gold labels ({info['gold_labels']} rows have one): "
            "calibrate and route use them"
        )
    if info.get("duplicate_rows"):
        notes.append(
            f"note: {info['duplicate_rows']} rows repeat an earlier row's text: one model call and one review per "
            f"distinct text ({info['distinct_texts']}), every row kept (column duplicate_of)"
        )
    renamed = {k: v for k, v in (info.get("input_columns") or {}).items() if k != v}
    if renamed:
        kept = ", ".join(f"'{k}' kept as '{v}'" for k, v in renamed.items())
        notes.append(f"note: your column(s) {kept} (the product writes a column of that name)")
    return notes


def run_prelabel(
    config: TaskConfig,
    records: pd.DataFrame,
    output_dir: str | Path,
    *,
    max_cost: float | None = None,
    batch_size: int | None = None,
    show_progress: bool = True,
    llm: Any = None,
    write: bool = True,
) -> RunResult:
    """Label `records` (columns id, text[, gold_label]) into `output_dir`; see the module doc."""
    if config.model.backend == "openai-batch":
        result = BatchPrelabeller(config, Path(output_dir), llm=llm, show_progress=show_progress).run(records)
    else:
        runner = Prelabeller(
            config, Path(output_dir), max_cost=max_cost, batch_size=batch_size, llm=llm, show_progress=show_progress
        )
        result = runner.run(records)
    result.summary["input"] = input_summary(records)
    if write:
        write_outputs(result, Path(output_dir))
    return result
