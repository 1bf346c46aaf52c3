"""Phase 3 of the source's scenario: the student labels the records nobody reviewed, with a certificate.

After the reviewers have answered the records the queue ranked first, the rest of the review stratum
(the records the LLM's certificate did not cover) waits. A student (:func:`curation.student.fit_student`:
logistic regression on sentence embeddings) trained on the reviewed labels predicts them, and only
the predictions whose student probability clears a threshold certified on gold are kept:

    With probability >= confidence_level over the gold draw, the records of the stratum whose
    student probability is >= threshold have precision >= target_precision,

by :func:`curation.certify.certify_threshold` (fixed-sequence exact binomial tests, Learn-then-Test:
Angelopoulos et al. 2021, arXiv:2110.01052) applied to the student's probability of its own label
on the gold records *of the same stratum* (``correct`` = student label == gold label), the grid fixed
by the stratum's unlabelled records (``pool_scores``). Conditions, as stated by the card:

* the gold records are a random sample of the corpus, so those in the stratum are a random sample of
  the stratum; the student never saw them (gold is not in its training set);
* the stratum is the LLM's *review* side of its own certificate, whose threshold was chosen on the
  same gold (from the gold records above it); ``benchmarks/student_labels.py`` measures by simulation
  how often the student's certificate is wrong with that dependence;
* the labelled pool is the stratum's unreviewed part, which the review queue's priority (the
  records the loop found most uncertain first) left for last: the certificate is about the whole
  stratum above the threshold, and the pool is its easier part, so the pool's precision is expected
  at or above it, not guaranteed.

Pure computation on numpy arrays (no client); labels are strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.certify import Certificate, certify_threshold
from curation.student import fit_student


@dataclass
class StudentLabels:
    """What :func:`certify_student_labels` found.

    Attributes:
        labels: ``(m,)`` the student's label of each pool record.
        confidence: ``(m,)`` the student's probability of that label.
        accepted: ``(m,)`` bool, confidence >= the certified threshold (all False without one).
        certificate: the threshold's certificate on the stratum's gold.
        gold_correct: ``(n,)`` bool, the student's label == the gold label, per gold record.
        gold_confidence: ``(n,)`` the student's probability of its label on each gold record.
        n_train: reviewed labels the student was trained on.
    """

    labels: np.ndarray
    confidence: np.ndarray
    accepted: np.ndarray
    certificate: Certificate
    gold_correct: np.ndarray
    gold_confidence: np.ndarray
    n_train: int


def level_after_selection(confidence_level: float, n_settings: int) -> float:
    """The level that holds for the setting kept after ``n_settings`` were tried on the same gold.

    Bonferroni: each setting's certificate fails with probability at most ``1 - confidence_level``,
    so the one kept holds with probability at least ``1 - n_settings (1 - confidence_level)``
    (floored at 0, rounded to 6 digits).
    """
    return round(max(0.0, 1 - n_settings * (1 - confidence_level)), 6)


def describe_selection(confidence_level: float, n_settings: int) -> str:
    """Why the level is lower, for the statement and the card ("" for a single setting)."""
    if n_settings <= 1:
        return ""
    return (f" ({n_settings} student settings were tried on this run's gold, settings_tried in student.json: "
            f"Bonferroni, 1 - {n_settings} x (1 - {confidence_level:g}))")  # fmt: skip


def certify_student_labels(
    train_embeddings: Any,
    train_labels: Any,
    gold_embeddings: Any,
    gold_labels: Any,
    pool_embeddings: Any,
    *,
    target_precision: float,
    confidence_level: float = 0.95,
    classes: Any | None = None,
    seed: int = 0,
) -> StudentLabels:
    """Train the student on reviewed labels, certify its threshold on gold, label the pool.

    Args:
        train_embeddings: ``(k, dim)`` embeddings of the reviewed records; ``train_labels`` ``(k,)``
            their reviewed (majority) labels; at least two distinct labels.
        gold_embeddings: ``(n, dim)`` the stratum's gold records (never in the training set);
            ``gold_labels`` ``(n,)``; ``n >= 1``.
        pool_embeddings: ``(m, dim)`` the stratum's records to label (``m`` may be 0).
        target_precision: in (0, 1); confidence_level: in [0.5, 1).
        classes: the task's labels (fixes the student's columns); default the labels trained on.
        seed: the logistic regression's seed.

    Returns:
        :class:`StudentLabels`.

    Raises:
        ValueError: mismatched shapes, fewer than two training labels, no gold, or a level outside
            its range (:func:`curation.certify.certify_threshold`).
    """
    train_x = np.asarray(train_embeddings, dtype=np.float64)
    gold_x = np.asarray(gold_embeddings, dtype=np.float64)
    pool_x = np.asarray(pool_embeddings, dtype=np.float64)
    gold_y = np.asarray(gold_labels).astype(str)
    if gold_x.ndim != 2 or gold_x.shape[0] != gold_y.shape[0] or gold_y.shape[0] == 0:
        raise ValueError(f"gold_embeddings (n, dim) and gold_labels (n,) must match with n >= 1, got "
                         f"{gold_x.shape} and {gold_y.shape}")  # fmt: skip
    dim = train_x.shape[1] if train_x.ndim == 2 else None
    if pool_x.size == 0:
        pool_x = pool_x.reshape(0, dim or gold_x.shape[1])
    if gold_x.shape[1] != dim or pool_x.ndim != 2 or pool_x.shape[1] != dim:
        raise ValueError(f"embeddings must share their width: train {train_x.shape}, gold {gold_x.shape}, "
                         f"pool {pool_x.shape}")  # fmt: skip
    student = fit_student(train_x, train_labels, classes=classes, seed=seed)
    gold_p = student.predict_proba(gold_x)
    gold_conf = gold_p.max(axis=1)
    gold_correct = student.classes[gold_p.argmax(axis=1)] == gold_y
    if pool_x.shape[0]:
        pool_p = student.predict_proba(pool_x)
        labels, confidence = student.classes[pool_p.argmax(axis=1)], pool_p.max(axis=1)
    else:
        labels, confidence = np.zeros(0, dtype=student.classes.dtype), np.zeros(0)
    certificate = certify_threshold(gold_conf, gold_correct, target_precision, confidence_level,
                                    pool_scores=confidence if confidence.size else None)  # fmt: skip
    threshold = certificate.threshold
    accepted = confidence >= threshold if threshold is not None else np.zeros(confidence.shape[0], dtype=bool)
    return StudentLabels(labels=labels, confidence=confidence, accepted=accepted, certificate=certificate,
                         gold_correct=gold_correct, gold_confidence=gold_conf,
                         n_train=int(np.asarray(train_labels).shape[0]))  # fmt: skip
