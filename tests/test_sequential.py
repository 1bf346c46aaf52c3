"""Anytime-valid audit monitoring (curation/sequential.py): values against direct integration, the
level kept under repeated looks (simulation), and verdicts on known counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from curation.sequential import mixture_log_e_value, monitor_audits


@pytest.mark.parametrize(
    ("s", "f", "target", "side"),
    [
        (40, 0, 0.9, "confirm"),
        (43, 0, 0.9, "confirm"),
        (30, 12, 0.9, "drift"),
        (5, 1, 0.85, "confirm"),
        (0, 0, 0.5, "drift"),
    ],
)
def test_the_statistic_is_the_mixture_likelihood_ratio(s, f, target, side):
    lo, hi = (target, 1.0) if side == "confirm" else (0.0, target)
    mixture = integrate.quad(lambda p: p**s * (1 - p) ** f, lo, hi, epsabs=0, epsrel=1e-12)[0] / (hi - lo)
    expected = mixture / (target**s * (1 - target) ** f)
    assert math.exp(mixture_log_e_value(s, f, target, side, prior=(1, 1))) == pytest.approx(expected, rel=1e-8)
    # the default prior, Beta(10 p0, 10 (1 - p0)) restricted to the alternative
    a, b = 10 * target, 10 * (1 - target)
    density = stats.beta(a, b).pdf
    mass = integrate.quad(density, lo, hi, epsabs=0, epsrel=1e-12)[0]
    weighted = integrate.quad(lambda p: p**s * (1 - p) ** f * density(p), lo, hi, epsabs=0, epsrel=1e-12)[0]
    expected = weighted / mass / (target**s * (1 - target) ** f)
    assert math.exp(mixture_log_e_value(s, f, target, side)) == pytest.approx(expected, rel=1e-7)


def test_zero_errors_needed_to_confirm_matches_the_closed_form():
    # uniform prior, no error: M(n) = (1 - p0^(n+1)) / ((n + 1) (1 - p0) p0^n); >= 20 first at n = 43 for 0.9
    assert monitor_audits([True] * 42, 0.9, prior=(1, 1)).state == "undecided"
    assert monitor_audits([True] * 43, 0.9, prior=(1, 1)).state == "confirmed"
    # the default prior: 40
    assert monitor_audits([True] * 39, 0.9).state == "undecided"
    verdict = monitor_audits([True] * 40, 0.9)
    assert verdict.state == "confirmed" and verdict.p_confirm < 0.05 and verdict.p_drift == 1.0
    assert verdict.statement.startswith(
        "40/40 blind audits agree with the LLM label (each audit label taken as the truth)"
    )


def test_drift_is_found_and_a_verdict_stands():
    wrong_often = np.array([True, False] * 20)  # 50% against a 0.9 target
    verdict = monitor_audits(wrong_often, 0.9)
    assert verdict.state == "drift" and "auto-accept stopped" in verdict.statement
    # the next round's counts alone would be undecided; the running maximum keeps the verdict
    later = monitor_audits(np.array([True] * 30 + [False] * 3), 0.9, previous=verdict.to_dict())
    assert later.state == "drift" and later.log_e_drift == verdict.log_e_drift


def test_the_level_holds_under_repeated_looks():
    """Truth exactly at the target (both nulls true): looking after every 5 audits up to 300, a
    wrong verdict in <= 5% of runs each way (Ville's inequality over all looks)."""
    rng = np.random.default_rng(0)
    runs, target, bar = 4000, 0.85, math.log(20)
    looks = np.arange(5, 301, 5)
    successes = np.cumsum(rng.random((runs, 300)) < target, axis=1)[:, looks - 1]
    failures = looks - successes
    drift = (mixture_log_e_value(successes, failures, target, "drift") >= bar).any(axis=1).mean()
    confirm = (mixture_log_e_value(successes, failures, target, "confirm") >= bar).any(axis=1).mean()
    se = math.sqrt(0.05 * 0.95 / runs)
    assert drift <= 0.05 + 2 * se and confirm <= 0.05 + 2 * se
    # and it is not vacuous: at 0.75 (below the target) drift is found in nearly every run by 300 audits
    low = np.cumsum(rng.random((runs, 300)) < 0.75, axis=1)[:, looks - 1]
    assert (mixture_log_e_value(low, looks - low, target, "drift") >= bar).any(axis=1).mean() > 0.9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"correct": [[True]], "target_precision": 0.9}, "1-D array of booleans"),
        ({"correct": [0.5], "target_precision": 0.9}, "1-D array of booleans"),
        ({"correct": [True], "target_precision": 1.0}, "target must be in"),
        ({"correct": [True], "target_precision": 0.9, "confidence_level": 1.0}, "confidence_level"),
    ],
)
def test_bad_input_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        monitor_audits(**kwargs)


def test_the_benchmark_core_shows_the_naive_baseline_inflating():
    """benchmarks/audit_monitor.py on a small configuration: a fixed-sample exact test re-run at
    every look says a wrong verdict far more often than alpha; the product's test does not."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "audit_monitor.py"
    spec = importlib.util.spec_from_file_location("bench_audit_monitor", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.run(runs=800, max_audits=150, per_round=5, alpha=0.05, seed=1)["rows"]
    at_target = {r["procedure"]: r for r in rows if r["true_precision"] == r["target"] == 0.85}
    assert at_target["naive_fixed"]["wrong_verdict_share"] > 0.10
    assert at_target["anytime"]["wrong_verdict_share"] <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 800)
