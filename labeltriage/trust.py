"""The auto-accept certificate after `route`: what it certifies, when it expires, and the audits' verdict.

`route` certifies a threshold on one gold draw for one set of pre-labels (:mod:`curation.certify`).
This module keeps that promise honest in the later steps, over a run directory:

* **Identity.** The certificate names what it certifies (routing.json ``certificate_identity``):
  the model (``run.json`` ``model_identity``), the prompt hash, the generation settings, the
  calibrator (calibrator.json's digest), the gold sample (digest of the (id, label) pairs route
  used) and the confidence column. :func:`certificate_changes` recomputes them from the run's
  files; any difference voids the certificate.
* **Revocation.** :func:`revoke_auto_accept` sends every ``auto_accept`` and ``spot_check``
  record back to human review (``route = human_review``, the previous route kept in
  ``route_before_stop``) and records why in routing.json ``auto_accept_stopped``; `push` then
  pushes them, `publish` holds them as pending review. No LLM label is published unreviewed
  after a stop. Answered audits still count as audits (``route_before_stop = spot_check``).
* **Audits.** :func:`audit_verdict` reads the answered blind audits of the auto-accepted records
  and runs the anytime-valid confirm/drift tests of :func:`curation.sequential.monitor_audits`;
  a ``drift`` verdict stops auto-accept (the loop revokes and pushes).

Audits re-certify the threshold in force sequentially (they can confirm it or stop it, at any
round, with the stated level), but never loosen it: a looser threshold needs new gold drawn from
the whole run and a new `route`. They are not pooled into route's fixed-sample test either: they
sample only the records above the threshold, chosen on the gold, and pooling would bias it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labeltriage.jsonio import write_json

if TYPE_CHECKING:
    import pandas as pd

    from curation.sequential import AuditVerdict
    from labeltriage.rundir import RunDir

IDENTITY_FIELDS = {
    "model": "the model",
    "prompt_hash": "the prompt",
    "generation_settings": "the generation settings",
    "calibrator": "the calibrator",
    "gold": "the gold sample",
    "confidence_column": "the confidence column",
}


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def gold_digest(ids: Any, labels: Any) -> str:
    """Digest of the gold sample: its (id, label) pairs, order-free. ``ids``/``labels``: ``(n,)``."""
    return _digest(sorted((str(i), str(lab)) for i, lab in zip(ids, labels, strict=True)))


def certificate_identity(run: RunDir, gold_ids: Any, gold_values: Any, confidence_column: str) -> dict[str, str | None]:
    """What a certificate made now on this run would certify (see the module docstring)."""
    summary = run.json("run.json", default={})
    calibrator = run / "calibrator.json"
    return {
        "model": summary.get("model_identity") or summary.get("model"),
        "prompt_hash": summary.get("prompt_hash"),
        "generation_settings": _digest(summary.get("generation_settings")),
        "calibrator": hashlib.sha256(calibrator.read_bytes()).hexdigest()[:16] if calibrator.is_file() else None,
        "gold": gold_digest(gold_ids, gold_values),
        "confidence_column": confidence_column,
    }


def _current_identity(run: RunDir, routing: dict[str, Any]) -> dict[str, str | None]:
    from labeltriage.errors import LabeltriageError

    source = routing.get("gold_source") or {}
    column = routing.get("confidence_column") or "llm_confidence"
    try:
        prelabels = run.table("prelabels.parquet", ("id",))
        gold_path = source.get("path")
        labels = run.gold_labels(Path(gold_path) if gold_path else None, source.get("column"), [])
        known = labels.notna().to_numpy()
        ids, values = prelabels["id"].astype(str).to_numpy()[known], labels.to_numpy()[known]
        identity = certificate_identity(run, ids, values, column)
    except LabeltriageError as error:  # the gold or the pre-labels are gone or unreadable: not the same
        identity = certificate_identity(run, [], [], column)
        identity["gold"] = f"unreadable: {error}"
    return identity


def certificate_changes(run: RunDir) -> list[str]:
    """What changed since `route` certified the threshold (empty: the certificate holds).

    Each entry names the part (model, prompt, generation settings, calibrator, gold sample,
    confidence column). A run routed before certificates carried an identity, or routed with no
    threshold, has nothing to expire: empty."""
    routing = run.json("routing.json", default={})
    recorded = routing.get("certificate_identity")
    if not recorded or (routing.get("routes") or {}).get("auto_accept", 0) == 0:
        return []
    current = _current_identity(run, routing)
    return [IDENTITY_FIELDS[k] for k in IDENTITY_FIELDS if recorded.get(k) != current.get(k)]


@dataclass
class Revocation:
    """Auto-accept stopped: ``reason`` (one sentence), ``ids`` sent back to review."""

    reason: str
    ids: list[str]


def revoke_auto_accept(run: RunDir, reason: str, round_number: int | None = None) -> Revocation:
    """Send every auto-accepted record of the run back to human review; say why in routing.json.

    Rewrites routed.parquet (``route`` ``auto_accept`` and ``spot_check`` -> ``human_review``, the
    old route in ``route_before_stop``) and routing.json (``auto_accept_stopped``: reason, round, count; routes
    recounted). Idempotent: a second call moves nothing and keeps the first reason."""
    routed_path = run.require("routed.parquet")
    routed = run.table("routed.parquet")
    # the audit sample too: unanswered, it would still publish the LLM label; it stays an audit,
    # pushed blind (route_before_stop = spot_check: argilla_io.is_blind)
    moving = routed["route"].isin(["auto_accept", "spot_check"]).to_numpy()
    routing = run.json("routing.json", default={})
    if not moving.any():
        stopped = routing.get("auto_accept_stopped") or {}
        return Revocation(str(stopped.get("reason", reason)), [])
    if "route_before_stop" not in routed.columns:
        routed["route_before_stop"] = None
    routed.loc[moving, "route_before_stop"] = routed.loc[moving, "route"]
    routed.loc[moving, "route"] = "human_review"
    tmp = routed_path.with_suffix(".parquet.tmp")
    routed.to_parquet(tmp, index=False)
    tmp.replace(routed_path)
    ids = routed.loc[moving, "id"].astype(str).tolist()
    routing["auto_accept_stopped"] = {"reason": reason, "round": round_number, "n_records": len(ids)}
    routing["routes"] = {
        r: int((routed["route"] == r).sum()) for r in ("auto_accept", "human_review", "spot_check", "gold")
    }
    write_json(run / "routing.json", routing)
    return Revocation(reason, ids)


def enforce_certificate(run: RunDir) -> Revocation | None:
    """Revoke auto-accept when the certificate no longer holds (:func:`certificate_changes`)."""
    changes = certificate_changes(run)
    if not changes:
        return None
    reason = (
        f"the auto-accept certificate is void: {', '.join(changes)} changed since `labeltriage route`; "
        "its records went back to review (rerun route to certify again)"
    )
    return revoke_auto_accept(run, reason)


def audit_outcomes(routed: pd.DataFrame, responses: pd.DataFrame) -> np.ndarray:
    """``(n_audited,)`` bool: per answered blind audit (route ``spot_check``), the reviewers' label
    (majority; a tie counts as a disagreement) equals the LLM label."""
    was_audit = routed["route"].eq("spot_check")
    if "route_before_stop" in routed.columns:
        was_audit |= routed["route_before_stop"].eq("spot_check")
    audits = routed.loc[was_audit, ["id", "llm_label"]]
    from curation.feedback import human_majority

    majority = human_majority(responses[responses["record_id"].isin(set(audits["id"]))])
    llm = dict(zip(audits["id"], audits["llm_label"].astype(str), strict=True))
    outcomes = [
        m is not None and m == llm[rid] for rid, m in zip(majority["record_id"], majority["majority"], strict=True)
    ]
    return np.asarray(outcomes, dtype=bool)


def audit_verdict(run: RunDir, round_number: int | None = None) -> AuditVerdict | None:
    """The blind audits' verdict on the certificate in force, kept in routing.json ``audit_monitor``.

    None when nothing was auto-accepted or no certificate was made (the scan method). A ``drift``
    verdict revokes auto-accept (:func:`revoke_auto_accept`); the caller pushes the records."""
    from curation.sequential import monitor_audits

    routing = run.json("routing.json", default={})
    certificate = routing.get("threshold") or {}
    if routing.get("method") != "fixed-sequence" or certificate.get("threshold") is None:
        return None
    if not (run / "responses.parquet").is_file():
        return None
    routed, responses = run.table("routed.parquet"), run.table("responses.parquet")
    correct = audit_outcomes(routed, responses)
    verdict = monitor_audits(
        correct,
        float(certificate["target_precision"]),
        float(certificate["confidence_level"]),
        previous=routing.get("audit_monitor"),
    )
    routing["audit_monitor"] = {**verdict.to_dict(), "round": round_number}
    write_json(run / "routing.json", routing)
    if verdict.state == "drift":
        revoke_auto_accept(run, "blind audits show drift: " + verdict.statement, round_number)
    return verdict
