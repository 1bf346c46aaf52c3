"""A cascade before humans: a second opinion on the records the first answer was unsure of.

The records whose first confidence is below a cut fixed in advance (``below``) are answered again
by a second labeller (another configured model, or the same model with another prompt or sampled
answers); the others keep their one answer. The two answers become one *label-free* routing score
(the model-cascade idea of FrugalGPT: Chen, Zaharia & Zou 2023, arXiv:2305.05176, with the
agreement of two answers as the scorer, as in self-consistency: Wang et al. 2023,
arXiv:2203.11171):

* not asked (first confidence >= ``below``): the first confidence ``s1``;
* asked, same label: ``(s1 + s2) / 2``, the two answers' mean confidence in the shared label;
* asked, other label: ``s1 * (1 - s2)``, the first answer's confidence times the second's doubt in
  its own (different) label: a confident contradiction sends the record to the bottom;
* asked, no second answer (the second labeller failed on it): ``s1``.

The published label stays the first answer's. Because the score uses no gold label, ``labeltriage
route`` certifies a threshold on it exactly as on the plain confidence (fixed-sequence exact
binomial tests on a random gold draw, :func:`curation.certify.certify_threshold`): the certified
precision covers every record the cascade accepts, whichever answer lifted it. On the two corpora of
``benchmarks/certified_coverage.py`` (Qwen, plain vs retrieved-example prompts of 300 records) the
score ranked right vs wrong labels with AUROC 0.851 / 0.807 against the first confidence's 0.821 /
0.690; the formula was chosen among five on those same records (max, mean, min, noisy-or of the
agreeing pair; all within 0.01), so those figures are not held out.

Pure computation on numpy arrays (no client).
"""

from __future__ import annotations

from typing import Any

import numpy as np

METHOD = (
    "cascade: a second labeller on the records whose first confidence is below a fixed cut; score "
    "(s1 + s2) / 2 where the two labels agree, s1 * (1 - s2) where they differ, s1 otherwise "
    "(curation.cascade; FrugalGPT, Chen et al. 2023)"
)


def asked_mask(first_scores: Any, below: float) -> np.ndarray:
    """Which records get a second opinion: ``(n,)`` bool, first confidence < ``below``.

    ``first_scores``: ``(n,)`` in [0, 1], NaN for records without an answer (never asked).
    ``below``: in (0, 1]; 1.0 asks every answered record, those at exactly 1.0 too (a stated
    confidence is often 1.0). Raises ValueError outside that range.
    """
    if not 0 < below <= 1:
        raise ValueError(f"below must be in (0, 1] (1.0 asks every record), got {below}")
    scores = np.asarray(first_scores, dtype=np.float64)
    return np.isfinite(scores) & ((scores < below) | (below >= 1.0))


def opinion_masks(
    first_labels: Any, second_labels: Any, second_scores: Any, asked: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``(same, other)``: ``(n,)`` bool masks of the asked records whose second answer (a label and
    a finite confidence) names the first answer's label, and of those naming another label."""
    s2 = np.asarray(second_scores, dtype=np.float64)
    second = np.asarray(second_labels, dtype=object)
    answered = np.asarray(asked, dtype=bool) & np.isfinite(s2)
    answered &= np.array([label is not None and label == label for label in second], dtype=bool)  # NaN != NaN
    same = answered & (np.asarray(first_labels, dtype=object).astype(str) == second.astype(str))
    return same, answered & ~same


def cascade_confidence(
    first_labels: Any, first_scores: Any, second_labels: Any, second_scores: Any, asked: Any
) -> np.ndarray:
    """The cascade's routing score per record (see the module docstring).

    Args:
        first_labels: ``(n,)`` the first answer's labels (strings).
        first_scores: ``(n,)`` its confidence in [0, 1] (NaN without an answer: kept NaN).
        second_labels: ``(n,)`` the second answer's labels; None/NaN where there is none.
        second_scores: ``(n,)`` its confidence in its own label, in [0, 1]; NaN where there is none.
        asked: ``(n,)`` bool, the records given a second opinion (:func:`asked_mask`).

    Returns:
        ``(n,)`` float64 scores in [0, 1] (NaN where ``first_scores`` is NaN).

    Raises:
        ValueError: arrays of different lengths, or scores outside [0, 1].
    """
    s1 = np.asarray(first_scores, dtype=np.float64)
    s2 = np.asarray(second_scores, dtype=np.float64)
    asked = np.asarray(asked, dtype=bool)
    first = np.asarray(first_labels, dtype=object)
    second = np.asarray(second_labels, dtype=object)
    if not (s1.shape == s2.shape == asked.shape == first.shape == second.shape) or s1.ndim != 1:
        raise ValueError(
            f"first/second labels and scores and asked must be (n,) arrays of one length, got {first.shape}, "
            f"{s1.shape}, {second.shape}, {s2.shape}, {asked.shape}"
        )
    for name, values in (("first_scores", s1), ("second_scores", s2)):
        finite = values[np.isfinite(values)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise ValueError(f"{name} must be in [0, 1], got values in [{finite.min():g}, {finite.max():g}]")
    same, other = opinion_masks(first, second, s2, asked)
    out = s1.copy()
    out[same] = (s1[same] + s2[same]) / 2
    out[other] = s1[other] * (1 - s2[other])
    return out
