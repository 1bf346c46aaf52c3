"""curation.certify: the family-wise auto-accept threshold, its exact tests, and the gold planner."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from curation.certify import binomial_p_value as pv
from curation.certify import (
    certify_threshold,
    counts_above,
    default_start,
    fixed_sequence,
    isotonic_success,
    min_gold_needed,
    parse_addition,
    plan_gold,
    threshold_grid,
)


# ----------------------------------------------------------------------------------------------
# exact binomial pieces
# ----------------------------------------------------------------------------------------------
def test_min_gold_needed_known_figures():
    assert min_gold_needed(0.95, 0.95) == 59  # 0.95**59 = 0.0485 <= 0.05 < 0.95**58 = 0.0510
    assert min_gold_needed(0.90, 0.95) == 29
    assert min_gold_needed(0.85, 0.95) == 19
    assert min_gold_needed(0.95, 0.99) == 90
    assert [min_gold_needed(0.95, 0.95, e) for e in (1, 2)] == [93, 124]
    assert [min_gold_needed(0.85, 0.95, e) for e in (1, 2, 3)] == [30, 40, 50]


@pytest.mark.parametrize("target, level, errors", [(0.95, 0.95, 0), (0.9, 0.9, 1), (0.85, 0.95, 2), (0.99, 0.95, 3)])
def test_min_gold_needed_is_the_smallest_passing_count(target, level, errors):
    k = min_gold_needed(target, level, errors)
    assert binom.sf(k - errors - 1, k, target) <= 1 - level
    assert binom.sf(k - 1 - errors - 1, k - 1, target) > 1 - level


def test_p_value_hand_computed_and_matches_binomtest():
    # 19 of 20 right against 0.85: P(X >= 19) = 0.85^20 + 20 * 0.15 * 0.85^19
    hand = 0.85**20 + 20 * 0.15 * 0.85**19
    assert pv(19, 20, 0.85) == pytest.approx(hand, rel=1e-12)
    assert hand == pytest.approx(0.17556, abs=1e-5)
    for k, n, t in [(19, 20, 0.85), (59, 59, 0.95), (58, 59, 0.95), (174, 194, 0.85), (0, 5, 0.9), (3, 3, 0.5)]:
        assert pv(k, n, t) == pytest.approx(binomtest(k, n, t, alternative="greater").pvalue, rel=1e-9)
    assert pv(0, 0, 0.9) == 1.0
    with pytest.raises(ValueError, match="successes"):
        pv(5, 4, 0.9)


def test_fixed_sequence_stops_at_first_failure():
    # pass (19/19), fail (19/20), pass (39/40): the later pass is never used
    n_acc = np.array([19, 20, 40])
    n_cor = np.array([19, 19, 39])
    last, p = fixed_sequence(n_acc, n_cor, 0.85, 0.95)
    assert int(last) == 0
    assert p[0] <= 0.05 < p[1] and p[2] <= 0.05
    # vectorised over draws: (D, J)
    last2, _ = fixed_sequence(np.array([[19, 20, 40], [20, 30, 40]]), np.array([[18, 19, 39], [20, 29, 38]]), 0.85)
    assert last2.tolist() == [-1, 2]


# ----------------------------------------------------------------------------------------------
# the grid and the certificate
# ----------------------------------------------------------------------------------------------
def test_grid_from_scores_only_starts_and_steps_as_documented():
    pool = np.linspace(1.0, 0.0, 1000)  # distinct scores, descending
    th, exp = threshold_grid(pool, 400, 0.85, 0.95)
    assert default_start(0.85, 0.95, 400) == 60.0  # max(19, 3 * sqrt(400))
    assert exp[0] == pytest.approx(60.0, abs=0.4)  # the strictest score whose expected count reaches 60
    assert np.all(np.diff(th) < 0) and th[-1] == 0.0  # strict to loose, ends with everything accepted
    assert np.all(exp[1:-1] >= 1.1 * exp[:-2] - 0.4)  # each step ~10% more expected gold
    assert default_start(0.95, 0.95, 30) == 59.0  # never below the count a test needs to pass at all
    th_f, _ = threshold_grid(pool, 400, 0.85, start=20, step=0.5, floor=0.5)
    assert th_f.min() >= 0.5


def test_certify_stops_at_first_failure_hand_example():
    scores = np.linspace(0.99, 0.5, 40)
    correct = np.ones(40, bool)
    correct[19] = False  # the 20th record is wrong; the other 39 right (39/40 alone would pass)
    cert = certify_threshold(scores, correct, 0.85, 0.95, start=19, step=1e-9)
    assert cert.achievable and cert.threshold == scores[18]
    assert cert.n_accepted_gold == 19 and cert.n_correct_gold == 19 and cert.precision_gold == 1.0
    assert cert.p_value == pytest.approx(0.85**19)
    assert cert.stopped_at == 1 and len(cert.steps) == 2 and not cert.steps[1]["passed"]
    assert cert.steps[1]["p_value"] == pytest.approx(0.85**20 + 20 * 0.15 * 0.85**19)
    assert cert.grid_from == "gold" and cert.coverage_pool is None
    assert cert.lower_bound == pytest.approx(0.05 ** (1 / 19))  # Clopper-Pearson with no error: delta^(1/k)


def test_certify_too_little_gold_says_why():
    rng = np.random.default_rng(0)
    s = rng.random(30)
    cert = certify_threshold(s, np.ones(30, bool), 0.95, 0.95)
    assert not cert.achievable and cert.threshold is None
    assert ">= 59" in cert.reason and "Nothing is auto-accepted" in cert.statement
    # the statement reaches CLI users: it points to a file they have, not to a Python function
    assert "routing.json gold_plan" in cert.statement and "plan_gold" not in cert.statement
    d = cert.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["threshold"] is None and d["precision_gold"] is None


def test_certify_ties_take_every_tied_record():
    # stated confidences: 30 gold at 1.0 (all right), 30 at 0.9 (20 right), 40 at 0.8
    scores = np.r_[np.full(30, 1.0), np.full(30, 0.9), np.full(40, 0.8)]
    correct = np.r_[np.ones(30, bool), np.arange(30) < 20, np.arange(40) < 20]
    cert = certify_threshold(scores, correct, 0.85, 0.95, start=19)
    assert cert.threshold == 1.0 and cert.n_accepted_gold == 30 and cert.n_correct_gold == 30
    assert [st["n_accepted"] for st in cert.steps] == [30, 60]  # 0.9 takes all 30 tied records
    assert cert.steps[1]["n_correct"] == 50 and not cert.steps[1]["passed"]


def test_pool_grid_does_not_depend_on_labels_and_reports_pool_coverage():
    rng = np.random.default_rng(3)
    pool = rng.uniform(0.5, 1.0, 5000)
    gi = rng.choice(5000, 400, replace=False)
    y1 = rng.random(400) < pool[gi]
    y2 = rng.permutation(y1)
    c1 = certify_threshold(pool[gi], y1, 0.85, pool_scores=pool)
    c2 = certify_threshold(pool[gi], y2, 0.85, pool_scores=pool)
    k = min(len(c1.steps), len(c2.steps))
    assert [s["threshold"] for s in c1.steps[:k]] == [s["threshold"] for s in c2.steps[:k]]
    assert c1.grid_from == "pool" and c1.achievable
    assert c1.coverage_pool == pytest.approx(np.mean(pool >= c1.threshold))
    assert c1.n_candidates >= len(c1.steps)


def test_to_calibrated_is_for_display_only():
    rng = np.random.default_rng(4)
    s = rng.uniform(0.5, 1.0, 400)
    y = rng.random(400) < s
    plain = certify_threshold(s, y, 0.85)
    shown = certify_threshold(s, y, 0.85, to_calibrated=lambda x: np.sqrt(x))
    assert shown.threshold == plain.threshold
    assert shown.threshold_calibrated == pytest.approx(math.sqrt(plain.threshold))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scores": [0.5, 0.6], "correct": [1]}, "correct must be 1-D with 2"),
        ({"scores": [0.5, np.nan], "correct": [1, 0]}, "NaN"),
        ({"scores": [], "correct": []}, "empty"),
        ({"scores": [0.5, 0.6], "correct": [1, 2]}, "boolean or 0/1"),
        ({"scores": [0.5, 0.6], "correct": [1, 0], "target_precision": 1.0}, "target_precision"),
        ({"scores": [0.5, 0.6], "correct": [1, 0], "confidence_level": 1.0}, "confidence_level"),
        ({"scores": [0.5, 0.6], "correct": [1, 0], "start": 0}, "start and step"),
    ],
)
def test_certify_rejects_bad_input(kwargs, match):
    args = {"target_precision": 0.9, **kwargs}
    with pytest.raises(ValueError, match=match):
        certify_threshold(args.pop("scores"), args.pop("correct"), **args)


def test_counts_above_vectorised_equals_loop():
    rng = np.random.default_rng(5)
    s = np.round(rng.random((7, 50)), 1)  # ties
    y = rng.random((7, 50)) < 0.7
    th = np.array([0.95, 0.9, 0.5, 0.3, 0.0])
    n_acc, n_cor = counts_above(s, y, th)
    for d in range(7):
        a1, c1 = counts_above(s[d], y[d], th)
        assert a1.tolist() == n_acc[d].tolist() == [(s[d] >= t).sum() for t in th]
        assert c1.tolist() == n_cor[d].tolist() == [(y[d] & (s[d] >= t)).sum() for t in th]


def test_validity_at_the_boundary_small_simulation():
    # precision 0.849 everywhere, target 0.85: every acceptance is a violation; must stay <= 5% (+ MC error)
    rng = np.random.default_rng(6)
    pool = rng.random(20_000)
    th, _ = threshold_grid(pool, 200, 0.85, 0.95)
    d = 4000
    gs = pool[rng.integers(0, pool.shape[0], size=(d, 200))]
    gy = rng.random((d, 200)) < 0.849
    last, _ = fixed_sequence(*counts_above(gs, gy, th), 0.85, 0.95)
    v = float(np.mean(last >= 0))
    assert v <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / d)


# ----------------------------------------------------------------------------------------------
# the planner
# ----------------------------------------------------------------------------------------------
def test_isotonic_success_matches_sklearn():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(7)
    s = np.round(rng.random(200), 2)
    y = rng.random(200) < s
    at = np.linspace(-0.1, 1.1, 57)
    ref = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s, y.astype(float)).predict(at)
    np.testing.assert_allclose(isotonic_success(s, y, at), ref, atol=1e-12)


def test_parse_addition():
    assert parse_addition("+100", 60) == 100
    assert parse_addition("2x", 60) == 60 and parse_addition("4x", 60) == 180
    for bad in ("100", "1x", "+0", "x"):
        with pytest.raises(ValueError):
            parse_addition(bad, 60)


def test_plan_gold_small_gold():
    rng = np.random.default_rng(8)
    pool = rng.uniform(0.5, 1.0, 3000)
    gi = rng.choice(3000, 40, replace=False)
    y = rng.random(40) < pool[gi]
    unlabelled = np.ones(3000, bool)
    unlabelled[gi] = False
    plan = plan_gold(pool[gi], y, pool, 0.95, calibrated_pool=pool, unlabelled=unlabelled, n_simulations=100)
    assert [r["n_gold_above"] for r in plan.needed] == [59, 93, 124]
    assert [r["n_correct"] for r in plan.needed] == [59, 92, 122]
    assert not plan.certificate.achievable and plan.coverage_now == 0.0
    assert plan.next_threshold == plan.certificate.steps[0]["threshold"]
    assert len(plan.suggest_indices) == 50 and len(set(plan.suggest_indices)) == 50
    sug = np.array(plan.suggest_indices)
    # uniform over the unlabelled pool (records above the next threshold only would need a floor)
    assert unlabelled[sug].all() and pool[sug].min() < np.median(pool) < pool[sug].max()
    assert plan.suggest_frame.startswith("a uniform random sample of the 2960 unlabelled records")
    labels = [(r["label"], r["sampling"]) for r in plan.projections]
    assert ("4x", "random") in labels and ("+300", "above_next") in labels
    for r in plan.projections:
        assert r["feasible"] and 0 <= r["p_certify"] <= 1 and 0 <= r["expected_coverage"] <= 1
    by = {(r["label"], r["sampling"]): r for r in plan.projections}
    assert by[("+300", "random")]["n_gold"] == 340
    # P(correct) = score: 340 gold certify a 0.95 threshold most of the time, and more than 80 gold do
    assert by[("+300", "random")]["p_certify"] > by[("2x", "random")]["p_certify"]
    json.dumps(plan.to_dict(), allow_nan=False)


def test_plan_gold_after_a_certificate_suggests_above_the_failed_step():
    rng = np.random.default_rng(9)
    pool = rng.uniform(0.5, 1.0, 5000)
    gi = rng.choice(5000, 400, replace=False)
    y = rng.random(400) < pool[gi]
    plan = plan_gold(pool[gi], y, pool, 0.85, n_simulations=50, n_suggest=10)
    assert plan.certificate.achievable and plan.coverage_now > 0
    failed = plan.certificate.steps[plan.certificate.stopped_at]
    assert plan.next_threshold == failed["threshold"] < plan.certificate.threshold
    assert len(plan.suggest_indices) == 10 and "uniform random sample" in plan.suggest_frame
    assert "isotonic" in plan.success_model


def test_plan_gold_says_when_too_few_records_can_be_added():
    pool = np.linspace(0.5, 1.0, 100)
    gi = np.arange(0, 100, 2)
    unlabelled = np.ones(100, bool)
    unlabelled[gi] = False
    plan = plan_gold(pool[gi], np.ones(50, bool), pool, 0.95, unlabelled=unlabelled, n_simulations=20)
    by = {(r["label"], r["sampling"]): r for r in plan.projections}
    assert by[("+100", "random")]["feasible"] is False and "only 50" in by[("+100", "random")]["reason"]
    assert by[("+100", "random")]["p_certify"] is None
    assert by[("2x", "random")]["feasible"] is True  # 50 more from the 50 unlabelled
    json.dumps(plan.to_dict(), allow_nan=False)


def test_plan_gold_rejects_bad_input():
    with pytest.raises(ValueError, match="calibrated_pool"):
        plan_gold([0.9, 0.8], [1, 0], [0.9, 0.8, 0.7], 0.9, calibrated_pool=[0.5, 0.5])
    with pytest.raises(ValueError, match="unlabelled"):
        plan_gold([0.9, 0.8], [1, 0], [0.9, 0.8, 0.7], 0.9, unlabelled=[True])


# ----------------------------------------------------------------------------------------------
# the benchmark's code path (benchmarks/guarantee.py), on a few draws
# ----------------------------------------------------------------------------------------------
def test_guarantee_benchmark_code_path_runs_small():
    from benchmarks.guarantee import bar, markdown, run

    res = run(
        draws=40, sizes=(120,), targets=(0.85,), populations=("rt_logprob", "flat"),
        calibrated_families=("rt_logprob",), level=0.95, seed=1,
    )  # fmt: skip
    cells = res["cells"]
    assert [c["population"] for c in cells] == ["rt_logprob", "flat"]
    rt, flat = cells
    assert set(rt["methods"]) >= {"fixed_sequence", "scan_wilson", "scan_wilson_isotonic", "fixed_sequence_isotonic"}
    assert rt["truth_allows"] and not flat["truth_allows"]
    for m in flat["methods"].values():  # nothing reaches 0.85 in the flat population: acceptance is violation
        assert m["violation"] == m["acceptance"]
    result = {"cells": cells, "draws": 40, "confidence_level": 0.95, "wall_seconds": res["wall_seconds"]}
    result["bar"] = bar(cells, 0.95)
    json.dumps(result, allow_nan=False)
    assert "| rt_logprob | 120 | 0.85 |" in markdown(result)


def test_raw_cut_inverts_the_isotonic_map():
    from benchmarks.guarantee import raw_cut
    from curation.calibration import fit_calibrator

    rng = np.random.default_rng(10)
    s = rng.random(300)
    y = rng.random(300) < 0.3 + 0.6 * s
    cal = fit_calibrator(s, y, "isotonic")
    x, v = np.asarray(cal.params["x"]), np.asarray(cal.params["y"])
    pop = rng.random(20_000)
    cal_pop = np.interp(pop, x, v)
    for t in np.r_[np.unique(np.interp(s, x, v)), v.min() - 0.01]:
        cut = raw_cut(x, v, t)
        assert np.array_equal(pop >= cut, cal_pop >= t)


def test_floor_stops_the_sequence():
    s = np.linspace(1.0, 0.0, 200)
    cert = certify_threshold(s, np.ones(200, bool), 0.85, floor=0.6)
    assert cert.threshold is not None and cert.threshold >= 0.6
    assert all(st["threshold"] >= 0.6 for st in cert.steps) and cert.stopped_at is None
    none = certify_threshold(s, np.ones(200, bool), 0.85, floor=2.0)
    assert none.threshold is None and "floor" in none.reason


def test_certify_is_pure_numpy_scipy():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, curation.certify; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'argilla', 'httpx', 'openai', 'sklearn', 'pandas', "
        "'labeltriage', 'pipelines', 'datasets', 'llama_cpp'}))"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_confidence_guided_start_reads_scores_only() -> None:
    """default_start with the population's scores: the largest top share whose mean score reaches
    halfway from the target to 1, as an expected gold count, between the size-only rule and n/2."""
    from curation.certify import default_start

    base = default_start(0.85, 0.95, 120)
    assert base == pytest.approx(3 * np.sqrt(120))
    scores = np.r_[np.full(60, 0.99), np.full(40, 0.9), np.full(100, 0.5)]  # top 100 mean 0.954 >= 0.925
    k = np.flatnonzero(np.cumsum(np.sort(scores)[::-1]) / np.arange(1, 201) >= 0.925)[-1] + 1
    assert default_start(0.85, 0.95, 120, scores) == pytest.approx(min(120 * k / 200, 60))
    assert default_start(0.85, 0.95, 120, np.full(200, 0.99)) == 60  # never past half the gold
    assert default_start(0.85, 0.95, 120, np.full(200, 0.5)) == base  # the scores expect nothing
    assert default_start(0.85, 0.95, 120, np.linspace(-3, 3, 50)) == base  # not probabilities
