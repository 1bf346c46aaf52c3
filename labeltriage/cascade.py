"""`labeltriage second-opinion`: the cascade's second labeller, before any human sees a record.

Asks a second task config (another model, or the same model with another prompt; the same label
set) for the run's ok records whose first confidence (``llm_confidence``) is below ``below``, as an
ordinary pre-labelling run in ``RUN/second_opinion/`` (its own cache: a rerun makes no call), and
writes ``cascade_confidence.parquet`` (``id, confidence_cascade, asked, second_label,
second_confidence``, one row per record of the run) and ``second_opinion.json`` (the counts).
``calibrate RUN --confidence-column confidence_cascade`` then calibrates on it and ``route``
certifies its threshold on it: the method and why the guarantee holds as stated are in
:mod:`curation.cascade`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labeltriage.errors import ConfigError, InputError
from labeltriage.jsonio import write_json

if TYPE_CHECKING:
    import pandas as pd

    from labeltriage.config import TaskConfig
    from labeltriage.rundir import RunDir

CASCADE_FILE = "cascade_confidence.parquet"
CASCADE_COLUMN = "confidence_cascade"
CASCADE_REPORT = "second_opinion.json"
SECOND_OPINION_DIR = "second_opinion"


def second_opinion(
    run: RunDir,
    config: str | Path | TaskConfig,
    prelabel: Callable[[TaskConfig, Path, Path], pd.DataFrame],
    *,
    below: float = 1.0,
) -> dict[str, Any]:
    """Ask the second labeller for the records below ``below`` and write the cascade's score.

    ``config``: a task config path, a shipped config's name or a loaded one, with the run's label
    set (single-label). ``prelabel(task, input_file, run_dir)`` pre-labels ``input_file`` (``id``,
    ``text``) into ``run_dir`` and returns its prelabels frame (:func:`labeltriage.api.prelabel`).
    ``below`` in (0, 1]: 1.0 asks every ok record; fix it before looking at
    gold (it is part of the score). Returns second_opinion.json's content (also written). Raises
    :class:`ConfigError` (another label set, a multi-label task, ``below`` out of range) or
    :class:`InputError` (the run has no ok pre-label); the prelabel step's errors (backend, model).
    """
    import numpy as np
    import pandas as pd

    from curation.cascade import METHOD, asked_mask, cascade_confidence
    from labeltriage.config import TaskConfig, load_task_config

    first_task = run.task_config()
    second_task = config if isinstance(config, TaskConfig) else load_task_config(config)
    name = second_task.source_path or second_task.name
    if "multi_label" in (first_task.task_type, second_task.task_type):
        raise ConfigError(f"{name}: the cascade is single-label only (a second opinion agrees or not on one label)")
    if sorted(second_task.label_names) != sorted(first_task.label_names):
        raise ConfigError(f"{name}: labels {second_task.label_names} differ from the run's "
                          f"{first_task.label_names}; a second opinion must answer with the same label set: fix the "
                          "second config's labels")  # fmt: skip
    if not 0 < below <= 1:
        raise ConfigError(f"below must be in (0, 1] (1.0 asks every record), got {below}")
    prelabels = run.table("prelabels.parquet", ("id", "text", "llm_label", "llm_confidence", "status"))
    ok = prelabels["status"].astype(str).eq("ok").to_numpy()
    if not ok.any():
        raise InputError(f"{run / 'prelabels.parquet'}: no ok pre-label to give a second opinion on; "
                         f"rerun `labeltriage prelabel` into {run.path}")  # fmt: skip
    first_scores = np.where(ok, pd.to_numeric(prelabels["llm_confidence"], errors="coerce"), np.nan)
    asked = asked_mask(first_scores, below)
    ids = prelabels["id"].astype(str)
    out_dir = run / SECOND_OPINION_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    subset = pd.DataFrame({"id": ids[asked].to_numpy(), "text": prelabels.loc[asked, "text"].astype(str).to_numpy()})
    subset.to_parquet(out_dir / "input.parquet", index=False)
    calls = 0
    second = pd.DataFrame(columns=["id", "llm_label", "llm_confidence", "status"])
    if len(subset):
        second = prelabel(second_task, out_dir / "input.parquet", out_dir)
        calls = int(((run.json(f"{SECOND_OPINION_DIR}/run.json", default={}) or {}).get("totals") or {})
                    .get("model_calls") or 0)  # fmt: skip
    answered = second[second["status"].astype(str).eq("ok")]
    labels = ids.map(dict(zip(answered["id"].astype(str), answered["llm_label"], strict=True)))
    scores2 = ids.map(dict(zip(answered["id"].astype(str), answered["llm_confidence"], strict=True)))
    second_scores = pd.to_numeric(scores2, errors="coerce").to_numpy(dtype=np.float64)
    scores = cascade_confidence(prelabels["llm_label"].to_numpy(dtype=object), first_scores,
                                labels.to_numpy(dtype=object), second_scores, asked)  # fmt: skip
    pd.DataFrame({"id": ids, CASCADE_COLUMN: scores, "asked": asked, "second_label": labels.astype(object),
                  "second_confidence": second_scores}).to_parquet(run / CASCADE_FILE, index=False)  # fmt: skip
    has_second = asked & np.isfinite(second_scores)
    agree = has_second & (labels.astype(str).to_numpy() == prelabels["llm_label"].astype(str).to_numpy())
    report = {
        "method": METHOD,
        "below": below,
        "second_config": str(second_task.source_path or second_task.name),
        "second_model": second_task.model.name,
        "n_records": int(len(prelabels)),
        "n_asked": int(asked.sum()),
        "n_answered": int(has_second.sum()),
        "n_failed": int(asked.sum() - has_second.sum()),
        "n_agree": int(agree.sum()),
        "n_disagree": int(has_second.sum() - agree.sum()),
        "model_calls": calls,
        "file": CASCADE_FILE,
        "column": CASCADE_COLUMN,
        "next": f"labeltriage calibrate {run.path} --confidence-column {CASCADE_COLUMN}, then labeltriage route",
    }
    write_json(run / CASCADE_REPORT, report)
    return report
