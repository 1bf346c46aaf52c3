"""Held-out measurement of a confidence calibrator: fit on one share of the gold, measure on the rest.

A calibrator measured on the records it was fitted on always looks good (isotonic regression's
in-sample ECE is 0 by construction), so `labeltriage calibrate`, notebook 02 and
`benchmarks/calibration_report.py` report metrics on a held-out share. The split is stratified
by right/wrong: both shares keep the gold's accuracy and both hold a wrong answer whenever the
gold has two (a plain random split of a small gold set often leaves the held-out share without
one, and then nothing can be measured on it). Pure: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curation.calibration import (
    Calibrator,
    Method,
    calibration_metrics,
    check_confidences,
    check_correct,
    expected_calibration_error,
    fit_calibrator,
)

# a held-out split needs this much gold; under HELD_OUT_WARN_BELOW held-out records ECE is noise
MIN_GOLD_FOR_SPLIT = 20
HELD_OUT_WARN_BELOW = 50


def stratified_holdout(correct: Any, holdout: float, seed: int = 0) -> tuple[np.ndarray | None, str | None]:
    """A held-out mask ``(n,)`` bool stratified by right/wrong, or ``(None, why not)``.

    ``holdout`` is the share held out (0 = none). Each share keeps at least one record of each
    kind; with fewer than :data:`MIN_GOLD_FOR_SPLIT` records, or fewer than two of the minority
    kind, no split is made and the reason is returned instead.
    """
    y = np.asarray(correct, dtype=bool)
    n, n_wrong = y.shape[0], int((~y).sum())
    n_right = n - n_wrong
    minority, k_minority = ("wrong", n_wrong) if n_wrong <= n_right else ("right", n_right)
    if holdout <= 0:
        return None, "--holdout 0 holds no gold out"
    if n < MIN_GOLD_FOR_SPLIT:
        return None, f"{n} gold records are too few to hold some out (need >= {MIN_GOLD_FOR_SPLIT})"
    if k_minority < 2:
        return None, (
            f"only {k_minority} of the {n} gold pre-labels is {minority}; the fitting share and the "
            f"held-out share each need a {minority} one"
        )
    rng = np.random.default_rng(seed)
    held = np.zeros(n, dtype=bool)
    n_held = int(round(holdout * n))
    held_wrong = min(max(int(round(holdout * n_wrong)), 1), n_wrong - 1)
    held_right = min(max(n_held - held_wrong, 1), n_right - 1)
    for value, k in ((False, held_wrong), (True, held_right)):
        held[rng.permutation(np.flatnonzero(y == value))[:k]] = True
    return held, None


@dataclass
class HeldOutCalibration:
    """What :func:`evaluate_calibrator` measured.

    ``held_out`` is None when no split could be made (``in_sample_because`` says why); then only
    ``in_sample`` exists and it is optimistic. ``calibrator`` is fitted on *all* the gold (what a
    run uses); the held-out figures come from a second calibrator fitted on the fitting share only.
    """

    calibrator: Calibrator
    in_sample: dict[str, Any]
    held_out: dict[str, Any] | None
    in_sample_because: str | None
    held_mask: np.ndarray | None
    held_calibrated: np.ndarray | None
    warnings: list[str] = field(default_factory=list)


def evaluate_calibrator(
    confidences: Any,
    correct: Any,
    *,
    method: Method = "isotonic",
    holdout: float = 0.3,
    n_bins: int = 15,
    seed: int = 0,
) -> HeldOutCalibration:
    """Fit a calibrator on all gold and measure calibration on a stratified held-out share.

    Parameters
    ----------
    confidences : ``(n,)`` raw confidences in [0, 1] of the gold pre-labels.
    correct : ``(n,)`` bool, the pre-label equals the gold label.
    method, n_bins : as :func:`curation.calibration.fit_calibrator`; metrics use ``n_bins``
        equal-width bins (:func:`curation.calibration.calibration_metrics`).
    holdout : share of the gold held out (0 = in-sample only); ``seed`` seeds the split.

    The held-out report holds the metrics before/after, the split's sizes, and
    ``ece_if_perfectly_calibrated``: the mean ECE of 200 draws of correctness as
    Bernoulli(calibrated confidence) on the held-out records, i.e. the estimator's own noise
    floor at this size (Bröcker & Smith 2007, "Increasing the reliability of reliability
    diagrams", consistency resampling). Raises ``ValueError`` on invalid inputs.
    """
    c = check_confidences(confidences, "confidences")
    y = check_correct(correct, c.shape[0], "correct")
    held, in_sample_because = stratified_holdout(y, holdout, seed)
    warnings: list[str] = []
    held_out: dict[str, Any] | None = None
    held_calibrated = None
    if held is not None:
        fit_part = ~held
        split_cal = fit_calibrator(c[fit_part], y[fit_part], method=method, n_bins=n_bins)
        held_calibrated = split_cal.transform(c[held])
        before = calibration_metrics(c[held], y[held], n_bins)
        after = calibration_metrics(held_calibrated, y[held], n_bins)
        draws = np.random.default_rng(seed).random((200, int(held.sum()))) < held_calibrated
        floor = float(np.mean([expected_calibration_error(held_calibrated, d, n_bins) for d in draws]))
        held_out = {
            "n_fit": int(fit_part.sum()), "n_held_out": int(held.sum()), "n_held_out_wrong": int((~y[held]).sum()),
            "stratified": True, "seed": seed, "before": before, "after": after,
            "ece_ratio": _ratio(after["ece"], before["ece"]),
            "ece_if_perfectly_calibrated": floor,
        }  # fmt: skip
        if held.sum() < HELD_OUT_WARN_BELOW:
            warnings.append(
                f"the held-out ECE comes from {int(held.sum())} records ({int((~y[held]).sum())} wrong), "
                f"under {HELD_OUT_WARN_BELOW}: it is noisy (a perfectly calibrated score shows ECE "
                f"~{floor:.3f} on that many); add gold for a firm figure"
            )
    else:
        exact = f" (0 by construction for {method})" if method in ("isotonic", "histogram") else ""
        warnings.append(
            f"no held-out measure: {in_sample_because}. The metrics below are in-sample: the calibrator was "
            f"fitted on these same records, so its ECE is optimistic{exact}; add gold for an honest figure"
        )
    calibrator = fit_calibrator(c, y, method=method, n_bins=n_bins)
    in_sample = {
        "before": calibration_metrics(c, y, n_bins),
        "after": calibration_metrics(calibrator.transform(c), y, n_bins),
    }
    return HeldOutCalibration(calibrator, in_sample, held_out, in_sample_because, held, held_calibrated, warnings)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator
