"""`labeltriage student-label`: the student labels the review queue's unreviewed records, certified.

Reads the run (routed.parquet, routing.json, responses.parquet), trains the student on the reviewed
records' majority labels, certifies its threshold on the gold records of the review stratum and
writes ``student_labels.parquet`` (``id, student_label, student_confidence, accepted``, one row per
unreviewed review-queue record) and ``student.json`` (the certificate and the counts). ``publish``
then publishes the accepted ones with ``label_source`` ``student`` and states their accuracy on that
gold. The method and its conditions: :mod:`curation.student_labels`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labeltriage.errors import InputError
from labeltriage.jsonio import write_json
from labeltriage.rundir import STUDENT_LABELS_FILE, STUDENT_REPORT_FILE

if TYPE_CHECKING:
    from labeltriage.rundir import RunDir

MODEL_DESCRIPTION = "logistic regression on all-MiniLM-L6-v2 sentence embeddings (curation.student.fit_student)"


def label_rest(
    run: RunDir, *, target_precision: float | None = None, confidence_level: float | None = None, seed: int = 0
) -> dict[str, Any]:
    """Label the review queue's unreviewed records with the student where its threshold is certified.

    ``target_precision`` / ``confidence_level``: default the run's routing (routing.json's settings,
    i.e. the LLM's own target). Returns student.json's content (also written). Raises
    :class:`InputError` for a multi-label task, no pulled answers, reviewed labels of a single class,
    or no gold record in the stratum; :class:`~labeltriage.rundir.RunDirError` for a missing run file.
    """
    import numpy as np
    import pandas as pd

    from curation.adapters.loop import run_embeddings
    from curation.feedback import human_majority
    from curation.student_labels import certify_student_labels

    task = run.task_config()
    if task.task_type == "multi_label":
        raise InputError(f"{run.path}: student labels are single-label only (task {task.name} is multi_label)")
    routing = run.json("routing.json")
    used = routing.get("settings_used") or (
        routing.get("threshold") if isinstance(routing.get("threshold"), dict) else {}
    )
    target = float(target_precision if target_precision is not None else used.get("target_precision", 0.95))
    level = float(confidence_level if confidence_level is not None else used.get("confidence_level", 0.95))
    routed = run.table("routed.parquet", ("id", "text", "route", "llm_label"))
    answers = run.table("responses.parquet", ("record_id", "user", "label"))
    answers = answers[answers["record_id"].astype(str).isin(set(routed["id"].astype(str)))]  # not ::audit copies
    majority = human_majority(answers, task.label_names)
    reviewed_ids = set(majority["record_id"].astype(str))
    gold_route = routed["route"].eq("gold") & routed.get("gold_label", pd.Series(None, index=routed.index)).notna()
    labelled = majority[
        majority["majority"].notna()
        & ~majority["record_id"].astype(str).isin(set(routed.loc[gold_route, "id"].astype(str)))
    ]
    train = routed.set_index(routed["id"].astype(str)).loc[labelled["record_id"].astype(str)]
    ok = routed["status"].fillna("ok").eq("ok") if "status" in routed.columns else pd.Series(True, index=routed.index)
    pool = routed[routed["route"].eq("human_review") & ok & ~routed["id"].astype(str).isin(reviewed_ids)]
    stratum, in_stratum = _review_stratum(routed, routing)
    gold = routed[gold_route & ok & in_stratum]
    if (n_classes := labelled["majority"].nunique()) < 2:
        raise InputError(f"{run / 'responses.parquet'}: the student needs reviewed labels of at least two classes "
                         f"(has {n_classes}): review more records, `labeltriage pull`, then rerun")  # fmt: skip
    if gold.empty:
        raise InputError(f"{run.path}: no gold record in the review stratum ({stratum}) to certify the student on: "
                         "add gold (`labeltriage gold draw`), recalibrate and route, then rerun")  # fmt: skip
    texts = [*train["text"].astype(str), *gold["text"].astype(str), *pool["text"].astype(str)]
    vectors = run_embeddings(run.path, texts)
    k, n = len(train), len(gold)
    result = certify_student_labels(
        vectors[:k], labelled["majority"].astype(str).to_numpy(), vectors[k : k + n],
        gold["gold_label"].astype(str).to_numpy(), vectors[k + n :], target_precision=target,
        confidence_level=level, classes=task.label_names, seed=seed,
    )  # fmt: skip
    pd.DataFrame({
        "id": pool["id"].astype(str).to_numpy(), "student_label": result.labels.astype(object),
        "student_confidence": result.confidence, "accepted": result.accepted,
    }).to_parquet(run / STUDENT_LABELS_FILE, index=False)  # fmt: skip
    certificate = result.certificate.to_dict()
    llm_right = gold["llm_label"].astype(str).to_numpy() == gold["gold_label"].astype(str).to_numpy()
    report = {
        "model": MODEL_DESCRIPTION,
        "seed": seed,
        "n_train": result.n_train,
        "stratum": stratum,
        "n_gold_stratum": n,
        "student_accuracy_gold_stratum": float(np.mean(result.gold_correct)),
        "llm_accuracy_gold_stratum": float(np.mean(llm_right)),
        "n_pool": int(len(pool)),
        "n_accepted": int(result.accepted.sum()),
        "target_precision": target,
        "confidence_level": level,
        "certificate": certificate,
        "statement": _statement(certificate, stratum, int(result.accepted.sum())),
    }
    write_json(run / STUDENT_REPORT_FILE, report)
    return report


def _review_stratum(routed: Any, routing: dict[str, Any]) -> tuple[str, Any]:
    """Which records the LLM's certificate left to review: (a description, a mask over routed)."""
    import pandas as pd

    chosen = routing.get("threshold")
    threshold = chosen.get("threshold") if isinstance(chosen, dict) else chosen  # route writes the certificate
    # the fixed-sequence certificate is on the raw confidence; the older scan on the calibrated one
    column = (routing.get("confidence_column") or "llm_confidence") if routing.get("method", "fixed-sequence") == (
        "fixed-sequence") else "calibrated_confidence"  # fmt: skip
    if threshold is None or routing.get("auto_accept_stopped") or column not in routed.columns:
        # nothing certified, or auto-accept stopped (its records went to review): every record
        return "every record (the LLM has no auto-accept certificate in force)", pd.Series(True, index=routed.index)
    scores = pd.to_numeric(routed[column], errors="coerce")
    return f"records with {column} < {float(threshold):.6g} (below the LLM's certified threshold)", ~(
        scores >= float(threshold)
    )


def _statement(certificate: dict[str, Any], stratum: str, accepted: int) -> str:
    if certificate.get("threshold") is None:
        return (f"The student labels nothing: no threshold is certified at precision >= "
                f"{certificate['target_precision']:g} ({certificate.get('reason')}).")  # fmt: skip
    return (
        f"{accepted} unreviewed records labelled by the student. With probability >= "
        f"{certificate['confidence_level']:g} over the gold draw, the {stratum} whose student probability is "
        f">= {certificate['threshold']:.6g} have precision >= {certificate['target_precision']:g} (fixed-sequence "
        "exact binomial tests on the stratum's gold, which the student never saw); the labelled records are the "
        "stratum's unreviewed part, left for last by the review queue's priority."
    )
