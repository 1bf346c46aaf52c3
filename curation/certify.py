"""A family-wise valid auto-accept threshold, and a planner that says how much gold it needs.

The statement :func:`certify_threshold` makes true::

    With probability >= confidence_level over the draw of the gold records, the precision of the
    records whose score is >= threshold, in the population the gold was drawn from, is
    >= target_precision.

"Precision" is the share of those records whose pre-label is right. The probability is over the
gold draw only: the population (the run's records and their scores) is fixed.

Method: fixed-sequence testing (Bauer 1991; Westfall & Krishen 2001) of the hypotheses
``H_j: precision(t_j) < target`` over candidate thresholds ``t_1 > t_2 > ...`` ordered from strict
to loose, each with an exact one-sided binomial test (p-value ``P(Binomial(N_j, target) >= S_j)``,
``N_j`` gold records with score ``>= t_j`` of which ``S_j`` are right), each at the full level
``delta = 1 - confidence_level``, stopping at the first test that fails. The certified threshold is
the loosest one rejected before the first failure. This is the procedure Learn-then-Test uses to
control a risk with a fixed ordering of the parameter (Angelopoulos, Bates, Candès, Jordan, Lei
2021, "Learn then Test: Calibrating Predictive Algorithms to Achieve Risk Control",
arXiv:2110.01052). It controls the family-wise error rate at ``delta`` whatever the
dependence between the tests: a wrong certificate needs the first true ``H_j`` in the sequence
to be rejected, which happens with probability ``<= delta``. Unlike keeping the loosest threshold
whose per-threshold bound reaches the target (:func:`curation.routing.choose_threshold`, a
selection that over-states its level), no correction for the number of thresholds is needed; the
price is that the order and the grid must be fixed *before* looking at the gold labels.

Why it holds, and its conditions:

* each gold record is a uniform random draw from the population (with replacement, or i.i.d.
  from the process that made the population). Then, for a fixed ``t``, the gold records with
  score ``>= t`` are a random sample of the population's records with score ``>= t``, and the
  number right among them is Binomial given their count: the test is exact. (A sample drawn
  without replacement from a finite population makes it hypergeometric, which is more
  concentrated; the binomial test is then conservative in practice.)
* the candidate thresholds are a function of the *scores* only, never of the gold labels. With
  ``pool_scores`` (the scores of every record the threshold will be applied to) the grid is a
  function of the population only, so it is fixed with respect to the gold draw and the
  guarantee is exact. Without it the grid is taken from the gold's own scores: label-free, but
  random, so the argument above does not cover it exactly (which hypotheses are tested then
  depends on the gold's scores, which are mildly associated with its labels);
  ``benchmarks/guarantee.py`` measures that variant too. Pass ``pool_scores`` whenever the run is
  at hand.
* the ranking score must not have been fitted on the gold labels: pass the *raw* confidence. A
  calibrator fitted on the same gold (``labeltriage calibrate``) is monotone, so it orders the
  records the same way, but isotonic regression on small gold collapses the scores to a few
  distinct values (fewer thresholds to choose from) and its ties depend on the gold labels. Keep
  the calibrated value for display only (``to_calibrated``).

Power: the sequence stops at its first failure, so a first test on a handful of records that
fails by bad luck ends everything, and the share of draws that certify anything depends on the
first test alone. The grid starts where the expected number of gold records above the threshold
is ``start`` (default :func:`default_start`: ``max(min_gold_needed(target, level), 3 * sqrt(n))``,
e.g. 60 of 400 gold records at 0.85, and never fewer than the count with which a test can pass at
all), then steps so that this expected count grows by a factor ``1 + step`` (default
:data:`DEFAULT_STEP`) per candidate, down to the loosest score. The rule and its constants depend
on the gold *size* only; they were chosen by a sweep over the populations of
``benchmarks/guarantee.py`` (flat, rising, calibrated and coarse confidences and the four real
pre-label populations, gold sizes 30-1000, targets 0.85-0.95, 600 draws per cell). There,
starting at the bare minimum (the top 19 records for 0.85) accepted in 41% of the draws of the
calibrated 400-gold 0.85 cell against 87% for this rule; a start at 10% of ``n`` did worse at 120
gold (11% of draws accepting over the cells the truth allows, against 15%); splitting the level
over two or three starts (Bonferroni, or the fallback procedure of Wiens 2003) did worse than one
sequence; the step (0.05 to 0.25) barely mattered.

Ties: accepting ``score >= t`` takes every record tied at ``t``; candidate thresholds are distinct
score values, so coarse (stated) confidences give only as many candidates as distinct values.

Shapes: ``scores`` ``(n,)`` gold records' raw confidences (finite; any real scale, since only their
order is used), ``correct`` ``(n,)`` bool (pre-label == gold), ``pool_scores`` ``(m,)``. Pure
module: numpy and scipy only; no client, no file I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import beta, binom

METHOD = "fixed_sequence_binomial"
METHOD_REFERENCE = (
    "fixed-sequence testing (Bauer 1991) of H_t: precision(t) < target from strict to loose thresholds, "
    "exact one-sided binomial tests, as in Learn-then-Test (Angelopoulos et al. 2021, arXiv:2110.01052)"
)
# the grid's defaults (see the module docstring): the first candidate expects
# max(min_gold_needed, START_PER_SQRT_N * sqrt(n)) gold records above it; each next one (1 + DEFAULT_STEP) times more
START_PER_SQRT_N = 3.0
DEFAULT_STEP = 0.1


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------
def _check_level(target_precision: float, confidence_level: float) -> float:
    if not 0.0 < float(target_precision) < 1.0:
        raise ValueError(f"target_precision must be in (0, 1), got {target_precision}")
    if not 0.5 <= float(confidence_level) < 1.0:
        raise ValueError(f"confidence_level must be in [0.5, 1), got {confidence_level}")
    return 1.0 - float(confidence_level)


def _check_scores(scores: Any, name: str, allow_empty: bool = False) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per record), got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty: need at least one record")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} contains {bad} NaN or inf value(s); drop failed pre-labels first")
    return arr


def _check_correct(correct: Any, n: int) -> np.ndarray:
    arr = np.asarray(correct)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"correct must be 1-D with {n} entries (one per gold score), got shape {arr.shape}")
    if arr.dtype != bool:
        as_float = arr.astype(np.float64)
        if not np.isfinite(as_float).all() or not np.isin(as_float, (0.0, 1.0)).all():
            raise ValueError("correct must be boolean or 0/1 (was the pre-label equal to gold?)")
        arr = as_float.astype(bool)
    return arr


# ----------------------------------------------------------------------------------------------
# exact binomial pieces
# ----------------------------------------------------------------------------------------------
def binomial_p_value(successes: Any, n: Any, target_precision: float) -> np.ndarray:
    """One-sided exact p-value of ``H0: precision < target``: ``P(Binomial(n, target) >= successes)``.

    Elementwise over broadcastable integer arrays; ``n == 0`` gives 1.0 (nothing to test). The
    same as ``scipy.stats.binomtest(successes, n, target, alternative="greater").pvalue``.
    """
    k = np.asarray(successes, dtype=np.int64)
    nn = np.asarray(n, dtype=np.int64)
    if np.any(k < 0) or np.any(k > nn):
        raise ValueError("successes must satisfy 0 <= successes <= n")
    p = binom.sf(k - 1, nn, float(target_precision))
    return np.where(nn > 0, np.clip(p, 0.0, 1.0), 1.0)


def clopper_pearson_lower(successes: Any, n: Any, confidence_level: float = 0.95) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound (display only: it is per threshold, not simultaneous)."""
    k = np.asarray(successes, dtype=np.float64)
    nn = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lb = np.where(k > 0, beta.ppf(1.0 - confidence_level, np.maximum(k, 1e-300), np.maximum(nn - k + 1, 1)), 0.0)
    return np.where(nn > 0, np.clip(lb, 0.0, 1.0), 0.0)


def min_gold_needed(target_precision: float, confidence_level: float = 0.95, errors: int = 0) -> int:
    """Fewest gold records above a threshold, with ``errors`` of them wrong, that certify it.

    The smallest ``k`` with ``P(Binomial(k, target) >= k - errors) <= 1 - confidence_level``: with no
    error that is ``ceil(log(1 - confidence_level) / log(target))`` (59 for 0.95 at 95%, 19 for 0.85,
    29 for 0.90). Raises ValueError for a target or level outside (0, 1) or ``errors < 0``.
    """
    delta = _check_level(target_precision, confidence_level)
    if int(errors) != errors or errors < 0:
        raise ValueError(f"errors must be a non-negative integer, got {errors}")
    e = int(errors)
    if e == 0:  # closed form, with a guard against log rounding at an exact power
        k = max(1, math.ceil(math.log(delta) / math.log(target_precision)))
        while k > 1 and target_precision ** (k - 1) <= delta:
            k -= 1
        while target_precision**k > delta:
            k += 1
        return k
    lo = e + 1
    while True:  # scan in blocks; the answer is finite since the p-value falls to 0 as k grows
        ks = np.arange(lo, lo + 4096)
        ok = np.nonzero(binom.sf(ks - e - 1, ks, target_precision) <= delta)[0]
        if ok.size:
            return int(ks[ok[0]])
        lo += 4096


def default_start(
    target_precision: float, confidence_level: float, n_gold: int, grid_scores: Any | None = None
) -> float:
    """The default ``start``, in expected gold records above the first candidate threshold.

    Without ``grid_scores``: ``max(min_gold_needed(target, level), 3 * sqrt(n_gold))``, a function of
    the gold *size* only. Below ``min_gold_needed`` no test can pass; past it, a larger first test
    tolerates a few errors at the top, and ``3 * sqrt(n)`` was the best size-only rule simulated in
    ``benchmarks/guarantee.py`` (see the module docstring).

    With ``grid_scores`` (``(m,)``, the population's scores, each in [0, 1]): *confidence-guided*.
    The largest top share of the population whose mean score reaches the midpoint between the
    target and 1 (``target + (1 - target) / 2``) is where the scores themselves expect the
    precision to sit well above the target; starting there (as an expected gold count, at most
    half the gold) makes the first test large enough to tolerate the few confident errors at the
    very top that stop a small first test. It never starts below the size-only rule. It reads the
    scores only, never a gold label, so the guarantee is untouched; its power is mixed
    (``benchmarks/guarantee.py`` compares both; see :func:`certify_threshold`'s ``guided_start``),
    so it is not the default.
    """
    base = max(float(min_gold_needed(target_precision, confidence_level, 0)), START_PER_SQRT_N * math.sqrt(n_gold))
    if grid_scores is None:
        return base
    scores = np.sort(np.asarray(grid_scores, dtype=np.float64).reshape(-1))[::-1]
    if scores.size == 0 or not np.isfinite(scores).all() or scores[0] > 1.0 or scores[-1] < 0.0:
        return base  # not probabilities: the size-only rule
    running_mean = np.cumsum(scores) / np.arange(1, scores.size + 1)
    goal = target_precision + (1.0 - target_precision) / 2.0
    reached = np.flatnonzero(running_mean >= goal)
    if reached.size == 0:
        return base
    guided = n_gold * (int(reached[-1]) + 1) / scores.size
    return max(base, min(guided, n_gold / 2.0))


# ----------------------------------------------------------------------------------------------
# the grid and the sequence
# ----------------------------------------------------------------------------------------------
def threshold_grid(
    grid_scores: Any,
    n_gold: int,
    target_precision: float,
    confidence_level: float = 0.95,
    *,
    start: float | None = None,
    step: float | None = None,
    floor: float | None = None,
    guided_start: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate thresholds from strict to loose, chosen from scores only (never from labels).

    ``grid_scores`` ``(m,)`` are the scores of the population (``pool_scores``), or the gold's
    own scores. A candidate ``t`` is a distinct score value; its *expected gold count* is
    ``n_gold * share(grid_scores >= t)``. The first candidate is the strictest whose expected count
    reaches ``start`` (default :func:`default_start`, confidence-guided by ``grid_scores`` when
    ``guided_start``; at most ``n_gold``); each next one is the
    strictest whose expected count reaches ``(1 + step)`` times the previous one's (at least one
    record more); the last is the loosest score (everything accepted), unless ``floor`` is given
    (no candidate below it). Returns ``(thresholds (J,), expected_counts (J,))``, ``J >= 1``
    unless ``floor`` is above every score (then both are empty).
    """
    s = _check_scores(grid_scores, "grid scores")
    if int(n_gold) < 1:
        raise ValueError(f"n_gold must be >= 1, got {n_gold}")
    guide = s if guided_start else None
    st = float(default_start(target_precision, confidence_level, int(n_gold), guide) if start is None else start)
    sp = float(DEFAULT_STEP if step is None else step)
    if not st > 0 or not sp > 0:
        raise ValueError(f"start and step must be > 0, got start={start}, step={step}")
    values, counts = np.unique(s, return_counts=True)
    values, counts = values[::-1], counts[::-1]  # descending
    expected = n_gold * np.cumsum(counts) / s.shape[0]
    if floor is not None:
        keep = values >= float(floor)
        values, expected = values[keep], expected[keep]
        if values.size == 0:
            return values, expected
    picked: list[int] = []
    want = min(st, float(n_gold))
    while True:
        i = int(np.searchsorted(expected, want - 1e-9, side="left"))
        if i >= values.shape[0]:
            break
        picked.append(i)
        want = max(expected[i] * (1.0 + sp), expected[i] + 1.0)
    if not picked or picked[-1] != values.shape[0] - 1:
        picked.append(values.shape[0] - 1)  # the loosest score closes the sequence
    idx = np.asarray(picked, dtype=np.int64)
    return values[idx], expected[idx]


def counts_above(scores: Any, correct: Any, thresholds: Any) -> tuple[np.ndarray, np.ndarray]:
    """Gold records with ``score >= t`` at each threshold, and the right ones among them.

    ``scores`` and ``correct``: ``(n,)`` or ``(D, n)`` (D gold sets of n records, vectorised);
    ``thresholds``: ``(J,)`` descending. Returns ``(n_accepted, n_correct)``, each ``(J,)`` or ``(D, J)``.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(correct, dtype=bool)
    th = np.asarray(thresholds, dtype=np.float64)
    one = s.ndim == 1
    s2, y2 = (s[None, :], y[None, :]) if one else (s, y)
    d, j = s2.shape[0], th.shape[0]
    # first candidate at which each record is accepted = the number of thresholds above its score
    first = j - np.searchsorted(th[::-1], s2, side="right")
    flat = (np.arange(d)[:, None] * (j + 1) + first).ravel()
    n_acc = np.bincount(flat, minlength=d * (j + 1)).reshape(d, j + 1).cumsum(axis=1)[:, :j]
    n_cor = np.bincount(flat[y2.ravel()], minlength=d * (j + 1)).reshape(d, j + 1).cumsum(axis=1)[:, :j]
    n_acc, n_cor = n_acc.astype(np.int64), n_cor.astype(np.int64)
    return (n_acc[0], n_cor[0]) if one else (n_acc, n_cor)


def fixed_sequence(
    n_accepted: Any, n_correct: Any, target_precision: float, confidence_level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Run the fixed sequence on counts, vectorised over draws.

    ``n_accepted``, ``n_correct``: ``(..., J)`` integer counts at the candidates, strict to loose.
    Returns ``(last (...,), p_values (..., J))``: ``last`` is the index of the loosest candidate
    rejected before the first failure (``-1``: the first test failed, nothing is certified).
    """
    delta = _check_level(target_precision, confidence_level)
    p = binomial_p_value(n_correct, n_accepted, target_precision)
    passed = p <= delta
    run = np.cumprod(passed, axis=-1)  # 1 up to the first failure, 0 from it on
    return run.sum(axis=-1).astype(np.int64) - 1, p


# ----------------------------------------------------------------------------------------------
# the certificate
# ----------------------------------------------------------------------------------------------
def _statement(threshold: float | None, target: float, level: float, reason: str | None) -> str:
    if threshold is None:
        return (
            f"Nothing is auto-accepted: no threshold is certified at precision >= {target:g} "
            f"with {level:.0%} confidence ({reason})."
        )
    return (
        f"With probability >= {level:g} over the gold draw, the records with score >= {threshold:.6g} "
        f"have precision >= {target:g} in the population the gold was drawn from "
        f"(fixed-sequence exact binomial tests, family-wise), provided the gold is a random sample of it."
    )


@dataclass
class Certificate:
    """What :func:`certify_threshold` certified. ``threshold is None``: nothing can be auto-accepted.

    ``threshold`` is on the scale of the scores given (raw confidence); ``threshold_calibrated`` is
    its calibrated value for display, when ``to_calibrated`` was given. ``n_accepted_gold``,
    ``n_correct_gold``, ``precision_gold``, ``p_value`` and ``lower_bound`` (one-sided
    Clopper-Pearson at ``confidence_level``, per threshold, for display) describe the certified
    step; ``steps`` lists every test run, strict to loose, up to and including the first failure;
    ``n_candidates`` is the length of the planned sequence; ``coverage_pool`` the share of
    ``pool_scores`` at or above the threshold.
    """

    threshold: float | None
    achievable: bool
    target_precision: float
    confidence_level: float
    method: str
    grid_from: str
    n_gold: int
    n_accepted_gold: int
    n_correct_gold: int
    precision_gold: float | None
    p_value: float | None
    lower_bound: float | None
    coverage_gold: float
    coverage_pool: float | None
    start: float
    step: float
    n_candidates: int
    stopped_at: int | None
    steps: list[dict[str, Any]]
    statement: str
    reason: str | None = None
    threshold_calibrated: float | None = None
    reference: str = METHOD_REFERENCE
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dict (no NaN or inf: None instead)."""
        out: dict[str, Any] = _jsonable(
            {k: getattr(self, k) for k in self.__dataclass_fields__}  # noqa: SIM118 - dataclass order
        )
        return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(float(x)) else None
    return x


def certify_threshold(
    scores: Any,
    correct: Any,
    target_precision: float,
    confidence_level: float = 0.95,
    *,
    pool_scores: Any | None = None,
    start: float | None = None,
    step: float | None = None,
    floor: float | None = None,
    to_calibrated: Callable[[np.ndarray], np.ndarray] | None = None,
    guided_start: bool = False,
) -> Certificate:
    """The loosest auto-accept threshold certified by fixed-sequence exact binomial tests.

    Statement made true (see the module docstring for the conditions): with probability
    ``>= confidence_level`` over the gold draw, the precision of the population's records with
    ``score >= threshold`` is ``>= target_precision``.

    Args:
        scores: ``(n,)`` gold records' raw confidences (the ranking score; only its order is used).
        correct: ``(n,)`` bool or 0/1, pre-label == gold label.
        target_precision: in (0, 1).
        confidence_level: in [0.5, 1); the family-wise level of the whole sequence.
        pool_scores: ``(m,)`` scores of the records the threshold will be applied to (the run, gold
            included). Given, the grid is a function of the population only (exact guarantee) and
            ``coverage_pool`` is reported; else the grid comes from the gold's scores.
        start: expected gold count above the first candidate (default :func:`default_start`).
        step: relative growth of the expected gold count between candidates (default 0.1).
        floor: test no threshold below this score (e.g. when extra gold was drawn at random only
            among records scoring ``>= floor``: see :func:`plan_gold`).
        to_calibrated: e.g. ``Calibrator.transform``; gives ``threshold_calibrated`` for display.
        guided_start: start where the scores themselves expect a precision well above the target
            (:func:`default_start` with the grid's scores). Off by default: in
            ``benchmarks/guarantee.py`` it is valid everywhere but its power is mixed (real
            log-prob scores, 400 gold, target 0.90: accepting in 68% of draws against 36%;
            calibrated synthetic scores at 400 gold, 0.85: 77% against 88%; 120 gold: 48% against
            61% on the real log-probs at 0.85; over-confident coarse scores lose most).

    Returns:
        a :class:`Certificate`; ``threshold=None`` and ``achievable=False`` when the first test fails
        (``reason`` says why, e.g. too few gold records for any test to pass).

    Raises:
        ValueError: shapes that differ, empty or non-finite scores, ``correct`` not boolean, a target
            or level outside its range, ``start``/``step`` <= 0.
    """
    delta = _check_level(target_precision, confidence_level)
    s = _check_scores(scores, "scores")
    y = _check_correct(correct, s.shape[0])
    n = s.shape[0]
    pool = None if pool_scores is None else _check_scores(pool_scores, "pool_scores")
    grid_from = "gold" if pool is None else "pool"
    guide = (s if pool is None else pool) if guided_start else None
    st = float(default_start(target_precision, confidence_level, n, guide) if start is None else start)
    sp = float(DEFAULT_STEP if step is None else step)
    thresholds, expected = threshold_grid(
        s if pool is None else pool, n, target_precision, confidence_level, start=st, step=sp, floor=floor
    )
    n_acc, n_cor = counts_above(s, y, thresholds)
    last_arr, p = fixed_sequence(n_acc, n_cor, target_precision, confidence_level)
    last = int(last_arr)
    n_tested = min(last + 2, thresholds.shape[0])  # through the first failure
    steps = [
        {
            "threshold": float(thresholds[j]),
            "expected_gold": float(expected[j]),
            "n_accepted": int(n_acc[j]),
            "n_correct": int(n_cor[j]),
            "p_value": float(p[j]),
            "passed": bool(p[j] <= delta),
        }
        for j in range(n_tested)
    ]
    stopped_at = n_tested - 1 if (n_tested and not steps[-1]["passed"]) else None
    common = {
        "target_precision": float(target_precision),
        "confidence_level": float(confidence_level),
        "method": METHOD,
        "grid_from": grid_from,
        "n_gold": n,
        "start": st,
        "step": sp,
        "n_candidates": int(thresholds.shape[0]),
        "stopped_at": stopped_at,
        "steps": steps,
    }
    if last < 0:
        if thresholds.size == 0:
            reason = f"no score is >= floor {floor}"
        else:
            first = steps[0]
            need0 = min_gold_needed(target_precision, confidence_level, 0)
            if first["n_accepted"] < need0:
                reason = (
                    f"the first test had {first['n_accepted']} gold records above its threshold; even with no "
                    f"error it needs >= {need0} (label more gold: see routing.json gold_plan)"
                )
            else:
                reason = (
                    f"the first test failed: {first['n_correct']} of {first['n_accepted']} gold records right "
                    f"above {first['threshold']:.6g}, p = {first['p_value']:.3g} > {delta:g}"
                )
        return Certificate(
            threshold=None, achievable=False, n_accepted_gold=0, n_correct_gold=0, precision_gold=None,
            p_value=None, lower_bound=None, coverage_gold=0.0, coverage_pool=0.0 if pool is not None else None,
            statement=_statement(None, target_precision, confidence_level, reason), reason=reason, **common,
        )  # fmt: skip
    t = float(thresholds[last])
    k, m = int(n_cor[last]), int(n_acc[last])
    cal = None
    if to_calibrated is not None:
        cal = float(np.asarray(to_calibrated(np.asarray([t], dtype=np.float64)), dtype=np.float64).reshape(-1)[0])
    return Certificate(
        threshold=t,
        achievable=True,
        n_accepted_gold=m,
        n_correct_gold=k,
        precision_gold=k / m,
        p_value=float(p[last]),
        lower_bound=float(clopper_pearson_lower(k, m, confidence_level)),
        coverage_gold=m / n,
        coverage_pool=float(np.mean(pool >= t)) if pool is not None else None,
        statement=_statement(t, target_precision, confidence_level, None),
        threshold_calibrated=cal,
        **common,
    )


# ----------------------------------------------------------------------------------------------
# the gold planner
# ----------------------------------------------------------------------------------------------
DEFAULT_ADDITIONS: tuple[str, ...] = ("2x", "4x", "+100", "+300")


def parse_addition(spec: str, n_gold: int) -> int:
    """Records added by a gold-size spec: ``"+K"`` adds K, ``"Fx"`` makes the gold F times larger."""
    text = str(spec).strip()
    try:
        if text.startswith("+"):
            a = int(text[1:])
        elif text.lower().endswith("x"):
            a = int(round((float(text[:-1]) - 1.0) * n_gold))
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"gold addition {spec!r}: write '+K' (K more records) or 'Fx' (F times the gold)") from None
    if a < 1:
        raise ValueError(f"gold addition {spec!r} adds no record to {n_gold} gold records")
    return a


def isotonic_success(scores: Any, correct: Any, at: Any) -> np.ndarray:
    """P(correct | score) fitted on gold by isotonic regression (PAVA), evaluated at ``at`` ``(m,)``.

    Linear interpolation between the fitted gold scores, constant beyond them (as sklearn's
    ``IsotonicRegression(out_of_bounds="clip")``). In-sample on the gold: optimistic at the top.
    """
    from scipy.optimize import isotonic_regression

    s = _check_scores(scores, "scores")
    y = _check_correct(correct, s.shape[0]).astype(np.float64)
    xs, inv = np.unique(s, return_inverse=True)
    w = np.bincount(inv).astype(np.float64)
    mean_y = np.bincount(inv, weights=y) / w
    fit = isotonic_regression(mean_y, weights=w, increasing=True).x
    out: np.ndarray = np.clip(np.interp(np.asarray(at, dtype=np.float64), xs, fit), 0.0, 1.0)
    return out


@dataclass
class GoldPlan:
    """What :func:`plan_gold` found; ``to_dict()`` is strict JSON.

    ``needed``: per number of errors (0, 1, 2), the fewest gold records above a threshold (and how
    many of them right) with which the exact test can certify it. ``certificate``: today's
    certificate; ``coverage_now`` its share of the pool. ``projections``: per gold addition, the
    share of simulated gold sets that certify something (``p_certify``) and the mean pool coverage
    (``expected_coverage``, 0 when nothing is certified), with ``success_model`` saying where the
    simulated labels came from. ``next_threshold``: the candidate the sequence failed at (or its
    first one when nothing is certified; None when the loosest passed). ``suggest_indices``:
    positions in ``pool_scores`` of unlabelled records to label next (see :func:`plan_gold`).
    """

    target_precision: float
    confidence_level: float
    n_gold: int
    needed: list[dict[str, int]]
    certificate: Certificate
    coverage_now: float
    next_threshold: float | None
    next_n_gold_above: int | None
    projections: list[dict[str, Any]]
    success_model: str
    suggest_indices: list[int]
    suggest_frame: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready types (numpy scalars to Python, the certificate as its own dict)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "certificate"}  # noqa: SIM118
        d["certificate"] = self.certificate.to_dict()
        out: dict[str, Any] = _jsonable(d)
        return out


def plan_gold(
    scores: Any,
    correct: Any,
    pool_scores: Any,
    target_precision: float,
    confidence_level: float = 0.95,
    *,
    calibrated_pool: Any | None = None,
    unlabelled: Any | None = None,
    additions: tuple[str, ...] | list[str] = DEFAULT_ADDITIONS,
    n_simulations: int = 200,
    n_suggest: int = 50,
    seed: int = 0,
    start: float | None = None,
    step: float | None = None,
    guided_start: bool = False,
) -> GoldPlan:
    """How much gold the target needs, what the present gold certifies, and what to label next.

    Args:
        scores: ``(n,)`` raw confidences of the gold records (as for :func:`certify_threshold`).
        correct: ``(n,)`` bool, pre-label == gold.
        pool_scores: ``(m,)`` raw confidences of the records the threshold applies to (the run).
        target_precision, confidence_level: the statement's target and level.
        calibrated_pool: ``(m,)`` calibrated P(correct) of the pool records, used as the success
            probability when simulating more gold. Default: an isotonic fit on the gold
            (:func:`isotonic_success`). Either is fitted on the present gold, so projections are a
            plug-in estimate, optimistic where the gold is thin (typically at the top).
        unlabelled: ``(m,)`` bool, pool records that can be suggested (default: all).
        additions: gold sizes to project, ``"+K"`` (K more records) or ``"Fx"`` (F times the gold).
        n_simulations: simulated gold sets per addition.
        n_suggest: how many record positions to return in ``suggest_indices``.
        seed: seeds the simulations and the suggestion order.
        start, step: the grid parameters (as for :func:`certify_threshold`).

    How the projections are made: for each addition, ``n_simulations`` times, the added records are
    drawn uniformly without replacement from the unlabelled pool records and labelled right with
    their success probability (a row is ``feasible=False`` when there are too few to draw from);
    with the present gold (its real labels) they form a gold set of the new size, on which the
    certification is run with the same rules. ``sampling="random"`` rows keep the
    guarantee for every threshold; ``sampling="above_next"`` rows draw the added records only among
    the pool records scoring ``>= next_threshold`` and certify with ``floor=next_threshold``.

    What to label next: ``suggest_indices`` is a uniform random sample of the unlabelled pool, in a
    random order (label them in that order): added to a random gold, the gold stays a random sample
    of the run and `route`'s certificate stays valid as it is. Records at or above ``next_threshold``
    would add more to the next test per label, but only with ``floor=next_threshold`` in the
    certification (thresholds below it would see a gold enriched in high scores); the
    ``above_next`` projections show that gain, for a user who certifies with the floor.
    Re-certifying each time gold is added is a new look at the data; repeating "label more until it
    passes" inflates the error beyond the stated level unless the looks are accounted for.

    Raises:
        ValueError: as :func:`certify_threshold`; ``calibrated_pool`` or ``unlabelled`` of the wrong
            shape, ``calibrated_pool`` outside [0, 1], an addition that adds no record, ``n_simulations < 1``.
    """
    _check_level(target_precision, confidence_level)
    s = _check_scores(scores, "scores")
    y = _check_correct(correct, s.shape[0])
    pool = _check_scores(pool_scores, "pool_scores")
    n, m = s.shape[0], pool.shape[0]
    if int(n_simulations) < 1:
        raise ValueError(f"n_simulations must be >= 1, got {n_simulations}")
    if calibrated_pool is not None:
        p_pool = _check_scores(calibrated_pool, "calibrated_pool")
        if p_pool.shape != pool.shape or p_pool.min() < 0 or p_pool.max() > 1:
            raise ValueError(f"calibrated_pool must be (m,) = {pool.shape} probabilities in [0, 1]")
        model = "calibrated_pool (the calibrated confidence taken as the success probability)"
    else:
        p_pool = isotonic_success(s, y, pool) if 0 < y.sum() < n else np.full(m, float(y.mean()))
        model = "isotonic fit of correct on score over the present gold (PAVA), in-sample"
    free = np.ones(m, dtype=bool) if unlabelled is None else np.asarray(unlabelled, dtype=bool)
    if free.shape != pool.shape:
        raise ValueError(f"unlabelled must be (m,) = {pool.shape} bool, got {free.shape}")
    cert = certify_threshold(s, y, target_precision, confidence_level, pool_scores=pool, start=start, step=step,
                             guided_start=guided_start)  # fmt: skip
    needed = [
        {"errors": e, "n_gold_above": (k := min_gold_needed(target_precision, confidence_level, e)), "n_correct": k - e}
        for e in (0, 1, 2)
    ]
    if cert.stopped_at is not None:
        nxt = cert.steps[cert.stopped_at]
        next_t, next_n = float(nxt["threshold"]), int(nxt["n_accepted"])
    else:
        next_t, next_n = None, None
    rng = np.random.default_rng(seed)
    projections = []
    for label in additions:
        a = parse_addition(label, n)
        for sampling in ("random", "above_next"):
            if sampling == "above_next" and next_t is None:
                continue
            frame = np.flatnonzero(free if sampling == "random" else free & (pool >= next_t))
            row: dict[str, Any] = {"label": str(label), "sampling": sampling, "n_added": a, "n_gold": n + a}
            if a > frame.shape[0]:
                row.update(feasible=False, p_certify=None, expected_coverage=None, median_coverage=None,
                           coverage_when_certified=None,
                           reason=f"only {frame.shape[0]} unlabelled records to draw from")  # fmt: skip
                projections.append(row)
                continue
            floor = None if sampling == "random" else next_t
            th, _ = threshold_grid(pool, n + a, target_precision, confidence_level, start=start, step=step,
                                   floor=floor, guided_start=guided_start)  # fmt: skip
            cov_th = (pool.shape[0] - np.searchsorted(np.sort(pool), th, side="left")) / pool.shape[0]
            base_acc, base_cor = counts_above(s, y, th)
            # each simulation labels `a` distinct records of the frame (without replacement)
            idx = np.stack([rng.choice(frame, size=a, replace=False) for _ in range(int(n_simulations))])
            extra_y = rng.random(idx.shape) < p_pool[idx]
            add_acc, add_cor = counts_above(pool[idx], extra_y, th)
            last, _ = fixed_sequence(base_acc + add_acc, base_cor + add_cor, target_precision, confidence_level)
            ok = last >= 0
            cov = np.where(ok, cov_th[np.maximum(last, 0)], 0.0)
            row.update(
                feasible=True,
                p_certify=float(ok.mean()),
                expected_coverage=float(cov.mean()),
                median_coverage=float(np.median(cov)),
                coverage_when_certified=float(cov[ok].mean()) if ok.any() else None,
            )
            projections.append(row)
    if next_t is None or not np.isfinite(next_t):
        suggest, frame_text = [], "nothing: the loosest candidate is certified already"
    else:
        # uniform over every unlabelled record: added to the gold, they keep it a random sample of the
        # run, so `route` as it is (no floor) stays valid. Records drawn above the next threshold only
        # would need floor= (see "above_next" projections); a user following that advice without the
        # floor broke the guarantee (10% violations where 5% is stated).
        cand = np.flatnonzero(free)
        suggest = rng.permutation(cand)[: int(n_suggest)].tolist()
        frame_text = (
            f"a uniform random sample of the {cand.shape[0]} unlabelled records (gold drawn at random from "
            "the whole run keeps the certificate valid as route makes it)"
        )
    projections.sort(key=lambda row: (row["sampling"] != "random", row["n_gold"]))  # random first, by gold size
    notes = []
    if not cert.achievable:
        notes.append(cert.reason or "nothing certified")
    return GoldPlan(
        target_precision=float(target_precision),
        confidence_level=float(confidence_level),
        n_gold=n,
        needed=needed,
        certificate=cert,
        coverage_now=float(cert.coverage_pool or 0.0),
        next_threshold=next_t,
        next_n_gold_above=next_n,
        projections=projections,
        success_model=model,
        suggest_indices=[int(i) for i in suggest],
        suggest_frame=frame_text,
        notes=notes,
    )
