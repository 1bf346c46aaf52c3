"""The published dataset's accuracy and class shares, with intervals, from a random blind audit.

Pure module (numpy and scipy only): no client, no file I/O.

The setting
-----------
A run publishes ``N`` records. Each has a final label and a ``label_source`` (``human``,
``consensus``, ``llm_auto``). A *blind audit* labels a random sample of them with no suggestion
shown; the audit label is taken as the truth. This module estimates, from the audited records,

* the **accuracy** of the published labels -- the share of the ``N`` published records whose final
  label equals the label the auditor would give -- overall, per ``label_source`` and per stratum
  (:func:`published_accuracy`, built on :func:`audited_proportion`);
* the **class shares** -- the share of each (true) label among the ``N`` records -- by
  prediction-powered inference with the published (or LLM) labels as the predictions
  (:func:`class_shares_ppi`).

What every estimator here assumes (the validity of each interval rests on it)
------------------------------------------------------------------------------
1. **The audit is a probability sample with a known design.** Records are grouped into *design
   cells*: the stratum (``strata``, e.g. the route; by default the ``label_source``) crossed with
   the inclusion probability (``inclusion_prob``; when it is not given it is taken as constant
   within a stratum). Inside a cell, every record had the same chance of being audited,
   independently of its label and of whether it is right (Bernoulli sampling at a common rate, or a
   simple random sample of fixed size). Conditionally on how many records of a cell were audited,
   the audited ones are then a simple random sample without replacement of the cell, which is what
   the intervals use (post-stratification; the inclusion probabilities only define the cells, the
   realised counts give the weights). *Gold labels a user brought from a file are not such a sample
   unless they were drawn at random from the published records*: leave them out of ``audit_mask``
   (or give them their own stratum with their true inclusion probability), or the estimate carries
   the selection bias of that file.
2. **The audit label is the truth.** Every figure is agreement with a blind auditor. Auditor error
   is not modelled: if auditors err at rate ``e``, the estimand is agreement with the auditor, not
   with the truth, and intervals can miss the true accuracy by up to ``e``.
3. **The estimand is the finite population** of the ``N`` published records (the published
   dataset, not the corpus it was drawn from), hence the finite-population correction
   (``fpc=True``): a stratum audited in full is known exactly. ``class_shares_ppi`` also offers the
   superpopulation estimand of the PPI paper (``population="superpopulation"``).

Strata with few or no audits
----------------------------
A cell with audits gets an interval however few they are (one audit gives a wide interval). A
group (overall, a source, a stratum) containing records of a cell with *no* audit has no point
estimate (``estimate`` is ``None``); its interval is then a worst-case (partial identification)
bound in which the unaudited records count as all wrong for ``low`` and all right for ``high``, and
``reason`` says how many records are unaudited. A group with no audited record at all gets
``None`` for ``estimate``, ``low`` and ``high``, with the reason.

References
----------
* A. N. Angelopoulos, S. Bates, C. Fannjiang, M. I. Jordan, T. Zrnic, "Prediction-powered
  inference", Science 382 (6671), 669-674, 2023 (PPI: the mean estimator and its CLT interval).
* A. Fisch, J. Maynez, R. A. Hofer, B. Dhingra, A. Globerson, W. W. Cohen, "Stratified
  prediction-powered inference for hybrid language model evaluation", NeurIPS 2024 (StratPPI: PPI
  per stratum, weighted by the strata's sizes).
* C.-E. Särndal, B. Swensson, J. Wretman, "Model Assisted Survey Sampling", Springer 1992 (the
  difference estimator, which PPI with ``lambda = 1`` is on a finite population; the FPC).
* A. Agresti, Y. Min, "Simple improved confidence intervals for comparing matched proportions",
  Statistics in Medicine 24, 729-740, 2005 (add 1/2 to each cell of the paired 2x2 table).
* G. Y. Zou, A. Donner, "Construction of confidence limits about effect measures: a general
  approach", Statistics in Medicine 27, 1693-1702, 2008; G. Y. Zou, W. Huang, X. Zhang, "A note on
  confidence interval estimation for a linear function of binomial proportions", Computational
  Statistics & Data Analysis 53, 1080-1085, 2009 (MOVER).
* E. B. Wilson, JASA 22, 1927; C. J. Clopper, E. S. Pearson, Biometrika 26, 1934; L. D. Brown,
  T. T. Cai, A. DasGupta, "Interval estimation for a binomial proportion", Statistical Science 16,
  2001 (Wilson, Clopper-Pearson, Jeffreys); E. L. Korn, B. I. Graubard, Survey Methodology 24, 1998
  (binomial intervals on an effective sample size, used here for the FPC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import numpy as np
from scipy.stats import beta, hypergeom, norm

__all__ = [
    "ACCURACY_METHODS",
    "audited_proportion",
    "binomial_interval",
    "class_shares_ppi",
    "difference_interval",
    "mover_combine",
    "published_accuracy",
]

BaseInterval = Literal["wilson", "jeffreys", "clopper-pearson", "hypergeometric"]
AccuracyMethod = Literal["mover-jeffreys", "mover-wilson", "mover-clopper-pearson", "bonferroni-exact"]
ACCURACY_METHODS: tuple[str, ...] = ("mover-jeffreys", "mover-wilson", "mover-clopper-pearson", "bonferroni-exact")
LABEL_SOURCES: tuple[str, ...] = ("human", "consensus", "llm_auto")


# --------------------------------------------------------------------------------------------
# One binomial proportion


def _check_level(confidence_level: float) -> float:
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level}")
    return 1.0 - float(confidence_level)


def _effective_n(n: float, population: float | None, fpc: bool) -> float:
    """Sample size whose binomial variance equals the SRSWOR variance: ``n (N-1) / (N-n)``."""
    if not fpc or population is None:
        return float(n)
    if n >= population:
        return float("inf")
    return float(n) * (population - 1.0) / (population - n)


def _hypergeometric_interval(successes: int, n: int, population: int, alpha: float) -> tuple[float, float]:
    """Exact interval for ``M / N``, M = successes in a population of N, from ``x`` of ``n`` drawn
    without replacement: every M that neither one-sided test at ``alpha / 2`` rejects.

    ``P(X >= x | M)`` rises and ``P(X <= x | M)`` falls with M, so each end is found by bisection
    over the feasible M in ``[x, N - (n - x)]``."""
    x, lo_m, hi_m = successes, successes, population - (n - successes)

    def ge(m: int) -> bool:  # the lower-tail test does not reject M
        return bool(hypergeom.sf(x - 1, population, m, n) > alpha / 2)

    def le(m: int) -> bool:  # the upper-tail test does not reject M
        return bool(hypergeom.cdf(x, population, m, n) > alpha / 2)

    # lowest M with ge(M): ge is False then True along M (True at hi_m: P(X >= x) there is 1 when x <= n)
    a, b = lo_m, hi_m
    if ge(a):
        low = a
    else:
        while b - a > 1:
            mid = (a + b) // 2
            a, b = (a, mid) if ge(mid) else (mid, b)
        low = b
    # highest M with le(M): le is True then False along M
    a, b = lo_m, hi_m
    if le(b):
        high = b
    else:
        while b - a > 1:
            mid = (a + b) // 2
            a, b = (mid, b) if le(mid) else (a, mid)
        high = a
    return float(low) / population, float(high) / population


def binomial_interval(
    successes: int,
    n: int,
    *,
    population: int | None = None,
    confidence_level: float = 0.95,
    method: BaseInterval = "wilson",
    fpc: bool = True,
) -> tuple[float, float]:
    """Two-sided interval for the share of "successes" in a population, from a random sample.

    Statement: over repeated samples, the interval contains the share with probability about
    ``confidence_level`` (Wilson, Jeffreys: approximate; Clopper-Pearson: at least
    ``confidence_level`` for a binomial sample; hypergeometric: at least ``confidence_level``,
    exactly for a simple random sample without replacement from ``population`` records).

    Args:
        successes: number of sampled units with the property, ``0 <= successes <= n``.
        n: sample size, ``>= 1``.
        population: size ``N >= n`` of the population sampled from; None for an infinite one.
        confidence_level: two-sided level in (0, 1).
        method: ``"wilson"`` (score interval), ``"jeffreys"`` (Beta(x+1/2, n-x+1/2) quantiles,
            0/1 at the boundaries), ``"clopper-pearson"`` (exact binomial) or ``"hypergeometric"``
            (exact finite population; needs ``population``).
        fpc: with ``population`` given, apply the finite-population correction: Wilson, Jeffreys
            and Clopper-Pearson use the effective sample size ``n (N-1)/(N-n)`` (Korn & Graubard);
            a fully sampled population (``n == N``) gives the point ``successes / n``.

    Returns:
        ``(low, high)`` in [0, 1].

    Raises:
        ValueError: ``n < 1``, ``successes`` outside ``[0, n]``, ``population < n``, an unknown
            method, or ``"hypergeometric"`` without ``population``.
    """
    alpha = _check_level(confidence_level)
    x, nn = int(successes), int(n)
    if nn < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= x <= nn:
        raise ValueError(f"successes must be in [0, n], got {successes} of {n}")
    if population is not None and population < nn:
        raise ValueError(f"population ({population}) is smaller than the sample ({n})")
    if method == "hypergeometric":
        if population is None:
            raise ValueError("the hypergeometric interval needs the population size")
        return _hypergeometric_interval(x, nn, int(population), alpha)
    if method not in ("wilson", "jeffreys", "clopper-pearson"):
        raise ValueError(f"unknown interval method {method!r}")
    p = x / nn
    n_eff = _effective_n(nn, population, fpc)
    if not np.isfinite(n_eff):
        return p, p
    if method == "wilson":
        z = norm.ppf(1.0 - alpha / 2)
        denom = 1.0 + z * z / n_eff
        center = (p + z * z / (2 * n_eff)) / denom
        half = z * np.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff)) / denom
        low, high = center - half, center + half
    else:
        xe = p * n_eff
        a_lo, b_lo = (xe + 0.5, n_eff - xe + 0.5) if method == "jeffreys" else (xe, n_eff - xe + 1)
        a_hi, b_hi = (xe + 0.5, n_eff - xe + 0.5) if method == "jeffreys" else (xe + 1, n_eff - xe)
        low = float(beta.ppf(alpha / 2, a_lo, b_lo)) if x > 0 else 0.0
        high = float(beta.ppf(1 - alpha / 2, a_hi, b_hi)) if x < nn else 1.0
    return float(min(max(low, 0.0), p)), float(max(min(high, 1.0), p))


def difference_interval(
    successes_a: int, n_a: int, successes_b: int, n_b: int, confidence_level: float = 0.95
) -> tuple[float, float, float]:
    """Interval for the difference of two independent proportions ``p_a - p_b``.

    Newcombe's hybrid score interval (Newcombe, Stat. Med. 1998, method 10): the MOVER combination
    of each proportion's Wilson interval, ``L = d - sqrt((p_a - l_a)^2 + (u_b - p_b)^2)``,
    ``U = d + sqrt((u_a - p_a)^2 + (p_b - l_b)^2)``; statsmodels calls it ``"newcomb"``
    (``confint_proportions_2indep``). Approximate, near nominal coverage down to small samples.

    Returns ``(difference, low, high)``, each in [-1, 1]. Raises ValueError as
    :func:`binomial_interval` (``n < 1``, successes outside ``[0, n]``, a level outside (0, 1)).
    """
    la, ua = binomial_interval(successes_a, n_a, confidence_level=confidence_level, method="wilson")
    lb, ub = binomial_interval(successes_b, n_b, confidence_level=confidence_level, method="wilson")
    pa, pb = successes_a / n_a, successes_b / n_b
    d = pa - pb
    low = d - float(np.sqrt((pa - la) ** 2 + (ub - pb) ** 2))
    high = d + float(np.sqrt((ua - pa) ** 2 + (pb - lb) ** 2))
    return float(d), max(low, -1.0), min(high, 1.0)


def mover_combine(
    weights: Sequence[float] | np.ndarray,
    estimates: Sequence[float] | np.ndarray,
    lows: Sequence[float] | np.ndarray,
    highs: Sequence[float] | np.ndarray,
) -> tuple[float, float, float]:
    """MOVER interval for ``sum_h w_h p_h`` (``w_h >= 0``) from per-stratum intervals.

    ``L = sum w p - sqrt(sum w^2 (p - l)^2)``, ``U = sum w p + sqrt(sum w^2 (u - p)^2)`` (Zou &
    Donner 2008; Zou, Huang & Zhang 2009). It recovers each stratum's variance separately for
    each side from its own interval, so a stratum whose sample is all right (``p = u = 1``) still
    widens the lower side; with one stratum it returns that stratum's interval. Approximate: its
    coverage is that of the per-stratum intervals combined as if normal.

    Returns ``(estimate, low, high)``. Raises ValueError on shape mismatch or a negative weight.
    """
    w, p, lo, hi = (np.asarray(v, dtype=np.float64) for v in (weights, estimates, lows, highs))
    if not (w.shape == p.shape == lo.shape == hi.shape) or w.ndim != 1:
        raise ValueError("weights, estimates, lows and highs must be 1-D arrays of one length")
    if np.any(w < 0):
        raise ValueError("weights must be >= 0")
    est = float(np.sum(w * p))
    low = est - float(np.sqrt(np.sum((w * (p - lo)) ** 2)))
    high = est + float(np.sqrt(np.sum((w * (hi - p)) ** 2)))
    return est, low, high


# --------------------------------------------------------------------------------------------
# Input checks and design cells


def _vector(values: Any, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n}")
    return arr


def _audit_mask(audit_mask: Any, n: int) -> np.ndarray:
    mask = _vector(audit_mask, "audit_mask", n)
    if mask.dtype != bool:
        if not all(v in (0, 1, True, False) for v in mask.tolist()):
            raise ValueError("audit_mask must be boolean")
        mask = mask.astype(bool)
    return mask


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _audit_labels(audit_labels: Any, mask: np.ndarray) -> np.ndarray:
    labels = _vector(audit_labels, "audit_labels", mask.shape[0]).astype(object)
    missing = [i for i in np.flatnonzero(mask) if _is_missing(labels[i])]
    if missing:
        raise ValueError(f"audit_labels is missing for {len(missing)} audited record(s), e.g. index {missing[0]}")
    return labels


def _inclusion(inclusion_prob: Any, strata: np.ndarray) -> np.ndarray:
    """Per-record inclusion probability (float), or zeros when not given (one cell per stratum)."""
    n = strata.shape[0]
    if inclusion_prob is None:
        return np.zeros(n)
    if isinstance(inclusion_prob, Mapping):
        unknown = sorted({str(s) for s in strata.tolist()} - {str(k) for k in inclusion_prob})
        if unknown:
            raise ValueError(f"inclusion_prob has no probability for stratum {unknown}")
        by_str = {str(k): v for k, v in inclusion_prob.items()}
        probs = np.array([by_str[str(s)] for s in strata.tolist()], dtype=np.float64)
    elif np.ndim(inclusion_prob) == 0:
        probs = np.full(n, float(inclusion_prob))
    else:
        probs = np.asarray(inclusion_prob, dtype=np.float64)
        if probs.shape != (n,):
            raise ValueError(f"inclusion_prob has shape {probs.shape}, expected ({n},)")
    if not np.all((probs > 0) & (probs <= 1)):
        raise ValueError("inclusion probabilities must be in (0, 1]")
    return probs


def _as_str(values: np.ndarray) -> np.ndarray:
    """Values as a numpy unicode array (sorts and compares in C; ``str(v)`` of each value); numbers
    and bools stay as they are."""
    if values.dtype.kind in "Ubiuf":
        return values
    return np.asarray([str(v) for v in values.tolist()]) if values.dtype == object else values.astype(str)


def _codes(*keys: np.ndarray) -> tuple[np.ndarray, list[tuple[Any, ...]]]:
    """Integer cell code per record for the combination of ``keys``, and each cell's key tuple."""
    n = keys[0].shape[0]
    code = np.zeros(n, dtype=np.int64)
    uniques = []
    for key in keys:
        u, inv = np.unique(_as_str(key), return_inverse=True)
        code = code * len(u) + inv
        uniques.append(u)
    cells, code = np.unique(code, return_inverse=True)
    tuples = []
    for c in cells.tolist():
        parts = []
        for u in reversed(uniques):
            parts.append(u[c % len(u)])
            c //= len(u)
        tuples.append(tuple(reversed(parts)))
    return code, tuples


# --------------------------------------------------------------------------------------------
# Stratified proportion (accuracy)


def _group_interval(
    n_pop: np.ndarray,
    n_aud: np.ndarray,
    x: np.ndarray,
    *,
    alpha: float,
    method: str,
    fpc: bool,
) -> dict[str, Any]:
    """Estimate and interval for ``sum_h (N_h / sum N) p_h`` over the cells given (arrays per cell)."""
    n_audited = int(n_aud.sum())
    out: dict[str, Any] = {
        "estimate": None,
        "low": None,
        "high": None,
        "n_audited": n_audited,
        "n_population": int(n_pop.sum()),
        "n_correct": int(x.sum()),
        "method": method,
        "reason": None,
    }
    if n_audited == 0:
        out["reason"] = "no audited record: nothing to estimate from"
        return out
    audited = n_aud > 0
    total = float(n_pop.sum())
    w = n_pop[audited] / total
    p = x[audited] / n_aud[audited]
    if method == "bonferroni-exact":
        h = int(audited.sum())
        kind: BaseInterval = "hypergeometric" if fpc else "clopper-pearson"
        ci = [
            binomial_interval(int(xi), int(ni), population=int(ni_pop), confidence_level=1 - alpha / h, method=kind)
            for xi, ni, ni_pop in zip(x[audited], n_aud[audited], n_pop[audited], strict=True)
        ]
        lo, hi = np.array([c[0] for c in ci]), np.array([c[1] for c in ci])
        est, low, high = float(np.sum(w * p)), float(np.sum(w * lo)), float(np.sum(w * hi))
    else:
        base = cast(BaseInterval, method.removeprefix("mover-"))
        ci = [
            binomial_interval(
                int(xi), int(ni), population=int(ni_pop), confidence_level=1 - alpha, method=base, fpc=fpc
            )
            for xi, ni, ni_pop in zip(x[audited], n_aud[audited], n_pop[audited], strict=True)
        ]
        est, low, high = mover_combine(w, p, [c[0] for c in ci], [c[1] for c in ci])
    unaudited = float(n_pop[~audited].sum())
    high += unaudited / total  # unaudited records: all wrong for low (adds 0), all right for high
    out["low"], out["high"] = float(np.clip(low, 0.0, 1.0)), float(np.clip(high, 0.0, 1.0))
    if unaudited > 0:
        out["reason"] = (
            f"{int(unaudited)} record(s) lie in strata with no audit: no point estimate; the interval is a "
            "worst-case bound that counts them as all wrong (low) and all right (high)"
        )
    else:
        out["estimate"] = float(est)
    return out


def audited_proportion(
    indicator: Any,
    audit_mask: Any,
    *,
    strata: Any = None,
    inclusion_prob: Any = None,
    confidence_level: float = 0.95,
    method: AccuracyMethod = "mover-jeffreys",
    fpc: bool = True,
) -> dict[str, Any]:
    """Share of the population with a 0/1 property observed on audited records only, stratified.

    The estimand is ``(1/N) sum_i indicator_i`` over all ``N`` records; ``indicator`` is read only
    where ``audit_mask`` is True. Per design cell (stratum x inclusion probability) the share is
    the audited mean; the population share is the cell-size-weighted sum (post-stratified estimator;
    unbiased under the module's assumption 1).

    Interval statement (``method``):
        * ``"mover-jeffreys"`` (default), ``"mover-wilson"``, ``"mover-clopper-pearson"``: an
          approximate ``confidence_level`` interval: over repeated audit draws it contains the
          population share in about that share of draws. Each cell gets a Jeffreys / Wilson /
          Clopper-Pearson interval (with the FPC, see :func:`binomial_interval`), combined across
          cells by MOVER (:func:`mover_combine`). With one cell it is that cell's interval.
          Jeffreys is the default because, in ``benchmarks/published_accuracy.py`` (2,000 runs per
          scenario), its lowest coverage over every figure and scenario was 0.945, where Wilson's
          fell to 0.925 (a source with ~5 audits and accuracy near 1: Wilson's known weak spot,
          Brown, Cai & DasGupta 2001), with intervals no wider; Clopper-Pearson is conservative
          (0.958 or more, up to a third wider on small audits).
        * ``"bonferroni-exact"``: a conservative interval that holds with probability at least
          ``confidence_level``: each of the ``H`` audited cells gets an exact interval
          (hypergeometric with ``fpc``, else Clopper-Pearson) at level ``1 - alpha/H``; all hold at
          once with probability ``>= 1 - alpha``, and then the weighted sum lies between the
          weighted sums of the ends.

    Args:
        indicator: ``(N,)`` 0/1 or bool; values at unaudited positions are ignored (may be None).
        audit_mask: ``(N,)`` bool, True for audited records.
        strata: ``(N,)`` stratum of each record (any hashable); None = one stratum.
        inclusion_prob: None, a scalar, a ``(N,)`` array or a mapping stratum -> probability; records
            of one stratum with different probabilities form different cells.
        confidence_level: two-sided level in (0, 1).
        method: one of :data:`ACCURACY_METHODS`.
        fpc: finite-population correction (the estimand is the N records).

    Returns:
        ``{"estimate", "low", "high", "n_audited", "n_population", "n_correct", "method", "reason",
        "cells": [{"stratum", "inclusion_prob", "n_population", "n_audited", "n_correct"}]}``;
        see the module docstring for cells without audits.

    Raises:
        ValueError: mismatched lengths, a non-0/1 indicator on an audited record, an invalid
            probability, level or method.
    """
    alpha = _check_level(confidence_level)
    if method not in ACCURACY_METHODS:
        raise ValueError(f"method must be one of {ACCURACY_METHODS}, got {method!r}")
    mask = _audit_mask(audit_mask, len(audit_mask))
    n = mask.shape[0]
    ind = _vector(indicator, "indicator", n)
    values = ind[mask]
    if not all(v in (0, 1, True, False) for v in values.tolist()):
        raise ValueError("indicator must be 0/1 (or bool) on audited records")
    strata_arr = np.zeros(n, dtype=object) if strata is None else _vector(strata, "strata", n)
    probs = _inclusion(inclusion_prob, strata_arr)
    code, keys = _codes(strata_arr, probs)
    hits = np.zeros(n, dtype=np.float64)
    hits[mask] = values.astype(np.float64)
    k = len(keys)
    n_pop = np.bincount(code, minlength=k).astype(np.float64)
    n_aud = np.bincount(code, weights=mask.astype(np.float64), minlength=k)
    x = np.bincount(code, weights=hits, minlength=k)
    out = _group_interval(n_pop, n_aud, x, alpha=alpha, method=method, fpc=fpc)
    out["cells"] = [
        {
            "stratum": None if strata is None else str(key[0]),
            "inclusion_prob": None if inclusion_prob is None else float(key[1]),
            "n_population": int(n_pop[i]),
            "n_audited": int(n_aud[i]),
            "n_correct": int(x[i]),
        }
        for i, key in enumerate(keys)
    ]
    return out


def published_accuracy(
    final_labels: Any,
    label_source: Any,
    audit_mask: Any,
    audit_labels: Any,
    *,
    strata: Any = None,
    inclusion_prob: Any = None,
    confidence_level: float = 0.95,
    method: AccuracyMethod = "mover-jeffreys",
    fpc: bool = True,
) -> dict[str, Any]:
    """Accuracy of the published labels (agreement with blind audit labels), with intervals.

    Accuracy is ``(1/N_G) sum_{i in G} 1[final_i == truth_i]`` over a group ``G`` of published
    records (all of them, one ``label_source``, one stratum), the truth being the audit label
    (module assumption 2). Estimated with :func:`audited_proportion`: ``overall`` and ``by_stratum``
    on the design cells (stratum x inclusion probability); ``by_source`` on the design cells
    restricted to that source (a post-stratification, valid under the same sampling assumption).
    Each interval is marginal (one statement per figure, not simultaneous across figures); the
    statement it makes is that of ``method`` in :func:`audited_proportion`.

    Args:
        final_labels: ``(N,)`` published label of every record.
        label_source: ``(N,)`` ``human`` | ``consensus`` | ``llm_auto`` (other values are accepted
            and reported as their own source).
        audit_mask: ``(N,)`` bool, True where a blind audit label exists (a probability sample:
            module assumption 1).
        audit_labels: ``(N,)`` audit label where ``audit_mask`` (None/NaN elsewhere).
        strata: ``(N,)`` design stratum (e.g. the route: ``auto_accept``, ``human_review``,
            ``spot_check``) within which the audit rate was constant; None = ``label_source``.
        inclusion_prob: None, scalar, ``(N,)`` array or mapping stratum -> probability.
        confidence_level, method, fpc: as in :func:`audited_proportion`.

    Returns:
        ``{"overall": entry, "by_source": {source: entry}, "by_stratum": {stratum: entry},
        "confidence_level", "method", "fpc", "estimand", "assumptions"}``; an entry is
        ``{"estimate", "low", "high", "n_audited", "n_population", "n_correct", "method",
        "reason"}``. ``by_source`` always lists human, consensus and llm_auto (an absent source has
        ``n_population`` 0 and ``None`` figures). Floats are plain Python floats, no NaN.

    Raises:
        ValueError: as :func:`audited_proportion`, or a missing audit label on an audited record.
    """
    alpha = _check_level(confidence_level)
    if method not in ACCURACY_METHODS:
        raise ValueError(f"method must be one of {ACCURACY_METHODS}, got {method!r}")
    final = _vector(final_labels, "final_labels")
    n = final.shape[0]
    if n == 0:
        raise ValueError("final_labels is empty")
    source = _vector(label_source, "label_source", n)
    mask = _audit_mask(audit_mask, n)
    truth = _audit_labels(audit_labels, mask)
    design = source if strata is None else _vector(strata, "strata", n)
    probs = _inclusion(inclusion_prob, design)
    correct = np.zeros(n, dtype=np.float64)
    correct[mask] = [str(a) == str(b) for a, b in zip(final[mask].tolist(), truth[mask].tolist(), strict=True)]
    src_str = _as_str(source).astype(str)
    design_str = _as_str(design)
    code, keys = _codes(design_str, probs, src_str)
    k = len(keys)
    n_pop = np.bincount(code, minlength=k).astype(np.float64)
    n_aud = np.bincount(code, weights=mask.astype(np.float64), minlength=k)
    x = np.bincount(code, weights=correct, minlength=k)
    cell_design = np.array([f"{key[0]}\x00{key[1]}" for key in keys], dtype=object)
    cell_stratum = np.array([key[0] for key in keys], dtype=object)
    cell_source = np.array([key[2] for key in keys], dtype=object)

    def merged(select: np.ndarray, by_design: bool) -> dict[str, Any]:
        """Entry over the cells in ``select``; ``by_design`` merges sources within a design cell."""
        if not select.any():
            return _group_interval(np.zeros(1), np.zeros(1), np.zeros(1), alpha=alpha, method=method, fpc=fpc) | {
                "reason": "no published record"
            }
        if not by_design:
            return _group_interval(n_pop[select], n_aud[select], x[select], alpha=alpha, method=method, fpc=fpc)
        groups, inv = np.unique(cell_design[select], return_inverse=True)
        g = len(groups)
        return _group_interval(
            np.bincount(inv, weights=n_pop[select], minlength=g),
            np.bincount(inv, weights=n_aud[select], minlength=g),
            np.bincount(inv, weights=x[select], minlength=g),
            alpha=alpha,
            method=method,
            fpc=fpc,
        )

    sources = list(LABEL_SOURCES) + sorted(set(src_str.tolist()) - set(LABEL_SOURCES))
    return {
        "overall": merged(np.ones(k, dtype=bool), by_design=True),
        "by_source": {s: merged(cell_source == s, by_design=False) for s in sources},
        "by_stratum": {str(s): merged(cell_stratum == s, by_design=True) for s in sorted(set(cell_stratum.tolist()))},
        "confidence_level": float(confidence_level),
        "method": method,
        "fpc": bool(fpc),
        "estimand": "share of the published records whose final label equals the blind audit label",
        "assumptions": (
            "audited records are a random sample with a common inclusion probability within each "
            f"{'label_source' if strata is None else 'stratum'} (x inclusion probability) cell; "
            "audit labels are the truth"
        ),
    }


# --------------------------------------------------------------------------------------------
# Class shares by prediction-powered inference


def class_shares_ppi(
    predicted: Any,
    audit_mask: Any,
    audit_labels: Any,
    labels: Sequence[Any],
    *,
    strata: Any = None,
    inclusion_prob: Any = None,
    confidence_level: float = 0.95,
    fpc: bool = True,
    population: Literal["finite", "superpopulation"] = "finite",
    small_sample_adjustment: bool = True,
    simultaneous: bool = False,
) -> dict[str, Any]:
    """Share of each label among the records, by stratified prediction-powered inference (PPI).

    For label ``k`` and design cell ``h`` (stratum x inclusion probability, ``N_h`` records,
    ``n_h`` audited), with ``F_hk`` the share of the cell's records *predicted* ``k`` (known for all
    records) and ``D_i = 1[truth_i = k] - 1[predicted_i = k]`` on audited records, the PPI estimate
    (Angelopoulos et al. 2023, with ``lambda = 1``; stratified as StratPPI, Fisch et al. 2024) is

        ``p_hk = F_hk + mean_{audited in h} D_i``,  ``p_k = sum_h (N_h / N) p_hk``.

    On a finite population this is the difference estimator: unbiased under module assumption 1.
    Variance per cell: ``(1 - n_h/N_h) S^2_D / n_h`` (``population="finite"``: the predictions of
    every record are known, so the imputed term has no sampling error) or ``S^2_D / n_h +
    S^2_F / N_h`` (``"superpopulation"``: the estimand is the class share of the distribution the
    records were drawn from, the setting and interval of the PPI paper). With
    ``small_sample_adjustment`` (default) ``S^2_D`` is taken from the audit's paired 2x2 table
    (truth = k?, predicted = k?) with 1/2 added to each cell (Agresti & Min 2005), divided by
    ``n_h + 2``; without it, the sample variance (ddof 1), which is 0 when the audit shows no
    disagreement and then gives a zero-width interval: the adjustment is what keeps a stratum with
    8 all-agreeing audits honest.

    Interval statement: for each label separately, an approximate (CLT) ``confidence_level``
    interval for its share among the ``N`` records (``"finite"``) -- ``p_k +- z sqrt(sum_h (N_h/N)^2
    var_hk)``, clipped to [0, 1]. With ``simultaneous=True`` each uses ``alpha / K`` (Bonferroni),
    so all ``K`` hold together with probability about ``confidence_level``. A cell with no audit
    (or, without the adjustment, fewer than 2) cannot be rectified: its records enter the interval
    as a worst-case bound ([0, 1] of the label for each), and the estimate is None with a reason.

    Args:
        predicted: ``(N,)`` prediction per record (the published final label, or the LLM's).
        audit_mask: ``(N,)`` bool, True where ``audit_labels`` holds the truth.
        audit_labels: ``(N,)`` audit label on audited records (None elsewhere).
        labels: the ``K`` labels of the task; every prediction and audit label must be one of them.
        strata: ``(N,)`` design stratum (route / label_source); None = one stratum.
        inclusion_prob: None, scalar, ``(N,)`` array or mapping stratum -> probability.
        confidence_level: two-sided level in (0, 1).
        fpc: finite-population correction (``population="finite"`` only).
        population: ``"finite"`` (default) or ``"superpopulation"``.
        small_sample_adjustment: Agresti-Min variance (default) or the plain sample variance.
        simultaneous: Bonferroni over the ``K`` labels.

    Returns:
        ``{"labels": [...], "shares": {label: {"estimate", "low", "high", "predicted_share",
        "audited_share"}}, "n_audited", "n_population", "n_unaudited_population",
        "confidence_level", "method", "population", "reason"}``; ``audited_share`` is the plain
        (unweighted) share among audited records, shown for comparison only.

    Raises:
        ValueError: empty or duplicate ``labels``, a prediction or audit label not in ``labels``,
            mismatched lengths, an invalid probability or level, an unknown ``population``.
    """
    alpha = _check_level(confidence_level)
    if population not in ("finite", "superpopulation"):
        raise ValueError(f"population must be 'finite' or 'superpopulation', got {population!r}")
    label_list = [str(v) for v in labels]
    if not label_list or len(set(label_list)) != len(label_list):
        raise ValueError("labels must be a non-empty list without duplicates")
    index = {lab: i for i, lab in enumerate(label_list)}
    pred = _vector(predicted, "predicted")
    n = pred.shape[0]
    if n == 0:
        raise ValueError("predicted is empty")
    mask = _audit_mask(audit_mask, n)
    truth = _audit_labels(audit_labels, mask)
    pred_str = [str(v) for v in pred.tolist()]
    bad = sorted(set(pred_str) - set(index))
    if bad:
        raise ValueError(f"predicted holds labels not in labels: {bad}")
    truth_str = [str(v) for v in truth[mask].tolist()]
    bad = sorted(set(truth_str) - set(index))
    if bad:
        raise ValueError(f"audit_labels holds labels not in labels: {bad}")
    n_labels = len(label_list)
    pred_idx = np.array([index[v] for v in pred_str], dtype=np.int64)
    truth_idx = np.full(n, -1, dtype=np.int64)
    truth_idx[mask] = [index[v] for v in truth_str]
    strata_arr = np.zeros(n, dtype=object) if strata is None else _vector(strata, "strata", n)
    probs = _inclusion(inclusion_prob, strata_arr)
    code, keys = _codes(strata_arr, probs)
    h = len(keys)
    n_pop = np.bincount(code, minlength=h).astype(np.float64)
    n_aud = np.bincount(code, weights=mask.astype(np.float64), minlength=h)
    pred_count = np.bincount(code * n_labels + pred_idx, minlength=h * n_labels).reshape(h, n_labels)
    f_share = pred_count / n_pop[:, None]
    ca, pa, ta = code[mask], pred_idx[mask], truth_idx[mask]
    differ = pa != ta
    # b: truth = k but predicted != k;  c: predicted = k but truth != k (per cell x label)
    b = np.bincount(ca[differ] * n_labels + ta[differ], minlength=h * n_labels).reshape(h, n_labels).astype(float)
    c = np.bincount(ca[differ] * n_labels + pa[differ], minlength=h * n_labels).reshape(h, n_labels).astype(float)
    nn = n_aud[:, None]
    min_n = 1 if small_sample_adjustment else 2
    usable = n_aud >= min_n
    with np.errstate(divide="ignore", invalid="ignore"):
        p_cell = f_share + (b - c) / nn
        if small_sample_adjustment:
            n2 = nn + 2.0
            b2, c2 = b + 0.5, c + 0.5
            var_d = ((b2 + c2) / n2 - ((b2 - c2) / n2) ** 2) / n2  # variance of the mean of D
        else:
            s2 = ((b + c) - (b - c) ** 2 / nn) / (nn - 1.0)
            var_d = s2 / nn
        if population == "finite":
            factor = (1.0 - nn / n_pop[:, None]) if fpc else 1.0
            var_cell = factor * var_d
        else:
            s2_f = f_share * (1 - f_share) * n_pop[:, None] / np.maximum(n_pop[:, None] - 1.0, 1.0)
            var_cell = var_d + s2_f / n_pop[:, None]
    w = n_pop / n
    wu = w[usable]
    est = np.sum(wu[:, None] * p_cell[usable], axis=0)
    se = np.sqrt(np.sum((wu**2)[:, None] * var_cell[usable], axis=0))
    z = norm.ppf(1.0 - (alpha / n_labels if simultaneous else alpha) / 2)
    unaudited = float(n_pop[~usable].sum())
    low = np.clip(est - z * se, 0.0, 1.0)
    high = np.clip(est + z * se + unaudited / n, 0.0, 1.0)
    audited_counts = np.bincount(ta, minlength=n_labels) if mask.any() else np.zeros(n_labels)
    shares = {}
    for j, lab in enumerate(label_list):
        shares[lab] = {
            "estimate": None if unaudited > 0 or not usable.any() else float(np.clip(est[j], 0.0, 1.0)),
            "low": None if not usable.any() else float(low[j]),
            "high": None if not usable.any() else float(high[j]),
            "predicted_share": float(pred_count[:, j].sum() / n),
            "audited_share": float(audited_counts[j] / mask.sum()) if mask.any() else None,
        }
    reason = None
    if not usable.any():
        reason = f"no stratum has {min_n} or more audited records: nothing to estimate from"
    elif unaudited > 0:
        reason = (
            f"{int(unaudited)} record(s) lie in strata with fewer than {min_n} audit(s): no point estimate; "
            "the interval is a worst-case bound for them"
        )
    return {
        "labels": label_list,
        "shares": shares,
        "n_audited": int(mask.sum()),
        "n_population": int(n),
        "n_unaudited_population": int(unaudited),
        "confidence_level": float(confidence_level),
        "method": "stratified PPI (difference estimator, lambda=1), normal interval"
        + (", Agresti-Min variance" if small_sample_adjustment else "")
        + (", Bonferroni over labels" if simultaneous else ""),
        "population": population,
        "reason": reason,
    }
