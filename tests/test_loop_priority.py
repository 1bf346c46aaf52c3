"""A feedback round's priority (`curation.feedback.reprioritise`) goes through the one formula of
`curation.routing.priority_scores`: the calibrated confidence and the retrained student's doubt.

Pure and fast: small hand-made embeddings, no server, no embedding model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from curation.feedback import reprioritise
from curation.routing import priority_scores
from curation.student import fit_student

LABELS = ["negative", "positive"]
A, B = [1.0, 0.0], [0.0, 1.0]  # two clusters: the reviewers call A positive and B negative


def _routed() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(8)],
            "llm_label": ["positive", "positive", "positive", "negative", "positive", "negative", None, "positive"],
            "calibrated_confidence": [0.95, 0.55, 0.9, 0.9, 0.95, 0.9, np.nan, 0.8],
            "status": ["ok"] * 6 + ["failed", "ok"],
            "priority": [0.05, 0.45, 0.1, 0.1, 0.05, 0.1, 1.0, 0.2],
        }
    )


EMBEDDINGS = np.array([A, A, A, B, B, B, A, [0.9, 0.1]])
MAJORITY = pd.DataFrame({"record_id": ["r2", "r3", "r5"], "majority": ["positive", "negative", "negative"]})


def test_the_calibrated_confidence_counts_in_a_feedback_round() -> None:
    priority, info = reprioritise(_routed(), EMBEDDINGS, MAJORITY, LABELS)
    assert info["retrained"] and info["n_human"] == 3 and info["n_weak"] == 4  # r0, r1, r4, r7
    # r0 and r1: same text (same embedding), same LLM label, so the same student doubt; only the
    # calibrated confidence differs (0.95 vs 0.55): half of that gap, with the default weight 0.5
    assert priority[1] - priority[0] == pytest.approx(0.5 * (0.95 - 0.55))
    # r4: the LLM says positive in the cluster the reviewers call negative: the student doubts it,
    # so it comes before r0, which has the same calibrated confidence
    assert priority[4] > priority[0] + 0.1  # 0.33 vs 0.18
    assert priority[6] == 1.0  # a failed pre-label
    assert ((priority >= 0) & (priority <= 1)).all()


def test_the_formula_is_priority_scores_with_the_students_doubt() -> None:
    routed = _routed()
    priority, _ = reprioritise(routed, EMBEDDINGS, MAJORITY, LABELS, student_weight=0.3)
    student = fit_student(
        EMBEDDINGS[[0, 1, 2, 3, 4, 5, 7]],
        ["positive", "positive", "positive", "negative", "positive", "negative", "positive"],
        classes=LABELS,
        sample_weight=[0.3, 0.3, 1.0, 1.0, 0.3, 1.0, 0.3],
    )
    proba = student.predict_proba(EMBEDDINGS)
    doubt = np.array(
        [
            1 - proba[i, LABELS.index(label)] if isinstance(label, str) else 1.0
            for i, label in enumerate(routed["llm_label"])
        ]
    )
    calibrated = routed["calibrated_confidence"].to_numpy()
    expected = np.where(routed["status"] == "ok", 0.7 * (1 - calibrated) + 0.3 * doubt, 1.0)
    np.testing.assert_allclose(priority, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(priority, priority_scores(calibrated, routed["status"] == "ok", doubt, 0.3))


def test_without_the_student_it_is_routes_priority() -> None:
    routed = _routed()
    priority, _ = reprioritise(routed, EMBEDDINGS, MAJORITY, LABELS, student_weight=0.0)
    ok = (routed["status"] == "ok").to_numpy()
    np.testing.assert_allclose(priority[ok], 1 - routed["calibrated_confidence"].to_numpy()[ok])
    assert priority[~ok].tolist() == [1.0]


def test_one_label_only_keeps_the_routed_priorities() -> None:
    routed = _routed().assign(llm_label="positive")
    majority = MAJORITY.assign(majority="positive")
    priority, info = reprioritise(routed, EMBEDDINGS, majority, LABELS)
    assert info == {"retrained": False, "reason": "fewer than two labels"}
    assert priority.tolist() == routed["priority"].tolist()


def test_priority_scores_values_and_errors() -> None:
    got = priority_scores([0.8, 0.3, np.nan], [True, True, False], disagreement=[0.2, 0.9, 0.0], weight=0.25)
    np.testing.assert_allclose(got, [0.75 * 0.2 + 0.25 * 0.2, 0.75 * 0.7 + 0.25 * 0.9, 1.0])
    np.testing.assert_allclose(priority_scores([0.8, 0.3], [True, True]), [0.2, 0.7])
    with pytest.raises(ValueError, match="weight"):
        priority_scores([0.5], [True], [0.5], weight=1.5)
    with pytest.raises(ValueError, match="disagreement"):
        priority_scores([0.5], [True], [1.2])
    with pytest.raises(ValueError, match="one shape"):
        priority_scores([0.5, 0.4], [True])
