"""Routing pre-labels to auto-accept, human review or spot-check, at a stated precision.

The auto-accept threshold is chosen on gold so that the *lower confidence bound* of the precision
of the auto-accepted set (Wilson score or Clopper-Pearson, one-sided) reaches the target, not the
point estimate: a threshold that is 95% precise on 40 gold records is not a 95% threshold.

Shapes: ``confidences`` ``(n,)`` floats in [0, 1] (calibrated ones, normally), ``correct`` ``(n,)``
bool on gold, ``ok`` ``(n,)`` bool (False = the pre-label failed). Precisions, coverages, bounds
and priorities are proportions in [0, 1]. Pure module: numpy and scipy.

References: the Wilson score interval (Wilson 1927, "Probable Inference, the Law of Succession, and
Statistical Inference", JASA) and the Clopper-Pearson interval (Clopper & Pearson 1934, "The Use of
Confidence or Fiducial Limits Illustrated in the Case of the Binomial", Biometrika); Brown, Cai &
DasGupta (2001), "Interval Estimation for a Binomial Proportion" (Statistical Science) compares
them. Choosing a confidence threshold for a guaranteed precision is selective classification
(Geifman & El-Yaniv 2017, "Selective Classification for Deep Neural Networks", NeurIPS), whose
algorithm also corrects the bound for the scan over thresholds; :func:`choose_threshold` does not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy.stats import beta, norm

from curation.calibration import check_confidences, check_correct

BoundMethod = Literal["wilson", "clopper-pearson"]


def precision_lower_bound(
    successes: Any, n: Any, confidence_level: float = 0.95, method: BoundMethod = "wilson"
) -> np.ndarray:
    """One-sided lower confidence bound of a binomial proportion, elementwise.

    ``confidence_level=0.95`` gives the bound that the true proportion exceeds with 95% confidence;
    it equals the lower end of the *two-sided* interval at ``alpha = 2 * (1 - confidence_level)``
    (statsmodels ``proportion_confint(successes, n, alpha, method="wilson" | "beta")``).
    Entries with ``n == 0`` get 0.0.

    Args:
        successes: counts (scalar or array), ``0 <= successes <= n``.
        n: trials, broadcastable with ``successes``.
        confidence_level: one-sided level in (0.5, 1).
        method: ``"wilson"`` (Wilson 1927) or ``"clopper-pearson"`` (exact, Clopper & Pearson 1934).

    Returns:
        float64 array of the broadcast shape, in [0, 1].

    Raises:
        ValueError: ``confidence_level`` outside (0.5, 1), ``successes`` outside ``[0, n]``, or an
            unknown ``method``.
    """
    if not 0.5 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must be in (0.5, 1), got {confidence_level}")
    k = np.asarray(successes, dtype=np.float64)
    nn = np.asarray(n, dtype=np.float64)
    if np.any(k < 0) or np.any(k > nn):
        raise ValueError("successes must satisfy 0 <= successes <= n")
    safe_n = np.where(nn > 0, nn, 1.0)
    if method == "wilson":
        z = norm.ppf(confidence_level)
        p = k / safe_n
        denom = 1.0 + z * z / safe_n
        center = (p + z * z / (2 * safe_n)) / denom
        half = z * np.sqrt(p * (1 - p) / safe_n + z * z / (4 * safe_n * safe_n)) / denom
        lb = center - half
    elif method == "clopper-pearson":
        alpha = 1.0 - confidence_level
        with np.errstate(invalid="ignore"):
            lb = np.where(k > 0, beta.ppf(alpha, np.maximum(k, 1e-300), safe_n - k + 1), 0.0)
    else:
        raise ValueError(f"method must be 'wilson' or 'clopper-pearson', got {method!r}")
    return np.where(nn > 0, np.clip(lb, 0.0, 1.0), 0.0)


def coverage_precision_curve(
    confidences: Any, correct: Any, confidence_level: float = 0.95, method: BoundMethod = "wilson"
) -> dict[str, np.ndarray]:
    """For every distinct confidence ``t`` on gold: auto-accept ``conf >= t`` and report its stats.

    Returns arrays of shape ``(k,)`` (``k`` distinct confidences, descending ``threshold``):
    ``threshold``, ``n_accepted``, ``coverage`` (share of gold records accepted), ``precision``
    (share of accepted that are correct) and ``lower_bound`` (of that precision).

    Raises:
        ValueError: invalid confidences or ``correct`` (see `curation.calibration.check_confidences`),
            or invalid ``confidence_level`` / ``method`` (see :func:`precision_lower_bound`).
    """
    conf = check_confidences(confidences)
    corr = check_correct(correct, conf.shape[0])
    order = np.argsort(-conf, kind="stable")
    c_sorted = conf[order]
    cum_correct = np.cumsum(corr[order])
    # the last position of every run of equal confidences: accepting ">= t" takes the whole run
    last = np.r_[np.nonzero(np.diff(c_sorted))[0], c_sorted.shape[0] - 1]
    n_acc = last + 1
    k = cum_correct[last]
    return {
        "threshold": c_sorted[last],
        "n_accepted": n_acc.astype(np.int64),
        "coverage": n_acc / conf.shape[0],
        "precision": k / n_acc,
        "lower_bound": precision_lower_bound(k, n_acc, confidence_level, method),
    }


@dataclass
class ThresholdChoice:
    """The chosen auto-accept threshold (``inf`` = nothing can be auto-accepted at this target).

    ``lower_bound``, ``precision`` and ``coverage`` describe the gold records at or above the
    threshold (``precision`` is NaN when nothing is accepted); ``achievable`` is False when no
    threshold reaches ``target_precision``; the rest records how it was chosen.
    """

    threshold: float
    lower_bound: float
    precision: float
    n_accepted: int
    coverage: float
    achievable: bool
    target_precision: float
    confidence_level: float
    method: str
    n_gold: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, an unreachable (infinite) threshold as None (strict JSON)."""
        d = asdict(self)
        d["threshold"] = None if not np.isfinite(self.threshold) else float(self.threshold)
        return d


def choose_threshold(
    confidences: Any,
    correct: Any,
    target_precision: float = 0.95,
    confidence_level: float = 0.95,
    method: BoundMethod = "wilson",
) -> ThresholdChoice:
    """Lowest threshold (largest coverage) whose precision lower bound on gold reaches the target.

    Args:
        confidences: ``(n,)`` gold records' (calibrated) confidences.
        correct: ``(n,)`` bool, pre-label == gold.
        target_precision: precision the auto-accepted set must reach (with ``confidence_level``).
        confidence_level: one-sided level of the lower bound.
        method: ``"wilson"`` or ``"clopper-pearson"``.

    Returns:
        :class:`ThresholdChoice`; ``achievable=False`` and ``threshold=inf`` when no threshold
        reaches the target.

    Raises:
        ValueError: ``target_precision`` outside (0, 1), or invalid inputs (see
            :func:`coverage_precision_curve`).

    Note: scanning many thresholds and keeping the best one is itself a selection; the bound is
    per threshold, not simultaneous (Geifman & El-Yaniv 2017 correct for it with a union bound).
    Use Clopper-Pearson and a larger gold set when it matters.
    """
    if not 0.0 < target_precision < 1.0:
        raise ValueError(f"target_precision must be in (0, 1), got {target_precision}")
    conf = check_confidences(confidences)
    corr = check_correct(correct, conf.shape[0])
    if corr.shape[0] == 0:  # pragma: no cover - check_confidences rejects empty input
        raise ValueError("correct is empty")
    curve = coverage_precision_curve(conf, corr, confidence_level, method)
    ok = np.nonzero(curve["lower_bound"] >= target_precision)[0]
    common: dict[str, Any] = {
        "target_precision": float(target_precision),
        "confidence_level": float(confidence_level),
        "method": method,
        "n_gold": int(conf.shape[0]),
    }
    if ok.size == 0:
        return ThresholdChoice(
            threshold=float("inf"), lower_bound=0.0, precision=float("nan"), n_accepted=0,
            coverage=0.0, achievable=False, **common,
        )  # fmt: skip
    i = int(ok[-1])  # thresholds descend, so the last qualifying one covers the most
    return ThresholdChoice(
        threshold=float(curve["threshold"][i]),
        lower_bound=float(curve["lower_bound"][i]),
        precision=float(curve["precision"][i]),
        n_accepted=int(curve["n_accepted"][i]),
        coverage=float(curve["coverage"][i]),
        achievable=True,
        **common,
    )


def route_records(
    confidences: Any,
    ok: Any,
    threshold: float,
    spot_check_rate: float = 0.05,
    seed: int = 0,
    needs_review: Any | None = None,
    gold: Any | None = None,
) -> np.ndarray:
    """Route every record; returns ``(n,)`` object array of ``auto_accept|human_review|spot_check|gold``.

    * ``gold == True`` (``(n,)`` bool: the record's label is known from the gold): ``gold``, never
      auto-accepted, audited or reviewed (its known label is the one to publish);
    * ``ok == False`` (failed pre-label): always ``human_review`` (its confidence may be NaN);
    * ``needs_review == True`` (``(n,)`` bool, e.g. text that gives the model instructions, whose
      answer may be the text's and not the model's): always ``human_review``;
    * ``confidence >= threshold``: ``auto_accept``, except a random share ``spot_check_rate`` of
      them (``ceil(rate * n_auto)``: at least one audit of a non-empty set when the rate is > 0;
      drawn with ``seed``) which become ``spot_check`` (the blind audit sample);
    * otherwise ``human_review``.

    Raises:
        ValueError: ``spot_check_rate`` outside [0, 1]; ``confidences``, ``ok``, ``needs_review``
            or ``gold`` of different shapes; an ok record's confidence NaN or outside [0, 1].
    """
    if not 0.0 <= spot_check_rate <= 1.0:
        raise ValueError(f"spot_check_rate must be in [0, 1], got {spot_check_rate}")
    ok_arr = np.asarray(ok, dtype=bool)
    conf = np.asarray(confidences, dtype=np.float64)
    if conf.ndim != 1 or ok_arr.shape != conf.shape:
        raise ValueError(f"confidences and ok must be 1-D of equal length, got {conf.shape} and {ok_arr.shape}")
    if ok_arr.any():
        check_confidences(conf[ok_arr], "confidences (of ok records)")
    routes = np.full(conf.shape[0], "human_review", dtype=object)
    auto = ok_arr & (conf >= threshold)
    if needs_review is not None:
        review = np.asarray(needs_review, dtype=bool)
        if review.shape != conf.shape:
            raise ValueError(f"needs_review must have shape {conf.shape}, got {review.shape}")
        auto &= ~review
    known = np.zeros(conf.shape[0], dtype=bool)
    if gold is not None:
        known = np.asarray(gold, dtype=bool)
        if known.shape != conf.shape:
            raise ValueError(f"gold must have shape {conf.shape}, got {known.shape}")
        auto &= ~known
    auto_idx = np.nonzero(auto)[0]
    routes[auto_idx] = "auto_accept"
    routes[known] = "gold"
    # ceil, not round: a small auto-accepted set still gets an audit (round(0.05 * 9) is 0)
    n_spot = min(auto_idx.size, math.ceil(spot_check_rate * auto_idx.size - 1e-9))
    if n_spot:
        rng = np.random.default_rng(seed)
        routes[rng.choice(auto_idx, size=n_spot, replace=False)] = "spot_check"
    return routes


def priority_scores(
    confidences: Any, ok: Any, disagreement: Any | None = None, weight: float = 0.5
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Review priority, ``(n,)`` float in [0, 1], higher = review first: the product's one formula.

    ``route`` calls it with the calibrated confidences alone; a feedback round
    (`curation.feedback.reprioritise`) adds a retrained student's doubt as ``disagreement``::

        priority = (1 - weight) * (1 - confidence) + weight * disagreement     (ok records)
        priority = 1                                                           (failed ones)

    ``1 - calibrated confidence`` is the estimated chance that the pre-label is wrong (that is
    what calibration on gold makes it mean); ``disagreement`` should be a second estimate of the
    same chance, e.g. ``1 - p_student(LLM label)``
    (:func:`curation.active_learning.disagreement_scores`). Their weighted mean is a linear opinion
    pool (Stone 1961, "The opinion pool"; Genest & Zidek 1986, "Combining probability
    distributions: a critique and an annotated bibliography"), so the result stays in [0, 1] and
    the order is "most likely wrong first", which reviews the most errors per record reviewed.

    Args:
        confidences: ``(n,)`` calibrated confidences in [0, 1] (NaN allowed where ``ok`` is False).
        ok: ``(n,)`` bool, False for a failed pre-label.
        disagreement: ``(n,)`` floats in [0, 1], or None for the confidence alone.
        weight: weight of ``disagreement``, in [0, 1].

    Raises:
        ValueError: a confidence of an ok record outside [0, 1] or not finite; ``disagreement`` of
            another shape or outside [0, 1]; ``weight`` outside [0, 1].
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    ok_arr = np.asarray(ok, dtype=bool)
    conf = np.asarray(confidences, dtype=np.float64)
    if ok_arr.shape != conf.shape:
        raise ValueError(f"confidences and ok must have one shape, got {conf.shape} and {ok_arr.shape}")
    pri = np.ones(conf.shape[0])
    if ok_arr.any():
        pri[ok_arr] = 1.0 - check_confidences(conf[ok_arr], "confidences (of ok records)")
    if disagreement is not None:
        dis = np.asarray(disagreement, dtype=np.float64)
        if dis.shape != conf.shape or not np.isfinite(dis).all() or (dis < 0).any() or (dis > 1).any():
            raise ValueError("disagreement must be finite, in [0, 1], with the same shape as confidences")
        pri = np.where(ok_arr, (1 - weight) * pri + weight * dis, 1.0)
    return pri


def errors_caught_table(
    confidences: Any, correct: Any, budgets: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
) -> list[dict[str, float]]:
    """ "Review x% of records, catch y% of the LLM's errors", lowest confidence first, vs random.

    For each budget ``x`` the ``round(x * n)`` gold records of lowest confidence are reviewed. Ties
    at the cut are shared out in expectation (as if broken at random), so coarse confidences are
    not flattered. Random review catches ``x`` of the errors in expectation. Needs at least one
    error in ``correct``.

    Returns:
        One dict per budget: ``budget``, ``n_reviewed``, ``errors_caught`` (expected count),
        ``errors_caught_share``, ``random_share`` and ``lift`` (share / random share).

    Raises:
        ValueError: ``correct`` has no error, a budget outside (0, 1], or invalid inputs.
    """
    conf = check_confidences(confidences)
    corr = check_correct(correct, conf.shape[0])
    if corr.all():
        raise ValueError("correct has no errors: every gold pre-label is right, nothing to catch")
    wrong = ~corr
    n, n_err = conf.shape[0], int(wrong.sum())
    rows = []
    for x in budgets:
        if not 0.0 < x <= 1.0:
            raise ValueError(f"budgets must be in (0, 1], got {x}")
        k = int(round(x * n))
        if k == 0:
            caught = 0.0
        else:
            v = np.partition(conf, k - 1)[k - 1]  # confidence of the k-th lowest
            below = conf < v
            tied = conf == v
            need = k - int(below.sum())
            caught = float(wrong[below].sum()) + float(wrong[tied].sum()) * need / float(tied.sum())
        share = caught / n_err
        rand = k / n
        rows.append(
            {
                "budget": float(x),
                "n_reviewed": k,
                "errors_caught": caught,
                "errors_caught_share": share,
                "random_share": rand,
                "lift": share / rand if rand > 0 else float("nan"),
            }
        )
    return rows
