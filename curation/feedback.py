"""What a feedback round computes from reviewers' answers: the human majority per record and new
review priorities from a student retrained on it. Pure: pandas, numpy, scikit-learn; the round
that pulls and pushes is `curation.adapters.loop`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from curation.consensus import majority_vote

# weight of the retrained student's doubt against the calibrated confidence in a round's priority
STUDENT_WEIGHT = 0.5


def human_majority(responses: pd.DataFrame, labels: list[str] | None = None) -> pd.DataFrame:
    """Per record: majority label of submitted answers (a tie: None), agreement and count.

    ``responses``: one row per (``record_id``, ``user``) answer with its ``label`` (and ``status``;
    a missing status counts as submitted). ``labels``: the label set (answers outside it are not
    counted); default the labels answered. Returns ``record_id, majority, agreement, n_reviewers``.
    The one majority rule of the product: the loop, the audits' verdict, the published accuracy
    and the collected gold all use it."""
    submitted = responses
    if "status" in responses.columns:
        submitted = responses[responses["status"].fillna("submitted") == "submitted"]
    if submitted.empty:
        return pd.DataFrame(columns=["record_id", "majority", "agreement", "n_reviewers"])
    if labels is None:
        labels = sorted(submitted["label"].astype(str).unique())
    index = {label: code for code, label in enumerate(labels)}
    table = submitted.pivot_table(index="record_id", columns="user", values="label", aggfunc="last")
    codes = table.apply(lambda column: column.map(index)).to_numpy(dtype=float)
    result = majority_vote(codes, len(labels))
    majority = [labels[code] if code >= 0 else None for code in result.labels]
    return pd.DataFrame(
        {
            "record_id": table.index,
            # object dtype: pandas 3 would store the strings as `str` and a tie's None as NaN
            "majority": pd.Series(majority, dtype=object),
            "agreement": result.agreement,
            "n_reviewers": result.n_votes,
        }
    )


def reprioritise(
    routed: pd.DataFrame,
    embeddings: np.ndarray,
    majority: pd.DataFrame,
    labels: list[str],
    weak_weight: float = 0.3,
    seed: int = 0,
    student_weight: float = STUDENT_WEIGHT,
) -> tuple[np.ndarray, dict[str, Any]]:
    """New review priorities ``(n,)`` in [0, 1], higher = review first, from the calibrated
    confidence and a student retrained on human + weak LLM labels.

    The student (logistic regression on ``embeddings``, ``(n, d)`` aligned with ``routed``) trains
    on the human majority labels (sample weight 1) and, for the other ok rows, the LLM's label as a
    weak label (``weak_weight``). The priority is the one formula of
    :func:`curation.routing.priority_scores` (route's priority is its ``w = 0`` case)::

        priority = (1 - w) * (1 - calibrated_confidence) + w * (1 - p_student(llm_label))

    with ``w = student_weight``; a failed pre-label (or one without a calibrated confidence) gets
    1.0. Both terms estimate the same thing, the chance that the LLM's label is wrong: one from the
    LLM's confidence calibrated on gold, one from a second model that has seen the reviewers'
    answers. Their weighted mean is a linear opinion pool (Stone 1961; Genest & Zidek 1986), so the
    priority stays a probability-like score in [0, 1].

    Args:
        routed: ``routed.parquet`` (``id, llm_label, status, calibrated_confidence, priority``).
        embeddings: ``(len(routed), d)`` float embeddings of ``routed``'s texts.
        majority: :func:`human_majority`'s table (``record_id, majority``).
        labels: the task's label names (single-label tasks: a multi-label answer is no weak label).
        weak_weight: sample weight of an LLM label in the student's training, in (0, 1].
        seed: the student's random state.
        student_weight: ``w`` above, in [0, 1].

    Returns:
        ``(priority, info)``; without two distinct labels to train on, ``routed["priority"]``
        unchanged and ``info["retrained"] = False``.
    """
    from curation.active_learning import disagreement_scores
    from curation.routing import priority_scores
    from curation.student import fit_student

    human = {
        rid: label for rid, label in zip(majority["record_id"], majority["majority"], strict=True) if label in labels
    }
    y, weights = [], []
    for rid, llm_label, status in zip(routed["id"], routed["llm_label"], routed["status"], strict=True):
        if rid in human:
            y.append(human[rid])
            weights.append(1.0)
        elif status == "ok" and isinstance(llm_label, str) and llm_label in labels:
            y.append(llm_label)
            weights.append(weak_weight)
        else:
            y.append(None)
            weights.append(0.0)
    mask = np.array([label is not None for label in y])
    if len({label for label in y if label is not None}) < 2:
        return routed["priority"].to_numpy(dtype=float), {"retrained": False, "reason": "fewer than two labels"}
    student = fit_student(
        embeddings[mask], np.array(y, dtype=object)[mask], classes=labels, seed=seed,
        sample_weight=np.array(weights)[mask],
    )  # fmt: skip
    proba = student.predict_proba(embeddings)
    column = {str(name): j for j, name in enumerate(student.classes)}
    llm_labels = routed["llm_label"].tolist()
    llm_codes = np.array(
        [column.get(label, -1) if isinstance(label, str) else -1 for label in llm_labels], dtype=np.int64
    )
    calibrated = routed["calibrated_confidence"].to_numpy(dtype=float)
    ok = (routed["status"].astype(str) == "ok").to_numpy() & np.isfinite(calibrated) & (llm_codes >= 0)
    student_doubt = disagreement_scores(llm_codes, proba)  # 1 - p_student(llm_label); 1.0 where none
    priority = priority_scores(calibrated, ok, disagreement=student_doubt, weight=student_weight)
    predicted = student.classes[np.argmax(proba, axis=1)]
    disagreement = predicted != np.array([str(label) for label in llm_labels], dtype=object)
    info = {
        "retrained": True,
        "n_human": int(sum(1 for w in weights if w == 1.0)),
        "n_weak": int(sum(1 for w in weights if 0 < w < 1)),
        "student_llm_disagreement": float(disagreement.mean()),
        "student_weight": float(student_weight),
    }
    return priority, info
