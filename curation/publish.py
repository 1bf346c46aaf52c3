"""Publish a run: final labels, the dataset card, local parquet and the Hugging Face Hub.

The final dataset has one row per record whose label is settled:

=============  ===========================================================================
column         meaning
=============  ===========================================================================
id             stable record id (from ``routed.parquet``)
text           the text
label          the final label
label_source   ``human``: every reviewer who answered gave this label (one or more);
               ``consensus``: reviewers disagreed and the consensus method chose it;
               ``llm_auto``: auto-accepted LLM label (routed ``auto_accept`` or an unreviewed
               ``spot_check``), never seen by a reviewer;
               ``gold``: the record's gold label (routed ``gold``: the gold calibrate/route used);
               ``student``: a review-queue record nobody answered, labelled by the student where
               its certified threshold accepts it (``labeltriage student-label``)
confidence     ``human``/``consensus``: P(label) under the consensus method (vote share for
               majority vote, posterior for Dawid-Skene); ``llm_auto``: the calibrated confidence;
               ``student``: the student's probability of its label; null for ``gold``
agreement      share of this record's reviewers who gave the final label (null for llm_auto)
n_reviewers    submitted responses on the record (0 for llm_auto)
llm_label      the LLM's label (kept beside human labels, so disagreements can be studied)
reasoning      the LLM's reasoning
=============  ===========================================================================

Left out (and counted in the card): records in the adjudication queue (ties, low agreement),
records routed to review that nobody answered yet, and failed pre-labels.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from curation.agreement import Ratings, agreement_report, ratings_from_long
from curation.consensus import adjudication_queue, dawid_skene, majority_vote
from curation.estimation import LABEL_SOURCES as AUDITED_LABEL_SOURCES
from labeltriage.jsonio import dumps, write_json

__all__ = [
    "FINAL_COLUMNS",
    "FinalDataset",
    "RunFiles",
    "build_dataset_card",
    "build_final_dataset",
    "compute_agreement",
    "normalise_label",
    "write_local",
]

FINAL_COLUMNS = [
    "id",
    "text",
    "label",
    "label_source",
    "confidence",
    "agreement",
    "n_reviewers",
    "llm_label",
    "reasoning",
]
ROUTED_REQUIRED = ("id", "text", "llm_label", "route")
# every label_source a published row can have: the audited ones, then those no blind audit measures
LABEL_SOURCES = (*AUDITED_LABEL_SOURCES, "student", "gold")
RESPONSES_REQUIRED = ("record_id", "user", "label")


@dataclass
class RunFiles:
    """The inputs of a publish, read from a run directory by :meth:`labeltriage.rundir.RunDir.publish_files`.

    ``routed``: one row per record (``routed.parquet``); ``responses``: submitted answers, one row per
    (record, reviewer) (``responses.parquet``, empty before the first pull); ``review_audits``: the
    submitted answers to the blind copies of reviewed records (``<id>::audit``), keyed by the
    original id; the JSON side files as dicts (empty when absent); ``config``: the validated task
    config as a dict (empty without one); ``student_labels`` / ``student``: student_labels.parquet
    and student.json (``labeltriage student-label``), None / empty when absent.
    """

    run_dir: Path
    routed: pd.DataFrame
    responses: pd.DataFrame
    review_audits: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["record_id", "user", "label"]))
    run: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    routing: dict[str, Any] = field(default_factory=dict)
    pull: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    config_path: Path | None = None
    student_labels: pd.DataFrame | None = None
    student: dict[str, Any] = field(default_factory=dict)

    @property
    def categories(self) -> list[str] | None:
        """The task config's label names in its order, or None when the run holds no config."""
        labels = self.config.get("labels")
        if labels:
            return [lab["name"] if isinstance(lab, dict) else str(lab) for lab in labels]
        return None


def normalise_label(value: Any) -> Any:
    """Multi-label answers (lists) become a canonical JSON string so they compare as sets."""
    if isinstance(value, list | tuple | np.ndarray):
        return json.dumps(sorted(str(v) for v in value))
    return value


@dataclass
class FinalDataset:
    """Result of :func:`build_final_dataset`.

    Attributes:
        final: the published rows, columns :data:`FINAL_COLUMNS`, then the user's own input
            columns (as named in routed.parquet) and ``duplicate_of`` when the input repeated a text.
        adjudication: records needing an adjudicator: ``id, reason, agreement, n_reviewers,
            votes`` (votes = JSON ``{label: count}``); push back to Argilla as metadata.
        pending: ids routed to review with no submitted response yet.
        ratings: the reviewers' ratings (rows = reviewed records).
        summary: counts (per label source, adjudication, pending, failed, ignored responses)
            and the consensus settings, for the card.
    """

    final: pd.DataFrame
    adjudication: pd.DataFrame
    pending: list[str]
    ratings: Ratings | None
    summary: dict[str, Any]


def build_final_dataset(
    run: RunFiles,
    *,
    method: Literal["majority", "dawid_skene"] = "majority",
    tie_policy: Literal["abstain", "llm", "random"] = "abstain",
    min_agreement: float = 0.6,
    min_reviewers: int = 1,
    random_state: int = 0,
) -> FinalDataset:
    """Turn routed LLM labels and reviewers' responses into the final dataset.

    Args:
        run: from :func:`load_run`.
        method: ``"majority"`` (plurality vote with ``tie_policy``) or ``"dawid_skene"``
            (EM weighting reviewers by their estimated confusion matrices).
        tie_policy: majority-vote ties: ``"abstain"`` sends them to adjudication, ``"llm"``
            lets the LLM label break them when it is among the tied labels, ``"random"``
            is seeded by ``random_state``.
        min_agreement: records whose winning label has a smaller vote share go to
            adjudication (0.6 keeps 2-of-3, flags 1-1-1).
        min_reviewers: records with fewer responses go to adjudication.
        random_state: seed for random tie-breaks and Fleiss subsampling.
    """
    all_routed, responses = run.routed, run.responses
    # a repeated text is settled once, by its first row, and every repeat gets the same outcome
    is_dup = all_routed["duplicate_of"].notna() if "duplicate_of" in all_routed.columns else None
    routed = all_routed[~is_dup] if is_dup is not None else all_routed
    known = set(routed["id"])
    unknown = responses.loc[~responses["record_id"].isin(known), "record_id"].unique().tolist()
    responses = responses[responses["record_id"].isin(known)]
    # a record the gold labels is published with its gold label; answers to it (pushed before it
    # was gold) are counted, not used
    gold_column = routed["gold_label"] if "gold_label" in routed.columns else pd.Series(None, index=routed.index)
    gold_rows = routed[routed["route"].eq("gold") & gold_column.notna()]
    on_gold = responses["record_id"].isin(set(gold_rows["id"]))
    responses = responses[~on_gold]
    categories = run.categories
    observed = sorted(set(responses["label"].dropna()) | set(routed["llm_label"].dropna().map(normalise_label)))
    if categories is None or run.config.get("task_type") == "multi_label":
        categories = observed
    conf_col = "calibrated_confidence" if "calibrated_confidence" in routed.columns else "llm_confidence"
    by_id = routed.set_index("id")
    llm_labels = by_id["llm_label"].map(normalise_label)

    rows: list[dict[str, Any]] = []
    adjudication = pd.DataFrame(columns=["id", "reason", "agreement", "n_reviewers", "votes"])
    ratings: Ratings | None = None
    reviewed: set[Any] = set()
    if len(responses):
        ratings = ratings_from_long(responses, categories)
        k = len(ratings.categories)
        llm_codes = ratings.encode([llm_labels.get(r) for r in ratings.record_ids])
        mv = majority_vote(ratings.data, k, tie_policy=tie_policy, llm_labels=llm_codes, random_state=random_state)
        labels, share = mv.labels, mv.agreement
        confidence = share
        if method == "dawid_skene":
            ds = dawid_skene(ratings.data, k, random_state=random_state)
            labels = ds.labels
            confidence = ds.posteriors[np.arange(len(labels)), np.maximum(labels, 0)]
            counts = np.stack([np.sum(ratings.data == c, axis=1) for c in range(k)], axis=1)
            share = np.where(
                mv.n_votes > 0,
                counts[np.arange(len(labels)), np.maximum(labels, 0)] / np.maximum(mv.n_votes, 1),
                np.nan,
            )
        elif method != "majority":
            raise ValueError(f"method must be 'majority' or 'dawid_skene', got {method!r}")
        flagged, reasons = adjudication_queue(
            labels, share, mv.n_votes, min_agreement=min_agreement, min_reviewers=min_reviewers
        )
        adj_rows = []
        for i, rid in enumerate(ratings.record_ids):
            if mv.n_votes[i] == 0:
                continue
            reviewed.add(rid)
            if flagged[i]:
                votes = {
                    str(ratings.categories[c]): int(n)
                    for c, n in enumerate(
                        np.bincount(ratings.data[i][~np.isnan(ratings.data[i])].astype(int), minlength=k)
                    )
                    if n
                }
                adj_rows.append(
                    {
                        "id": rid,
                        "reason": reasons[i],
                        "agreement": float(share[i]),
                        "n_reviewers": int(mv.n_votes[i]),
                        "votes": json.dumps(votes),
                    }
                )
                continue
            rec = by_id.loc[rid]
            rows.append(
                {
                    "id": rid,
                    "text": rec["text"],
                    "label": ratings.categories[labels[i]],
                    "label_source": "human" if share[i] >= 1.0 else "consensus",
                    "confidence": float(confidence[i]),
                    "agreement": float(share[i]),
                    "n_reviewers": int(mv.n_votes[i]),
                    "llm_label": llm_labels.get(rid),
                    "reasoning": rec.get("reasoning"),
                }
            )
        if adj_rows:
            adjudication = pd.DataFrame(adj_rows)

    status_ok = prelabel_ok(routed)
    auto = routed["route"].isin(["auto_accept", "spot_check"]) & status_ok & ~routed["id"].isin(reviewed)
    for rec in routed[auto].itertuples(index=False):
        rec_d = rec._asdict()
        conf = rec_d.get(conf_col)
        rows.append(
            {
                "id": rec_d["id"],
                "text": rec_d["text"],
                "label": normalise_label(rec_d["llm_label"]),
                "label_source": "llm_auto",
                "confidence": float(conf) if conf is not None else float("nan"),
                "agreement": float("nan"),
                "n_reviewers": 0,
                "llm_label": normalise_label(rec_d["llm_label"]),
                "reasoning": rec_d.get("reasoning"),
            }
        )
    for rec in gold_rows.itertuples(index=False):
        rec_d = rec._asdict()
        rows.append(
            {
                "id": rec_d["id"],
                "text": rec_d["text"],
                "label": normalise_label(rec_d["gold_label"]),
                "label_source": "gold",
                "confidence": float("nan"),
                "agreement": float("nan"),
                "n_reviewers": 0,
                "llm_label": normalise_label(rec_d["llm_label"]),
                "reasoning": rec_d.get("reasoning"),
            }
        )
    pending = routed.loc[routed["route"].eq("human_review") & status_ok & ~routed["id"].isin(reviewed), "id"].tolist()
    if run.student_labels is not None:
        rows, pending = _student_rows(run.student_labels, by_id, llm_labels, rows, pending)
    if is_dup is not None and is_dup.any():
        rows, adjudication, pending = _fan_out_duplicates(all_routed[is_dup], rows, adjudication, pending)
    user_columns = [c for c in _input_columns(run) if c in all_routed.columns and c not in FINAL_COLUMNS]
    final = pd.DataFrame(rows, columns=FINAL_COLUMNS)
    if user_columns:  # the user's own columns, kept as they came in
        extra = all_routed.set_index("id")[user_columns]
        final = final.join(extra, on="id")
    routed = all_routed
    status_ok = prelabel_ok(routed)
    # published order follows routed.parquet, so reruns give byte-identical files
    order = {rid: i for i, rid in enumerate(routed["id"])}
    final = final.sort_values("id", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    final = final.astype({"confidence": "float64", "agreement": "float64", "n_reviewers": "int64"})
    for col in ("id", "text", "label", "label_source", "llm_label", "reasoning"):
        final[col] = final[col].astype(object).where(final[col].notna(), None)
    summary = {
        "n_routed": int(len(routed)),
        "n_published": int(len(final)),
        "per_label_source": {s: int((final["label_source"] == s).sum()) for s in LABEL_SOURCES},
        "per_label": {str(k): int(v) for k, v in final["label"].value_counts().sort_index().items()},
        "n_adjudication": int(len(adjudication)),
        "adjudication_reasons": {str(k): int(v) for k, v in adjudication["reason"].value_counts().items()},
        "n_pending_review": len(pending),
        "n_duplicate_rows": int(is_dup.sum()) if is_dup is not None else 0,
        "n_failed_prelabels": int((~status_ok & ~routed["route"].eq("gold")).sum()),  # gold ones publish their label
        "n_responses_used": int(len(responses)),
        "n_responses_unknown_record": int(len(unknown)),
        "n_responses_on_gold_records": int(on_gold.sum()),
        "consensus": {
            "method": method,
            "tie_policy": tie_policy,
            "min_agreement": min_agreement,
            "min_reviewers": min_reviewers,
            "random_state": random_state,
        },
        "categories": [str(c) for c in categories],
    }
    return FinalDataset(final=final, adjudication=adjudication, pending=pending, ratings=ratings, summary=summary)


def prelabel_ok(routed: pd.DataFrame) -> pd.Series:
    """``(n,)`` bool per routed row: its pre-label is ok (a table without ``status`` has no failures)."""
    if "status" not in routed.columns:
        return pd.Series(True, index=routed.index)
    ok: pd.Series = routed["status"].fillna("ok").eq("ok")
    return ok


def _student_rows(
    student: pd.DataFrame, by_id: pd.DataFrame, llm_labels: pd.Series, rows: list[dict[str, Any]], pending: list[Any]
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Pending review records the student's certified threshold accepted, as ``student`` rows; the
    rest stay pending. A record answered since student-label ran is not pending, so never here."""
    accepted = student[student["accepted"].astype(bool)]
    chosen = dict(zip(accepted["id"].astype(str), zip(accepted["student_label"], accepted["student_confidence"],
                                                          strict=True), strict=True))  # fmt: skip
    still: list[Any] = []
    for rid in pending:
        if str(rid) not in chosen:
            still.append(rid)
            continue
        label, confidence = chosen[str(rid)]
        rec = by_id.loc[rid]
        rows.append({"id": rid, "text": rec["text"], "label": str(label), "label_source": "student",
                     "confidence": float(confidence), "agreement": float("nan"), "n_reviewers": 0,
                     "llm_label": llm_labels.get(rid), "reasoning": rec.get("reasoning")})  # fmt: skip
    return rows, still


def _input_columns(run: RunFiles) -> list[str]:
    """The user's own input columns (their names in routed.parquet) and duplicate_of."""
    names = list(((run.run.get("input") or {}).get("input_columns") or {}).values())
    has_dups = "duplicate_of" in run.routed.columns and run.routed["duplicate_of"].notna().any()
    return [*names, "duplicate_of"] if has_dups else names


def _fan_out_duplicates(
    dups: pd.DataFrame, rows: list[dict[str, Any]], adjudication: pd.DataFrame, pending: list[str]
) -> tuple[list[dict[str, Any]], pd.DataFrame, list[str]]:
    """Give each repeated-text row the outcome of its first row (published, adjudication or pending)."""
    published = {row["id"]: row for row in rows}
    held = adjudication.set_index("id") if len(adjudication) else None
    waiting = set(pending)
    extra_adj = []
    rows = list(rows)
    pending = list(pending)
    for rec in dups.itertuples(index=False):
        first = rec.duplicate_of
        if first in published:
            rows.append({**published[first], "id": rec.id, "text": rec.text})
        elif held is not None and first in held.index:
            extra_adj.append({"id": rec.id, **held.loc[first].to_dict()})
        elif first in waiting:
            pending.append(rec.id)
    if extra_adj:
        adjudication = pd.concat([adjudication, pd.DataFrame(extra_adj)], ignore_index=True)
    return rows, adjudication, pending


def compute_agreement(run: RunFiles, final: FinalDataset, *, random_state: int = 0) -> dict[str, Any]:
    """Agreement report of the run's responses (see :func:`curation.agreement.agreement_report`),
    with ``published_accuracy`` (:func:`published_label_accuracy`)."""
    accuracy = published_label_accuracy(run, final)
    stopped = (run.routing or {}).get("auto_accept_stopped")
    if final.ratings is None:
        return {"note": "no submitted responses; agreement is undefined", "n_responses": 0,
                "published_accuracy": accuracy, "auto_accept_stopped": stopped}  # fmt: skip
    llm = run.routed.set_index("id")["llm_label"].map(normalise_label).to_dict()
    report = agreement_report(final.ratings, llm, fleiss_seed=random_state)
    return {
        **report,
        "llm_agreement_by_review_mode": review_mode_agreement(run, final),
        "published_accuracy": accuracy,
        "class_shares": class_shares(run),
        "auto_accept_stopped": stopped,
    }


def class_shares(run: RunFiles, confidence_level: float = 0.95) -> dict[str, Any] | None:
    """Share of each label among the run's records, with 95% intervals, by prediction-powered inference.

    The LLM label of every ok record (one per distinct text) is the prediction; the gold records
    are the labelled sample, their gold label the truth (:func:`curation.estimation.class_shares_ppi`,
    Angelopoulos et al., Science 2023; finite population). Valid when the gold is a random sample of
    the run (``labeltriage gold draw`` makes it one). None without gold or without a label set.
    """
    from curation.estimation import class_shares_ppi

    routed = run.routed
    if "gold_label" not in routed.columns or run.categories is None or run.config.get("task_type") == "multi_label":
        return None
    rows = prelabel_ok(routed)
    if "duplicate_of" in routed.columns:
        rows &= routed["duplicate_of"].isna()
    frame = routed[rows]
    gold = frame["gold_label"].notna().to_numpy()
    if not gold.any():
        return None
    shares = class_shares_ppi(
        frame["llm_label"].astype(str).to_numpy(),
        gold,
        [str(v) if v is not None else None for v in frame["gold_label"]],
        list(run.categories),
        confidence_level=confidence_level,
    )
    return {**shares, "estimand": "share of each label among the run's ok records (one per distinct text)",
            "assumption": "the gold records are a random sample of the run"}  # fmt: skip


def review_mode_agreement(run: RunFiles, final: FinalDataset) -> dict[str, Any] | None:
    """LLM-vs-reviewer agreement on the review queue, assisted vs blind (``thresholds.blind_share``):
    :func:`curation.agreement.llm_agreement_by_review_mode` on the published reviewed records of
    route ``human_review`` (audits of auto-accepted records are another population). None when
    the run has no blind review records."""
    from curation.agreement import llm_agreement_by_review_mode

    routed = run.routed
    if "blind" not in routed.columns or not routed["blind"].fillna(False).astype(bool).any():
        return None
    queue = routed[routed["route"].eq("human_review")].set_index("id")
    reviewed = final.final[
        final.final["label_source"].isin(["human", "consensus"]) & final.final["id"].isin(queue.index)
    ]
    blind = queue.loc[reviewed["id"], "blind"].fillna(False).astype(bool).to_numpy()
    agree = (reviewed["label"].astype(str) == reviewed["llm_label"].astype(str)).to_numpy()
    return llm_agreement_by_review_mode(agree, blind)


def describe_review_modes(modes: dict[str, Any]) -> str:
    """One sentence for :func:`review_mode_agreement` (the card and the CLI say the same)."""

    def part(mode: str) -> str:
        m = modes[mode]
        if not m["n"]:
            return f"{mode}: no reviewed record"
        return f"{mode} {_fmt(m['share'])} [{_fmt(m['low'])}, {_fmt(m['high'])}] on {m['n']}"

    text = (
        "LLM agrees with reviewers on the review queue (audits not included), shown its suggestion or not: "
        f"{part('assisted')}; {part('blind')}"
    )
    diff = modes.get("difference")
    if diff:
        text += (
            f"; assisted - blind {_fmt(diff['estimate'])} [{_fmt(diff['low'])}, {_fmt(diff['high'])}] "
            "(the pull of the pre-filled label; 95% intervals)"
        )
    return text


def _unresolved(n: int | None, how: str) -> str:
    """The card's note on audits without a majority (counted against the label they check)."""
    return f", {n} {how} (no majority: counted as the label being wrong)" if n else ""


# curation.estimation's method names, as a reader of the card understands them
INTERVAL_NAMES = {
    "jeffreys": "Jeffreys interval, finite-population corrected",
    "clopper-pearson": "exact Clopper-Pearson interval",
    "mover-jeffreys": "Jeffreys interval, finite-population corrected",
    "mover-clopper-pearson": "exact Clopper-Pearson interval",
}


def published_accuracy_parts(measured: dict[str, Any]) -> list[str]:
    """:func:`published_label_accuracy`'s result as one clause per kind of label (LLM, reviewed, student,
    excluded audit answers, all together): the card's bullets and the CLI's lines."""
    level = f"{measured.get('confidence_level', 0.95):.0%}"
    parts: list[str] = []
    entry = measured.get("llm_auto")
    if not entry or entry.get("estimate") is None:
        parts.append(
            f"LLM labels published without review: accuracy not measured ({measured.get('reason', 'no audit')})"
        )
    else:
        unreviewed = measured.get("n_published_unreviewed")
        published = f" ({unreviewed} of them published unreviewed, the audited ones with the auditors' label)" if (
            unreviewed is not None and unreviewed != entry["n_population"]) else ""  # fmt: skip
        parts.append(
            f"LLM labels published without review (llm_auto): accuracy {_fmt(entry['estimate'])} "
            f"({level} interval {_fmt(entry['low'])}-{_fmt(entry['high'])}), from "
            f"{entry['n_audited']} blind audits of the {entry['n_population']} auto-accepted records{published}: "
            f"a random sample reviewed with no suggestion, the auditors' majority label taken as the truth"
            f"{_unresolved(measured.get('n_audits_unresolved'), 'unresolved')}; "
            f"{INTERVAL_NAMES.get(entry.get('method') or '', 'Jeffreys interval, finite-population corrected')}"
        )
    reviewed = (measured.get("reviewed") or {}).get("overall")
    if reviewed and reviewed.get("estimate") is not None:
        by_kind = [(kind, measured["reviewed"].get(kind)) for kind in ("human", "consensus")]
        by_kind = [(kind, cell) for kind, cell in by_kind if cell and cell.get("n_audited")]
        tied = measured.get("n_review_audits_tied") or 0
        agree = sum(cell["n_correct"] for _, cell in by_kind)
        weighted = (
            " (weighted by their counts over "
            + " and ".join(
                f"{kind} {_fmt(cell['estimate'])}: {cell['n_correct']} of {cell['n_audited']} audits agree, "
                f"{cell['n_population']} labels"
                for kind, cell in by_kind
            )
            + ")"
            if len(by_kind) > 1
            else ""
        )
        interval = (
            "exact Clopper-Pearson per kind, combined by MOVER (Zou & Donner 2008)"
            if len(by_kind) > 1
            else "exact Clopper-Pearson"
        )
        parts.append(
            f"reviewed labels (human, consensus): accuracy {_fmt(reviewed['estimate'])}{weighted} ({level} interval "
            f"{_fmt(reviewed['low'])}-{_fmt(reviewed['high'])}, {interval}), from "
            f"{reviewed['n_audited']} blind second reviews of the {reviewed['n_population']} reviewed queue records: "
            f"{agree} agree, {reviewed['n_audited'] - agree - tied} disagree" + _unresolved(tied, "tied")
        )
    student = measured.get("student")
    if student:
        from curation.student_labels import describe_selection

        parts.append(
            f"student labels (student): {student['n_population']} unreviewed review-queue records, labelled by the "
            f"{student.get('student') or 'frozen'} student, {student.get('model') or 'see student.json'}, where "
            f"its probability is >= {_fmt(student['threshold'])}; certified with "
            f"{_fmt(student['confidence_level_after_selection'])} confidence"
            f"{describe_selection(student['confidence_level'], student['n_settings_tried'])}: precision >= "
            f"{_fmt(student['target_precision'])} over "
            f"the stratum's records above that probability (stratum: {student['stratum']}; fixed-sequence exact tests "
            f"on its {student['n_gold']} gold records, which the student never "
            f"saw; {student['n_correct_gold']} of the {student['n_accepted_gold']} above the threshold right, the "
            "gold that chose it: not a held-out figure); the published ones are not audited (expected at or above "
            "the stratum's when reviewers answered by priority) and are left out of the overall figure"
        )
    by_own = measured.get("n_review_audit_answers_by_own_reviewer") or 0
    if by_own:
        parts.append(
            f"{by_own} review-audit answers came from a reviewer of the original record and are not counted "
            "(not independent; the rest is no longer a simple random sample of the queue): set "
            "argilla.min_submitted >= 2 so that each ::audit copy stays open for a second reviewer"
        )
    overall = measured.get("overall")
    if overall:
        uncovered = overall.get("n_not_covered") or 0
        left_out = ""
        if uncovered:
            left_out = (
                f"; left out: {uncovered} reviewed labels that no audit checks (records reviewed outside the "
                "assisted review queue: the audited auto-accepted records, blind reviews)"
            )
        if overall.get("n_student_not_covered"):
            left_out += f"; the {overall['n_student_not_covered']} student labels are left out (not audited)"
        parts.append(
            f"all {overall['n_population']} published labels whose accuracy is measured, together (the figures "
            f"above weighted by their counts, gold counted as right): {_fmt(overall['estimate'])} ({level} interval "
            f"{_fmt(overall['low'])}-{_fmt(overall['high'])}, the intervals above combined by MOVER){left_out}"
        )
    return parts


AUTO_ROUTES = ("auto_accept", "spot_check")  # the auto-accepted set; spot_check is its blind audit sample


UNRESOLVED_AUDIT = "(unresolved audit)"  # never a label: the audited label counts as wrong


def _audit_verdicts(answers: pd.DataFrame) -> dict[str, str]:
    """record id -> the audit answers' majority label (:func:`curation.feedback.human_majority`),
    or :data:`UNRESOLVED_AUDIT` for a tie: an audit answered but unresolved counts against the
    label it checks, so that hard records are not dropped from the sample (conservative)."""
    from curation.feedback import human_majority

    majority = human_majority(answers)
    return {
        str(r): UNRESOLVED_AUDIT if m is None else str(m)
        for r, m in zip(majority["record_id"], majority["majority"], strict=True)
    }


def published_label_accuracy(run: RunFiles, final: FinalDataset, confidence_level: float = 0.95) -> dict[str, Any]:
    """Accuracy of the published labels, per label source and overall, from blind audits.

    * ``llm_auto``: the auto-accepted set is every record routed ``auto_accept`` or ``spot_check``;
      ``spot_check`` is a random sample of it (``thresholds.spot_check_rate``), pushed blind (no
      suggestion, score or reasoning), and the reviewers' label of an audited record is its truth.
      The estimand is the share of the set whose LLM label equals that truth.
    * ``human`` / ``consensus``: the reviewed records of the review queue; a random share of it
      (``thresholds.review_audit_rate``) was shown a second time, blind (``<id>::audit``), and the
      majority of those answers is the truth for the published label. An audit answer by a
      reviewer who also answered the original record is not counted (not independent of the label
      it checks; Argilla cannot route the copy to someone else), counted in
      ``n_review_audit_answers_by_own_reviewer``.
    * ``gold``: the gold label is the reference itself (accuracy 1 by definition, not measured).
    * ``student``: not measured: the certificate student.json states (precision >= target over
      the review stratum above the student's threshold, :mod:`curation.student_labels`); the
      gold above the threshold chose it, so its share right is no held-out figure, and the
      published records (the stratum's unreviewed part) have no audit. Left out of ``overall``
      (``n_student_not_covered``).
    * ``overall``: the measured published rows (llm_auto, the assisted review queue's human and
      consensus rows, gold counted at 1) weighted by their counts, the MOVER combination of the
      per-source intervals (:func:`curation.estimation.mover_combine`); reviewed rows outside the
      assisted queue have no audit and are left out (``n_not_covered``). None unless every
      measured source with rows has an estimate.

    Every interval is :func:`curation.estimation.published_accuracy`'s (MOVER-Jeffreys with the
    finite-population correction, Zou & Donner 2008; exact Clopper-Pearson cells for the reviewed
    labels, whose Jeffreys interval covered 93% at nominal 95% in benchmarks/card_accuracy.py),
    valid when the answered audits are a random
    sample of their set and the auditor's label is right (auditor error biases it). Reviewed
    records not in the assisted review queue (answered spot checks, blind-reviewed records) are
    not covered by the review audit and are left out of the reviewed figures (``n_not_covered``).
    An answered audit whose auditors tie (no majority) counts as the label it checks being wrong,
    for the LLM's and the reviewed labels alike (``n_audits_unresolved``, ``n_review_audits_tied``).
    Returns a strict-JSON dict; an entry is None (with ``reason``) when it cannot be measured.
    """
    from curation.estimation import mover_combine, published_accuracy

    routed = run.routed.set_index("id")
    published = final.final.set_index("id")
    out: dict[str, Any] = {"confidence_level": confidence_level}
    # the LLM labels published without review, from the spot-check audits; an audit answered but
    # tied counts as the LLM being wrong, so that the hard records are not dropped from the sample
    # (conservative)
    auto_ids = routed.index[routed["route"].isin(AUTO_ROUTES)]
    answered = set(run.responses["record_id"].astype(str)) if len(run.responses) else set()
    audited = {rid for rid in auto_ids if routed.at[rid, "route"] == "spot_check" and str(rid) in answered}
    stopped = (run.routing or {}).get("auto_accept_stopped")
    if len(auto_ids) == 0:
        reason = f"auto-accept stopped: {stopped['reason']}" if stopped else "nothing was auto-accepted"
        out |= {"llm_auto": None, "reason": reason, "n_audited": 0}
    elif not audited:
        reason = f"no blind audit of the {len(auto_ids)} auto-accepted records has been answered yet"
        out |= {"llm_auto": None, "n_audited": 0, "n_population": int(len(auto_ids)), "reason": reason}
    else:
        llm = [str(normalise_label(routed.at[rid, "llm_label"])) for rid in auto_ids]

        # the auditors' own majority (a tie: unresolved), not the published label, which the
        # consensus options (tie policy llm, min agreement) could turn into the LLM's
        audit_answers = run.responses[run.responses["record_id"].astype(str).isin({str(r) for r in audited})]
        auditors = _audit_verdicts(audit_answers)
        truth = [auditors.get(str(rid), UNRESOLVED_AUDIT) if rid in audited else None for rid in auto_ids]
        out["n_audits_unresolved"] = int(sum(t == UNRESOLVED_AUDIT for t in truth))
        report = published_accuracy(llm, ["llm_auto"] * len(auto_ids), [rid in audited for rid in auto_ids], truth,
                                    confidence_level=confidence_level)  # fmt: skip
        entry = report["by_source"]["llm_auto"]
        out["n_published_unreviewed"] = int(published["label_source"].eq("llm_auto").sum())
        out |= {"llm_auto": entry, "n_audited": entry["n_audited"], "n_population": entry["n_population"],
                "method": report["method"], "assumptions": report["assumptions"],
                "statement": f"accuracy of the LLM labels of the {entry['n_population']} auto-accepted records "
                f"({out['n_published_unreviewed']} published without review), estimated from {entry['n_audited']} "
                "blind audits"}  # fmt: skip
    # the reviewed labels of the review queue, from the review audits
    # the assisted review queue, where review audits are drawn (blind-reviewed records are not audited)
    assisted = routed["route"].eq("human_review")
    if "blind" in routed.columns:
        assisted &= ~routed["blind"].fillna(False).astype(bool)
    if "route_before_stop" in routed.columns:  # sent to review by a stop: never in the review-audit draw
        assisted &= routed["route_before_stop"].isna()
    queue = routed.index[assisted]
    reviewed = published[published["label_source"].isin(["human", "consensus"]) & published.index.isin(queue)]
    # an audit answered by a reviewer of the original record is not independent of the label it
    # checks (they may recall their own answer): Argilla cannot keep them apart, so it is not counted
    audit_answers = run.review_audits
    if "own_reviewer" in audit_answers.columns:  # RunDir.publish_files: from answers of every status
        by_own_reviewer = audit_answers["own_reviewer"].astype(bool).tolist()
    else:
        own = set(zip(run.responses["record_id"].astype(str), run.responses["user"].astype(str), strict=True))
        by_own_reviewer = [
            (str(rid), str(user)) in own
            for rid, user in zip(audit_answers["record_id"], audit_answers["user"], strict=True)
        ]
    out["n_review_audit_answers_by_own_reviewer"] = int(sum(by_own_reviewer))
    # a tied audit stays in the sample as unresolved (the published label counted wrong), as above
    audit_truth = _audit_verdicts(audit_answers[[not flag for flag in by_own_reviewer]])
    out["n_review_audits"] = int(sum(rid in audit_truth for rid in reviewed.index))
    out["n_review_audits_tied"] = int(sum(audit_truth.get(rid) == UNRESOLVED_AUDIT for rid in reviewed.index))
    out["n_not_covered"] = int(published["label_source"].isin(["human", "consensus"]).sum() - len(reviewed))
    out["reviewed"] = None
    if len(reviewed) and out["n_review_audits"]:
        mask = [rid in audit_truth for rid in reviewed.index]
        truth = [audit_truth.get(rid) for rid in reviewed.index]
        measured = published_accuracy(
            reviewed["label"].astype(str).tolist(),
            reviewed["label_source"].tolist(),
            mask,
            truth,
            confidence_level=confidence_level,
            method="mover-clopper-pearson",  # exact: the Jeffreys cells covered 93% here (card_accuracy)
        )
        out["reviewed"] = {"overall": measured["overall"], "human": measured["by_source"]["human"],
                           "consensus": measured["by_source"]["consensus"]}  # fmt: skip
        out.setdefault("method", measured["method"])
    # overall: the published rows whose accuracy is measured (llm_auto, the assisted review queue,
    # gold exact at 1), weighted by their counts; reviewed rows outside the assisted queue (answered
    # audits, blind reviews) have no audit of their own and are left out, counted in n_not_covered
    covered_reviewed = int(len(reviewed))
    counts = {
        "gold": int(published["label_source"].eq("gold").sum()),
        "llm_auto": int(published["label_source"].eq("llm_auto").sum()),
        "reviewed": covered_reviewed,
    }
    # the student's labels: what its certificate states, never a measured accuracy (its gold chose
    # its threshold; the published records have no audit), so they stay out of the overall figure
    n_student = int(published["label_source"].eq("student").sum())
    out["student"] = _student_certificate(run.student, n_student) if n_student else None
    n_total = float(sum(counts.values()))
    entries = {"llm_auto": out.get("llm_auto"), "reviewed": (out.get("reviewed") or {}).get("overall")}
    parts: list[tuple[float, float, float, float]] = []
    missing = []
    for source, n in counts.items():
        if n == 0:
            continue
        if source == "gold":
            parts.append((n / n_total, 1.0, 1.0, 1.0))
            continue
        entry = entries[source]
        if entry and entry.get("estimate") is not None:
            parts.append((n / n_total, entry["estimate"], entry["low"], entry["high"]))
        else:
            missing.append(source)
    if n_total and not missing:
        w, e, lo, hi = (np.array(v) for v in zip(*parts, strict=True))
        estimate, low, high = mover_combine(w, e, lo, hi)
        out["overall"] = {
            "estimate": estimate,
            "low": max(low, 0.0),
            "high": min(high, 1.0),
            "n_population": int(n_total),
            "n_not_covered": out["n_not_covered"],
            "n_student_not_covered": n_student,
        }
    else:
        out["overall"] = None
        out["overall_reason"] = f"not measured: no audit of the {', '.join(sorted(set(missing)))} labels"
    return out


def _student_certificate(student: dict[str, Any], n_published: int) -> dict[str, Any]:
    """What student.json's certificate states about the ``n_published`` student labels (for the card)."""
    certificate = (student or {}).get("certificate") or {}
    keep = ("threshold", "target_precision", "confidence_level", "n_accepted_gold", "n_correct_gold", "n_gold")
    tried = (student or {}).get("settings_tried") or []
    # several settings tried on the same gold: the level that holds for the one kept (Bonferroni)
    level = (student or {}).get("confidence_level_after_selection", certificate.get("confidence_level"))
    return {"n_population": n_published, "stratum": (student or {}).get("stratum"),
            "student": (student or {}).get("student"), "model": (student or {}).get("model"),
            **{k: certificate.get(k) for k in keep}, "n_settings_tried": max(1, len(tried)),
            "confidence_level_after_selection": level}  # fmt: skip


# ------------------------------------------------------------------------------------------- card


def describe_reasoning(cfg: dict[str, Any], final: FinalDataset) -> str:
    """Which published records carry the LLM's reasoning (``model.generation.reasoning``)."""
    mode = ((cfg.get("model") or {}).get("generation") or {}).get("reasoning", "all")
    n = int(final.final["reasoning"].notna().sum()) if "reasoning" in final.final.columns else 0
    why = {
        "all": "asked of every record",
        "review_only": "asked only of the records shown to reviewers with the LLM's suggestion",
        "none": "never asked for",
    }.get(mode, mode)
    return f"{n} of {len(final.final)} published records have the LLM's reasoning ({mode}: {why})"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def _first(df: pd.DataFrame, column: str) -> Any:
    if column in df.columns and df[column].notna().any():
        values = df[column].dropna().unique().tolist()
        return values[0] if len(values) == 1 else ", ".join(map(str, values))
    return None


def build_dataset_card(run: RunFiles, final: FinalDataset, agreement: dict[str, Any]) -> str:
    """The dataset card (README.md with YAML front matter) for a published run."""
    import yaml

    cfg, routed, summary = run.config, run.routed, final.summary
    task = cfg.get("name") or run.run.get("task") or run.run.get("task_name") or "labeltriage task"
    model = run.run.get("model") or _first(routed, "model") or (cfg.get("model") or {}).get("name")
    prompt_hash = run.run.get("prompt_hash") or _first(routed, "prompt_hash")
    cost = float(routed["cost_usd"].fillna(0).sum()) if "cost_usd" in routed.columns else None
    tokens_in = int(routed["input_tokens"].fillna(0).sum()) if "input_tokens" in routed.columns else None
    tokens_out = int(routed["output_tokens"].fillna(0).sum()) if "output_tokens" in routed.columns else None
    meta = {
        "pretty_name": f"{task} (labeltriage)",
        "task_categories": ["text-classification"],
        "tags": ["labeltriage", "argilla", "llm-assisted-labelling", "active-learning"],
        "size_categories": [_size_category(len(final.final))],
        "labeltriage": {
            "task": task,
            "model": model,
            "prompt_hash": prompt_hash,
            "label_sources": summary["per_label_source"],
            "consensus": summary["consensus"],
        },
    }
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", ""]
    lines += [f"# {task}", "", cfg.get("description") or "Labels made with labeltriage.", ""]
    lines += ["## How the labels were made", ""]
    lines += [
        "An LLM pre-labelled every record with a label, a confidence and its reasoning. The confidence "
        "was calibrated on gold labels; records above the auto-accept threshold kept the LLM label "
        "(`llm_auto`; a random share of them was audited blind), the rest went to human reviewers in "
        "Argilla; the gold records carry their gold label (`gold`). "
        "Reviewed records carry the reviewers' label: `human` when every reviewer agreed, `consensus` "
        f"when they disagreed and the consensus method ({summary['consensus']['method']}, ties: "
        f"{summary['consensus']['tie_policy']}) decided. Records with low agreement "
        f"(winning share < {summary['consensus']['min_agreement']}) or a tie went to an adjudication "
        "queue and are not in this dataset."
        + (
            " Review-queue records nobody answered carry the student's label (`student`: a model trained on the "
            "reviewed labels) where its probability clears a threshold certified on gold (below)."
            if summary["per_label_source"].get("student")
            else ""
        ),
        "",
        "| label_source | records |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in summary["per_label_source"].items()]
    if not summary["per_label_source"].get("student"):  # say why, rather than a bare 0
        said = (run.student or {}).get("statement")
        why = f"student.json says: {said}" if said else "`labeltriage student-label` was not run."
        lines += ["", f"No published record is labelled by the student: {why}"]
    lines += [
        "",
        f"Not published: {summary['n_adjudication']} in adjudication "
        f"({', '.join(f'{k}: {v}' for k, v in summary['adjudication_reasons'].items()) or 'none'}), "
        f"{summary['n_pending_review']} awaiting review, {summary['n_failed_prelabels']} failed pre-labels.",
        "",
        "| label | records |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in summary["per_label"].items()]
    labels = cfg.get("labels") or []
    if labels:
        lines += ["", "## Labels", ""]
        lines += [
            f"- **{lab.get('name')}**: {lab.get('description', '')}" if isinstance(lab, dict) else f"- {lab}"
            for lab in labels
        ]
    if cfg.get("guidelines"):
        lines += ["", "## Guidelines", "", cfg["guidelines"].strip()]
    lines += ["", "## Model", "", f"- model: `{_fmt(model)}`", f"- prompt hash: `{_fmt(prompt_hash)}`"]
    if cfg.get("confidence"):
        lines.append(f"- confidence used for routing: {cfg['confidence'].get('routing', 'n/a')}")
    lines.append(f"- reasoning: {describe_reasoning(cfg, final)}")
    lines += ["", "## Calibration", ""]
    if run.calibration:
        lines += ["```json", dumps(_short(run.calibration), default=str), "```"]
    else:
        lines.append("No calibration.json in the run directory.")
    lines += ["", "## Routing thresholds", ""]
    thresholds = run.routing.get("settings_used") or cfg.get("thresholds") or {}
    for key, value in thresholds.items():  # what route used (its options override the config's)
        lines.append(f"- {key}: {value}")
    # routing.json keeps the choice under "threshold" (null values: no threshold reached the target)
    chosen = run.routing["threshold"] if isinstance(run.routing.get("threshold"), dict) else run.routing
    if run.routing.get("statement"):
        lines.append(f"- {run.routing['statement']}")
    for key in ("threshold", "threshold_calibrated", "lower_bound", "precision", "precision_gold", "n_accepted_gold",
                "n_gold", "coverage", "coverage_pool", "target_precision", "confidence_level", "method"):  # fmt: skip
        if key in chosen:
            lines.append(f"- chosen {key}: {_fmt(chosen[key])}")
    if not thresholds and not run.routing:
        lines.append("No routing.json in the run directory.")
    monitor = run.routing.get("audit_monitor")
    if monitor:
        lines.append(f"- blind audits of the auto-accepted records: {monitor['statement']} ({monitor['method']})")
    stopped = run.routing.get("auto_accept_stopped")
    if stopped:
        lines.append(f"- auto-accept stopped: {stopped['reason']} ({stopped['n_records']} records)")
    lines += ["", "## Agreement", ""]
    if agreement.get("n_responses"):
        a = agreement
        lines += [
            f"- reviewers: {a.get('n_reviewers')}, responses: {a.get('n_responses')}, records reviewed by "
            f"two or more: {a.get('n_records_multi_reviewed')}",
            f"- percent agreement: {_fmt(a.get('percent_agreement'))}",
            f"- Fleiss' kappa: {_fmt(a.get('fleiss_kappa'))} ({a.get('fleiss_band', 'n/a')}; subsampled to "
            f"k={a.get('fleiss_k')} ratings per record, seed {a.get('fleiss_seed')})",
            f"- Krippendorff's alpha (nominal): {_fmt(a.get('krippendorff_alpha_nominal'))} "
            f"({a.get('krippendorff_alpha_band', 'n/a')})",
        ]
        lvm = a.get("llm_vs_majority") or {}
        if lvm:
            lines.append(
                f"- LLM vs human majority: kappa {_fmt(lvm.get('kappa'))} ({lvm.get('band')}), accuracy "
                f"{_fmt(lvm.get('accuracy'))} on {lvm.get('n_items')} records (every record reviewers answered, "
                "audits included)"
            )
        if a.get("llm_favours_reviewer_flagged"):
            lines.append(
                f"- warning: the LLM agrees with {', '.join(a['llm_favours_reviewer_flagged'])} far more "
                "than with the other reviewers' majority (it may share that reviewer's biases)"
            )
        modes = a.get("llm_agreement_by_review_mode")
        if modes:
            lines.append(f"- {describe_review_modes(modes)}")
        lines.append(
            "- bands: > 0.80 almost perfect, > 0.60 substantial, > 0.40 moderate, > 0.20 fair, else slight/poor"
        )
    else:
        lines.append("No reviewer responses yet.")
    lines += ["", "## Accuracy of the published labels", ""]
    measured = (agreement or {}).get("published_accuracy") or published_label_accuracy(run, final)
    lines += [f"- {part}" for part in published_accuracy_parts(measured)]
    if not measured.get("reviewed"):
        lines.append(
            "- reviewed labels (`human`, `consensus`): not audited blind (thresholds.review_audit_rate is 0 or no "
            "audit answered); see the agreement figures above"
        )
    lines.append("- gold labels (`gold`): the gold the threshold was certified on, published as given")
    shares = (agreement or {}).get("class_shares") or class_shares(run)
    if shares and shares.get("shares"):
        lines += ["", "## Label shares", "",
                  f"Share of each label among the {shares['n_population']} records, from the LLM labels corrected "
                  f"on {shares['n_audited']} gold records (prediction-powered inference, {shares['method']}; "
                  "valid when the gold is a random sample of the run). A published share outside the interval "
                  "means the published labels under- or over-represent that label (the auto-accepted LLM labels "
                  "carry the LLM's leanings):", "",
                  "| label | share | 95% interval | LLM's share | published share |",
                  "|---|---|---|---|---|"]  # fmt: skip
        published_labels = final.final["label"].astype(str)
        for label, entry in shares["shares"].items():
            published_share = float((published_labels == str(label)).mean()) if len(published_labels) else None
            lines.append(
                f"| {label} | {_fmt(entry['estimate'])} | {_fmt(entry['low'])}-{_fmt(entry['high'])} | "
                f"{_fmt(entry['predicted_share'])} | {_fmt(published_share)} |"
            )
    lines += ["", "## Cost", ""]
    lines.append(
        f"- LLM cost: ${_fmt(cost, 4)} (input tokens {_fmt(tokens_in)}, output tokens {_fmt(tokens_out)})"
        if cost is not None
        else "- LLM cost: not recorded"
    )
    lines += ["", "## Columns", ""]
    lines += [
        "`id`, `text`, `label`, `label_source` (human | consensus | llm_auto | student | gold), `confidence` "
        "(P(label): consensus share or posterior for reviewed records, calibrated LLM confidence for llm_auto, "
        "the student's probability for student), "
        "`agreement` (share of reviewers who chose the label; null for llm_auto), `n_reviewers`, "
        "`llm_label`, `reasoning` (the LLM's).",
        "",
    ]
    return "\n".join(lines)


def _short(obj: Any, depth: int = 0) -> Any:
    """Scalars and short lists only (calibration.json may hold whole curves), and no local paths:
    a card is published, the gold file's absolute path stays home (its file name is kept)."""
    if isinstance(obj, dict):
        return {k: _short(v, depth + 1) for k, v in obj.items() if not (isinstance(v, list) and len(v) > 12)}
    if isinstance(obj, str) and (obj.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", obj)):
        return Path(obj).name
    return obj


# ------------------------------------------------------------------------------------------ local


def write_local(final: FinalDataset, card: str, agreement: dict[str, Any], output_dir: str | Path) -> dict[str, Path]:
    """Write ``final.parquet``, ``README.md``, ``agreement.json`` and ``adjudication.parquet``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "final": out / "final.parquet",
        "card": out / "README.md",
        "agreement": out / "agreement.json",
        "adjudication": out / "adjudication.parquet",
    }
    final.final.to_parquet(paths["final"], index=False)
    paths["card"].write_text(card)
    write_json(paths["agreement"], agreement)
    final.adjudication.to_parquet(paths["adjudication"], index=False)
    return paths
