"""Routing: precision lower bounds (vs statsmodels), threshold choice, routes, budget table."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from curation.routing import (
    choose_threshold,
    coverage_precision_curve,
    errors_caught_table,
    precision_lower_bound,
    priority_scores,
    route_records,
)


@pytest.mark.parametrize("method, sm", [("wilson", "wilson"), ("clopper-pearson", "beta")])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_lower_bound_matches_statsmodels(method, sm, level):
    ks = np.array([0, 1, 5, 37, 95, 100, 480])
    ns = np.array([10, 10, 20, 40, 100, 100, 500])
    ours = precision_lower_bound(ks, ns, level, method)
    ref = np.array([proportion_confint(k, n, alpha=2 * (1 - level), method=sm)[0] for k, n in zip(ks, ns, strict=True)])
    np.testing.assert_allclose(ours, np.clip(ref, 0, 1), atol=1e-9)


def test_lower_bound_is_below_point_estimate_and_zero_for_empty():
    lb = precision_lower_bound([19, 0], [20, 0])
    assert lb[0] < 0.95 and lb[1] == 0.0


def test_curve_hand_computed():
    conf = np.array([0.9, 0.9, 0.8, 0.5])
    correct = np.array([1, 0, 1, 1], bool)
    c = coverage_precision_curve(conf, correct)
    assert c["threshold"].tolist() == [0.9, 0.8, 0.5]
    assert c["n_accepted"].tolist() == [2, 3, 4]
    np.testing.assert_allclose(c["precision"], [0.5, 2 / 3, 0.75])
    np.testing.assert_allclose(c["coverage"], [0.5, 0.75, 1.0])


def test_threshold_uses_lower_bound_not_point_estimate():
    # 40 records at 0.99 all correct (point precision 1.0), then 400 records at 0.9 with 97% correct
    conf = np.r_[np.full(40, 0.99), np.full(400, 0.9), np.full(200, 0.5)]
    correct = np.r_[np.ones(40), np.arange(400) >= 12, np.arange(200) >= 100].astype(bool)
    ch = choose_threshold(conf, correct, target_precision=0.95, confidence_level=0.95)
    # 40/40: Wilson LB ~0.936 < 0.95, so 0.99 alone is not enough; with 0.9: 428/440, LB ~0.955
    assert ch.achievable and ch.threshold == 0.9 and ch.n_accepted == 440
    assert ch.lower_bound >= 0.95 and ch.precision == pytest.approx(428 / 440)
    small = choose_threshold(conf[:40], np.ones(40, bool) | False, target_precision=0.95)
    assert not small.achievable and small.threshold == float("inf") and small.to_dict()["threshold"] is None


def test_route_records_rules_and_seed():
    rng = np.random.default_rng(0)
    conf = rng.random(1000)
    ok = rng.random(1000) > 0.05
    conf[~ok] = np.nan  # failed pre-labels have no confidence
    r1 = route_records(conf, ok, threshold=0.6, spot_check_rate=0.1, seed=3)
    r2 = route_records(conf, ok, threshold=0.6, spot_check_rate=0.1, seed=3)
    assert (r1 == r2).all()
    assert set(r1[~ok]) == {"human_review"}
    high = ok & (conf >= 0.6)
    assert set(r1[high]) <= {"auto_accept", "spot_check"}
    assert set(r1[ok & (conf < 0.6)]) == {"human_review"}
    assert (r1 == "spot_check").sum() == int(np.ceil(0.1 * high.sum()))
    r3 = route_records(conf, ok, threshold=0.6, spot_check_rate=0.1, seed=4)
    assert (r3 == "spot_check").sum() == (r1 == "spot_check").sum() and not (r3 == r1).all()


def test_gold_records_are_never_auto_accepted_or_audited():
    """A record whose label the gold gives was auto-accepted with the LLM's label (a label known to
    be wrong was published) and could take an audit slot."""
    conf = np.array([0.99, 0.98, 0.97, 0.2, 0.95])
    ok = np.ones(5, dtype=bool)
    gold = np.array([True, False, False, True, False])
    routes = route_records(conf, ok, threshold=0.9, spot_check_rate=0.0, gold=gold)
    assert routes.tolist() == ["gold", "auto_accept", "auto_accept", "gold", "auto_accept"]
    with pytest.raises(ValueError, match="gold must have shape"):
        route_records(conf, ok, 0.9, gold=gold[:2])


@pytest.mark.parametrize(
    ("n_auto", "rate", "audits"), [(9, 0.05, 1), (20, 0.05, 1), (21, 0.05, 2), (9, 0.0, 0), (3, 1.0, 3)]
)
def test_a_small_auto_accepted_set_still_gets_an_audit(n_auto, rate, audits):
    # round(0.05 * 9) == 0 left sets of up to 10 records with no audit, so never an estimate
    routes = route_records(np.full(n_auto, 0.99), np.ones(n_auto, dtype=bool), 0.5, spot_check_rate=rate)
    assert (routes == "spot_check").sum() == audits


def test_route_rejects_nan_in_ok_records():
    with pytest.raises(ValueError, match="confidences \\(of ok records\\)"):
        route_records([np.nan, 0.5], [True, True], 0.5)


def test_priority():
    p = priority_scores([0.9, 0.2, np.nan], [True, True, False])
    np.testing.assert_allclose(p, [0.1, 0.8, 1.0])
    p2 = priority_scores([0.9, 0.2], [True, True], disagreement=[1.0, 0.0], weight=0.5)
    np.testing.assert_allclose(p2, [0.55, 0.4])


def test_errors_caught_hand_and_ties():
    conf = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    correct = np.array([0, 0, 1, 1, 1, 1, 1, 1, 0, 1], bool)  # 3 errors
    t = {r["budget"]: r for r in errors_caught_table(conf, correct, budgets=(0.2, 0.5))}
    assert t[0.2]["errors_caught"] == 2 and t[0.2]["errors_caught_share"] == pytest.approx(2 / 3)
    assert t[0.2]["random_share"] == 0.2 and t[0.2]["lift"] == pytest.approx(10 / 3)
    # budget 5: 4 below the tie + 1 of 6 tied records holding 1 error -> 2 + 1/6 expected
    assert t[0.5]["errors_caught"] == pytest.approx(2 + 1 / 6)


def test_errors_caught_constant_confidence_equals_random():
    rng = np.random.default_rng(1)
    correct = rng.random(500) > 0.3
    for row in errors_caught_table(np.full(500, 0.8), correct):
        assert row["errors_caught_share"] == pytest.approx(row["random_share"])


def test_bad_inputs():
    with pytest.raises(ValueError, match="target_precision"):
        choose_threshold([0.5], [True], target_precision=1.0)
    with pytest.raises(ValueError, match="no errors"):
        errors_caught_table([0.5, 0.6], [True, True])
    with pytest.raises(ValueError, match="spot_check_rate"):
        route_records([0.5], [True], 0.5, spot_check_rate=2)
    with pytest.raises(ValueError, match="confidences is empty"):
        choose_threshold([], [])


def test_needs_review_overrides_confidence():
    conf = np.array([0.99, 0.99, 0.2, 0.99])
    ok = np.array([True, True, True, False])
    flagged = np.array([False, True, False, False])
    routes = route_records(conf, ok, threshold=0.9, spot_check_rate=0.0, needs_review=flagged)
    assert routes.tolist() == ["auto_accept", "human_review", "human_review", "human_review"]
    with pytest.raises(ValueError, match="needs_review must have shape"):
        route_records(conf, ok, threshold=0.9, needs_review=flagged[:2])
