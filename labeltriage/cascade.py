"""`labeltriage second-opinion`: the cascade's second labeller, before any human sees a record.

Asks a second task config (another model, or the same model with another prompt; the same label
set) for the run's ok records whose first confidence (``llm_confidence``) is below ``below``, as an
ordinary pre-labelling run in ``RUN/second_opinion/`` (its own cache: a rerun makes no call), and
writes ``cascade_confidence.parquet`` (``id, confidence_cascade, second_status, second_label,
second_confidence, first_label, first_confidence``, one row per record of the run) and
``second_opinion.json`` (the counts, and every setting tried on this run).
``calibrate RUN --confidence-column confidence_cascade`` then calibrates on it and ``route``
certifies its threshold on it: the method and why the guarantee holds as stated are in
:mod:`curation.cascade`. The guarantee needs the score fixed before the gold is looked at: calibrate
records the file's digest and route refuses a score changed since (:func:`check_cascade`); each
setting tried is kept in second_opinion.json, since trying several on the same gold and keeping the
best is several tests, which the stated level does not cover.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labeltriage.errors import ConfigError, InputError
from labeltriage.jsonio import write_json
from labeltriage.rundir import mixed_confidence_kinds

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
    second_config: str | Path | TaskConfig,
    prelabel: Callable[[TaskConfig, Path, Path], tuple[pd.DataFrame, int, list[str]]],
    *,
    below: float = 1.0,
) -> dict[str, Any]:
    """Ask the second labeller for the records below ``below`` and write the cascade's score.

    ``second_config``: a task config path, a shipped config's name or a loaded one, with the run's
    label set (single-label), and not the run's own config unchanged (it would only repeat the first
    answers: for k samples of the same model set ``confidence: {routing: consistency,
    consistency_samples: k}`` in a copy). ``prelabel(task, input_file, run_dir)`` pre-labels
    ``input_file`` (``id``, ``text``) into ``run_dir`` and returns ``(prelabels frame, exit code,
    notes)`` (:func:`labeltriage.api.prelabel`). ``below`` in (0, 1]: 1.0 asks every ok record;
    set it before looking at gold (it is part of the score). Returns second_opinion.json's content
    (also written), with the second run's ``exit_code`` and ``notes``. Raises :class:`ConfigError`
    (another label set, a multi-label task, the run's own config, ``below`` out of range),
    :class:`InputError` (no ok pre-label), :class:`~labeltriage.rundir.RunDirError` (no
    prelabels.parquet), or the prelabel step's errors (backend, model).
    """
    from datetime import UTC, datetime

    import numpy as np
    import pandas as pd

    from curation.cascade import METHOD, asked_mask, cascade_confidence, opinion_masks
    from labeltriage.config import TaskConfig, load_task_config

    first_task = run.task_config()
    second_task = second_config if isinstance(second_config, TaskConfig) else load_task_config(second_config)
    name = second_task.source_path or second_task.name
    for task, which in ((first_task, "the run's config"), (second_task, "the second config")):
        if task.task_type == "multi_label":
            raise ConfigError(f"{task.source_path or task.name} ({which}): task_type multi_label; the cascade is "
                              "single-label only (a second opinion agrees or not on one label): use single_label "
                              "tasks")  # fmt: skip
    if sorted(second_task.label_names) != sorted(first_task.label_names):
        raise ConfigError(f"{name}: labels {second_task.label_names} differ from the run's "
                          f"{first_task.label_names}; a second opinion must answer with the same label set: fix the "
                          "second config's labels")  # fmt: skip
    if _answers_decided_by(second_task) == _answers_decided_by(first_task):
        raise ConfigError(f"{name}: the run's own config again would repeat its answers; use another model or "
                          "prompt, or for k samples of the same model set `confidence: {routing: consistency, "
                          "consistency_samples: 5}` in a copy (retries or budget change no answer)")  # fmt: skip
    if not 0 < below <= 1:
        raise ConfigError(f"below must be in (0, 1] (1.0 asks every record), got {below}")
    prelabels = run.table("prelabels.parquet", ("id", "text", "llm_label", "llm_confidence", "status"))
    ok = prelabels["status"].astype(str).eq("ok").to_numpy()  # as calibrate and route count them
    _one_kind(prelabels, run / "prelabels.parquet")
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
    second = pd.DataFrame(columns=["id", "llm_label", "llm_confidence", "status"])
    exit_code, notes = 0, list[str]()
    if len(subset):
        second, exit_code, notes = prelabel(second_task, out_dir / "input.parquet", out_dir)
        _one_kind(second, out_dir / "prelabels.parquet")
    else:  # nothing asked: no answers of an earlier, wider cut left lying next to an empty input
        for stale in ("prelabels.parquet", "run.json"):
            (out_dir / stale).unlink(missing_ok=True)
    second_run = run.json(f"{SECOND_OPINION_DIR}/run.json", default={}) or {}  # {} when nothing was asked
    calls = int((second_run.get("totals") or {}).get("model_calls") or 0)
    if stopped := second_run.get("stopped"):
        notes.append(f"the second run stopped ({stopped}): the records it did not answer keep the first "
                     "confidence; rerun with a higher --max-cost (or when the batch is done): answers given come "
                     "from its cache")  # fmt: skip
    answered = second[second["status"].astype(str).eq("ok")]
    labels = ids.map(dict(zip(answered["id"].astype(str), answered["llm_label"], strict=True)))
    scores2 = ids.map(dict(zip(answered["id"].astype(str), answered["llm_confidence"], strict=True)))
    second_scores = pd.to_numeric(scores2, errors="coerce").to_numpy(dtype=np.float64)
    first_labels, second_labels = prelabels["llm_label"].to_numpy(dtype=object), labels.to_numpy(dtype=object)
    scores = cascade_confidence(first_labels, first_scores, second_labels, second_scores, asked)
    same, other = opinion_masks(first_labels, second_labels, second_scores, asked)
    status = np.select([~ok, same | other, asked], ["first_failed", "ok", "failed"], default="not_asked")
    pd.DataFrame({"id": ids, CASCADE_COLUMN: scores, "second_status": status, "second_label": second_labels,
                  "second_confidence": second_scores, "first_label": first_labels,
                  "first_confidence": first_scores}).to_parquet(run / CASCADE_FILE, index=False)  # fmt: skip
    settings = {"below": below, "second_config": str(name), "second_model": second_task.model.name,
                "second_prompt_hash": second_run.get("prompt_hash"),
                # calibrate had seen the gold: a setting chosen after that is a second test of it
                "gold_seen": (run / "calibrator.json").is_file(),
                "at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    earlier = (run.json(CASCADE_REPORT, default={}) or {}).get("settings_tried") or []
    report = {
        "method": METHOD,
        **{k: settings[k] for k in ("below", "second_config", "second_model")},
        "n_records": int(len(prelabels)),
        "n_asked": int(asked.sum()),
        "n_answered": int((same | other).sum()),
        "n_failed": int((status == "failed").sum()),
        "n_agree": int(same.sum()),
        "n_disagree": int(other.sum()),
        "model_calls": calls,
        "exit_code": exit_code,
        "stopped": stopped,
        "notes": notes,
        "file": CASCADE_FILE,
        "column": CASCADE_COLUMN,
        "digest": _digest(ids, scores),
        # every setting tried on this run: the gold tests one score, not the best of several
        "settings_tried": [*earlier, settings],
        "next": f"labeltriage calibrate {run.path} --confidence-column {CASCADE_COLUMN}, then labeltriage route",
    }
    write_json(run / CASCADE_REPORT, report)
    return report


def cascade_digest(run: RunDir) -> str:
    """SHA-256 (16 hex digits) of cascade_confidence.parquet's ids and scores: calibrate records it,
    route compares (:func:`check_cascade`)."""
    frame = run.table(CASCADE_FILE, ("id", CASCADE_COLUMN))
    return _digest(frame["id"], frame[CASCADE_COLUMN].to_numpy())


def _digest(ids: Any, scores: Any) -> str:
    import hashlib

    import numpy as np

    digest = hashlib.sha256("\n".join(map(str, ids)).encode())
    digest.update(np.asarray(scores, dtype="<f8").tobytes())
    return digest.hexdigest()[:16]


def check_cascade(run: RunDir, prelabels: pd.DataFrame, calibrated_digest: str | None = None) -> None:
    """Raise :class:`InputError` when cascade_confidence.parquet no longer describes the run: its
    first answers differ from prelabels.parquet's (pre-labelled again since `second-opinion`), or,
    with ``calibrated_digest`` (calibrator.json's), the score changed since `calibrate`."""
    import numpy as np
    import pandas as pd

    cascade = run.table(CASCADE_FILE, ("id", "first_label", "first_confidence"))
    known = cascade.set_index(cascade["id"].astype(str))
    ok = prelabels["status"].astype(str).eq("ok")
    current = prelabels[ok].set_index(prelabels.loc[ok, "id"].astype(str))
    made = run.json(CASCADE_REPORT, default={}) or {}
    command = (f"labeltriage second-opinion {run.path} --second {made.get('second_config', 'SECOND')} --below "
               f"{made.get('below', 1.0)}")  # fmt: skip
    fix = f"rerun `{command}` (answers already given come from its cache)"
    missing = current.index.difference(known.index)
    if len(missing):
        raise InputError(f"{run / CASCADE_FILE}: confidence_cascade is missing on {len(missing)} ok record(s), "
                         f"e.g. {missing[0]!r}: pre-labelled again after `second-opinion`. Fix: {fix}")  # fmt: skip
    known = known.loc[current.index]
    first_conf = pd.to_numeric(current["llm_confidence"], errors="coerce").to_numpy(dtype=float)
    changed = (
        known["first_label"].astype(str).to_numpy() != current["llm_label"].astype(str).to_numpy()
    ) | ~np.isclose(known["first_confidence"].to_numpy(dtype=float), first_conf, equal_nan=True)
    if changed.any():
        raise InputError(f"{run / CASCADE_FILE}: made for other first answers ({int(changed.sum())} record(s) changed "
                         f"since, e.g. {current.index[changed][0]!r}). Fix: {fix}")  # fmt: skip
    if calibrated_digest is not None and calibrated_digest != cascade_digest(run):
        raise InputError(
            f"{run / CASCADE_FILE}: the cascade's score changed since `calibrate` (its digest differs "
            "from calibrator.json's): the certificate must test the score it was calibrated on. Fix: "
            f"rerun `labeltriage calibrate {run.path} --confidence-column {CASCADE_COLUMN}`, then route; "
            "each setting tried tests the same gold again (second_opinion.json: settings_tried)"
        )


def settings_after_gold(run: RunDir) -> int:
    """How many times second_opinion.json records the cascade's setting changed (a later entry)
    after calibrate had seen the gold."""
    tried = (run.json(CASCADE_REPORT, default={}) or {}).get("settings_tried") or []
    return sum(1 for entry in tried[1:] if entry.get("gold_seen"))


def _answers_decided_by(task: TaskConfig) -> dict[str, Any]:
    """What decides a config's answers (the prompt, the labels, the model and its generation, the
    confidence): two configs equal here give the same answers, whatever their retries or budget."""
    data = task.model_dump(exclude={"source_path"})
    model = data.pop("model")
    return {**data, "model": {k: model.get(k) for k in ("backend", "name", "path", "base_url", "generation")}}


def _one_kind(frame: pd.DataFrame, path: Path) -> None:
    """InputError when the ok rows carry confidences of several kinds (log-prob for some, stated
    for others): a score mixing them certifies neither, as calibrate says for llm_confidence."""
    if kinds := mixed_confidence_kinds(frame):
        counts = ", ".join(f"{k} {n}" for k, n in kinds.items())
        raise InputError(f"{path}: llm_confidence mixes kinds ({counts}): the backend gave no log-probs for some "
                         "records. Fix: set `confidence: {routing: stated}` in the config and pre-label again, or use "
                         "a backend that returns log-probs")  # fmt: skip
