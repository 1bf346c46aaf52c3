"""curation.estimation: binomial intervals (vs statsmodels), MOVER, the published accuracy on hand
cases, stratified PPI against the formula of the PPI paper, and against ppi_python when installed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import beta, hypergeom, norm
from statsmodels.stats.proportion import proportion_confint

from curation.estimation import (
    ACCURACY_METHODS,
    audited_proportion,
    binomial_interval,
    class_shares_ppi,
    mover_combine,
    published_accuracy,
)

Z = norm.ppf(0.975)


def wilson(p: float, n: float, z: float = Z) -> tuple[float, float]:
    """The Wilson score interval written out (n may be an effective sample size)."""
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return center - half, center + half


# --------------------------------------------------------------------------------------------
# binomial_interval


@pytest.mark.parametrize("method, sm", [("wilson", "wilson"), ("clopper-pearson", "beta"), ("jeffreys", "jeffreys")])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_binomial_interval_matches_statsmodels_without_fpc(method, sm, level):
    for x, n in [(0, 10), (1, 10), (5, 20), (37, 40), (99, 100), (100, 100), (480, 500)]:
        ours = binomial_interval(x, n, confidence_level=level, method=method)
        lo, hi = proportion_confint(x, n, alpha=1 - level, method=sm)
        if method == "jeffreys":  # the boundary convention of Brown, Cai & DasGupta
            lo, hi = (0.0 if x == 0 else lo), (1.0 if x == n else hi)
        np.testing.assert_allclose(ours, (max(lo, 0.0), min(hi, 1.0)), atol=1e-9)


def test_fpc_uses_the_effective_sample_size_and_a_census_is_exact():
    # 8 of 10 sampled from 20: effective n = 10 * 19 / 10 = 19
    np.testing.assert_allclose(binomial_interval(8, 10, population=20), wilson(0.8, 19.0), atol=1e-12)
    np.testing.assert_allclose(binomial_interval(8, 10, population=20, fpc=False), wilson(0.8, 10.0), atol=1e-12)
    assert binomial_interval(7, 9, population=9) == (7 / 9, 7 / 9)
    assert binomial_interval(7, 9, population=9, method="hypergeometric") == (7 / 9, 7 / 9)


def test_hypergeometric_interval_is_the_exact_test_inversion():
    def brute(x, n, big_n, alpha=0.05):
        m = np.arange(big_n + 1)
        ok = (m >= x) & (big_n - m >= n - x)
        ok &= (hypergeom.sf(x - 1, big_n, m, n) > alpha / 2) & (hypergeom.cdf(x, big_n, m, n) > alpha / 2)
        return m[ok].min() / big_n, m[ok].max() / big_n

    for x, n, big_n in [(0, 5, 30), (3, 5, 30), (5, 5, 30), (12, 20, 25), (1, 1, 2), (40, 50, 400)]:
        assert binomial_interval(x, n, population=big_n, method="hypergeometric") == brute(x, n, big_n)
    # hand case: all 5 of 5 drawn from 6 are right: M = 5 has P(X >= 5) = 1/6 > 0.025, so M in {5, 6}
    assert binomial_interval(5, 5, population=6, method="hypergeometric") == (5 / 6, 1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"successes": 3, "n": 0},
        {"successes": 4, "n": 3},
        {"successes": 1, "n": 3, "population": 2},
        {"successes": 1, "n": 3, "method": "hypergeometric"},
        {"successes": 1, "n": 3, "method": "wald"},
        {"successes": 1, "n": 3, "confidence_level": 1.0},
    ],
)
def test_binomial_interval_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        binomial_interval(**kwargs)


# --------------------------------------------------------------------------------------------
# MOVER


def test_mover_hand_computed():
    est, low, high = mover_combine([0.6, 0.4], [0.9, 1.0], [0.8, 0.7], [0.95, 1.0])
    assert est == pytest.approx(0.94)
    assert low == pytest.approx(0.94 - np.sqrt((0.6 * 0.1) ** 2 + (0.4 * 0.3) ** 2))
    assert high == pytest.approx(0.94 + np.sqrt((0.6 * 0.05) ** 2))
    assert mover_combine([1.0], [0.5], [0.3], [0.8]) == pytest.approx((0.5, 0.3, 0.8))
    with pytest.raises(ValueError):
        mover_combine([-1.0], [0.5], [0.3], [0.8])


# --------------------------------------------------------------------------------------------
# published_accuracy

FINAL = ["a", "b", "a", "a", "c", "a", "b", "b", "a", "c"]
SOURCE = ["llm_auto"] * 6 + ["human"] * 3 + ["consensus"]
AUDIT = [True, True, True, False, False, False, True, False, False, False]
AUDIT_LABELS = ["a", "a", "a", None, None, None, "b", None, None, None]


def test_published_accuracy_hand_case():
    res = published_accuracy(FINAL, SOURCE, AUDIT, AUDIT_LABELS, method="mover-wilson")
    auto, human, consensus = (res["by_source"][s] for s in ("llm_auto", "human", "consensus"))
    # llm_auto: 2 right of 3 audited among 6 records -> Wilson at effective n = 3 * 5 / 3 = 5
    assert (auto["estimate"], auto["n_audited"], auto["n_population"], auto["n_correct"]) == (2 / 3, 3, 6, 2)
    np.testing.assert_allclose((auto["low"], auto["high"]), wilson(2 / 3, 5.0), atol=1e-12)
    # human: 1 of 1 among 3 -> effective n = 1 * 2 / 2 = 1
    assert human["estimate"] == 1.0
    np.testing.assert_allclose((human["low"], human["high"]), (wilson(1.0, 1.0)[0], 1.0), atol=1e-12)
    # consensus: no audit at all
    assert consensus["estimate"] is None and consensus["low"] is None and "no audited record" in consensus["reason"]
    # overall: consensus (1 record of 10) is unaudited -> no estimate, worst-case bound from MOVER
    overall = res["overall"]
    assert overall["estimate"] is None and "1 record(s)" in overall["reason"]
    (l1, u1), (l2, _u2) = wilson(2 / 3, 5.0), wilson(1.0, 1.0)
    est = 0.6 * 2 / 3 + 0.3 * 1.0
    assert overall["low"] == pytest.approx(est - np.sqrt((0.6 * (2 / 3 - l1)) ** 2 + (0.3 * (1 - l2)) ** 2))
    assert overall["high"] == pytest.approx(est + 0.6 * (u1 - 2 / 3) + 0.1)
    assert (overall["n_audited"], overall["n_population"], overall["n_correct"]) == (4, 10, 3)
    json.dumps(res, allow_nan=False)  # strict JSON


def test_published_accuracy_default_is_mover_jeffreys():
    res = published_accuracy(FINAL, SOURCE, AUDIT, AUDIT_LABELS)
    assert res["method"] == "mover-jeffreys"
    auto = res["by_source"]["llm_auto"]
    # Jeffreys at the effective sample size 5 with 2/3 right: Beta(10/3 + 1/2, 5/3 + 1/2) quantiles
    np.testing.assert_allclose(
        (auto["low"], auto["high"]), beta.ppf([0.025, 0.975], 10 / 3 + 0.5, 5 / 3 + 0.5), atol=1e-12
    )
    human = res["by_source"]["human"]  # 1 of 1 right: the upper end is 1 (boundary convention)
    assert human["high"] == 1.0 and human["low"] == pytest.approx(beta.ppf(0.025, 1.5, 0.5))


def test_published_accuracy_strata_and_inclusion_probabilities_define_cells():
    final = np.array(["a"] * 8)
    source = np.array(["llm_auto"] * 4 + ["human"] * 4)
    audit = np.array([1, 1, 0, 0, 1, 1, 0, 0], bool)
    truth = np.array(["a", "b", None, None, "a", "a", None, None], dtype=object)
    # one design stratum with one rate: overall is one cell of 8, 3 right of 4
    one = published_accuracy(final, source, audit, truth, strata=["all"] * 8, inclusion_prob=0.5, method="mover-wilson")
    assert one["overall"]["estimate"] == 0.75
    np.testing.assert_allclose((one["overall"]["low"], one["overall"]["high"]), wilson(0.75, 4 * 7 / 4), atol=1e-12)
    # the same records with two inclusion probabilities: two cells of 4, weights 1/2 each
    two = published_accuracy(final, source, audit, truth, strata=["all"] * 8, inclusion_prob=[0.5] * 4 + [0.2] * 4)
    assert two["overall"]["estimate"] == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    assert set(two["by_stratum"]) == {"all"}
    assert two["by_source"]["llm_auto"]["estimate"] == 0.5 and two["by_source"]["human"]["estimate"] == 1.0
    with pytest.raises(ValueError, match="inclusion"):
        published_accuracy(final, source, audit, truth, inclusion_prob=1.5)
    with pytest.raises(ValueError, match="stratum"):
        published_accuracy(final, source, audit, truth, inclusion_prob={"human": 0.5})


def test_bonferroni_exact_is_the_weighted_sum_of_exact_cell_intervals():
    rng = np.random.default_rng(3)
    n = 400
    source = np.where(np.arange(n) < 300, "llm_auto", "human")
    truth = rng.choice(["a", "b"], n)
    final = np.where(rng.random(n) < 0.9, truth, np.where(truth == "a", "b", "a"))
    audit = rng.random(n) < 0.2
    res = published_accuracy(final, source, audit, np.where(audit, truth, None), method="bonferroni-exact")
    lows, highs, w = [], [], []
    for s in ("human", "llm_auto"):
        sel = source == s
        x, m = int(((final == truth) & audit & sel).sum()), int((audit & sel).sum())
        lo, hi = binomial_interval(
            x, m, population=int(sel.sum()), confidence_level=1 - 0.05 / 2, method="hypergeometric"
        )
        lows.append(lo), highs.append(hi), w.append(sel.mean())
    assert res["overall"]["low"] == pytest.approx(float(np.dot(w, lows)))
    assert res["overall"]["high"] == pytest.approx(float(np.dot(w, highs)))


def test_published_accuracy_errors():
    with pytest.raises(ValueError, match="missing"):
        published_accuracy(["a", "b"], ["human", "human"], [True, True], ["a", None])
    with pytest.raises(ValueError, match="entries"):
        published_accuracy(["a", "b"], ["human"], [True, True], ["a", "b"])
    with pytest.raises(ValueError, match="method"):
        published_accuracy(["a"], ["human"], [True], ["a"], method="wald")
    with pytest.raises(ValueError, match="confidence_level"):
        published_accuracy(["a"], ["human"], [True], ["a"], confidence_level=95)


def test_audited_proportion_covers_in_a_quick_simulation():
    """A smoke check of the statement (the benchmark measures it properly): a fixed population of
    2,000 in two strata audited at 3% and 15%; the interval holds the true share in >= 90% of 300 draws."""
    rng = np.random.default_rng(7)
    n = 2000
    strata = np.where(np.arange(n) < 1400, "auto", "reviewed")
    right = np.where(strata == "auto", rng.random(n) < 0.9, rng.random(n) < 0.97)
    pi = np.where(strata == "auto", 0.03, 0.15)
    truth = right.mean()
    hits = {m: 0 for m in ACCURACY_METHODS}
    for _ in range(300):
        audit = rng.random(n) < pi
        for m in ACCURACY_METHODS:
            r = audited_proportion(np.where(audit, right, None), audit, strata=strata, inclusion_prob=pi, method=m)
            hits[m] += r["low"] <= truth <= r["high"]
    assert all(h / 300 >= 0.90 for h in hits.values()), hits
    assert hits["bonferroni-exact"] >= hits["mover-jeffreys"]


# --------------------------------------------------------------------------------------------
# class_shares_ppi

PRED = ["a", "a", "a", "b", "b", "c", "a", "b"]
AUD = [True, False, False, True, False, True, True, False]
TRUTH = ["a", None, None, "a", None, "c", "b", None]


def test_ppi_hand_case_with_agresti_min_variance():
    res = class_shares_ppi(PRED, AUD, TRUTH, ["a", "b", "c"])
    sh = res["shares"]
    # predicted shares .5/.375/.125; audited D: idx3 (pred b, truth a) and idx6 (pred a, truth b) cancel
    assert [sh[k]["predicted_share"] for k in "abc"] == [0.5, 0.375, 0.125]
    assert [sh[k]["estimate"] for k in "abc"] == pytest.approx([0.5, 0.375, 0.125])
    # label b: b = c = 1 discordant of n = 4 -> (1.5 + 1.5)/6 / 6 = 1/12, times FPC (1 - 4/8)
    assert sh["b"]["high"] == pytest.approx(0.375 + Z * np.sqrt(0.5 / 12))
    assert sh["b"]["low"] == pytest.approx(max(0.0, 0.375 - Z * np.sqrt(0.5 / 12)))
    # label c: no discordance -> (0.5 + 0.5)/6 / 6 = 1/36, times 1/2
    assert sh["c"]["high"] == pytest.approx(0.125 + Z * np.sqrt(0.5 / 36))
    assert res["n_audited"] == 4 and res["n_population"] == 8 and res["reason"] is None
    json.dumps(res, allow_nan=False)


def _paper_ppi(y, f_aud, f_all, level=0.95):
    """The PPI mean estimate and CLT interval of Angelopoulos et al. (2023), lambda = 1 (ddof 1)."""
    est = f_all.mean() + (y - f_aud).mean()
    half = norm.ppf(1 - (1 - level) / 2) * np.sqrt(
        np.var(y - f_aud, ddof=1) / y.size + np.var(f_all, ddof=1) / f_all.size
    )
    return est, est - half, est + half


def test_ppi_matches_the_paper_formula_unstratified():
    rng = np.random.default_rng(0)
    n = 3000
    truth = rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2])
    pred = np.where(rng.random(n) < 0.85, truth, rng.choice(["x", "y", "z"], n))
    audit = rng.random(n) < 0.1
    kw = dict(population="superpopulation", small_sample_adjustment=False)
    res = class_shares_ppi(pred, audit, np.where(audit, truth, None), ["x", "y", "z"], **kw)
    for k in "xyz":
        y, f_all = (truth[audit] == k).astype(float), (pred == k).astype(float)
        est, lo, hi = _paper_ppi(y, f_all[audit], f_all)
        e = res["shares"][k]
        assert (e["estimate"], e["low"], e["high"]) == pytest.approx((est, lo, hi), abs=1e-12)
    # the finite-population interval drops the imputed term and applies the FPC
    fin = class_shares_ppi(pred, audit, np.where(audit, truth, None), ["x", "y", "z"], small_sample_adjustment=False)
    d = (truth[audit] == "y").astype(float) - (pred[audit] == "y").astype(float)
    half = Z * np.sqrt((1 - audit.sum() / n) * np.var(d, ddof=1) / audit.sum())
    assert fin["shares"]["y"]["high"] - fin["shares"]["y"]["estimate"] == pytest.approx(half)


def test_stratified_ppi_weights_strata_by_size():
    pred = np.array(["a"] * 6 + ["b"] * 4)
    strata = np.array(["s1"] * 6 + ["s2"] * 4)
    audit = np.array([1, 1, 1, 0, 0, 0, 1, 1, 0, 0], bool)
    truth = np.array(["a", "b", "a", None, None, None, "b", "a", None, None], dtype=object)
    res = class_shares_ppi(pred, audit, truth, ["a", "b"], strata=strata)
    # s1: F_a = 1, D_a mean = -1/3 -> 2/3; s2: F_a = 0, D_a mean = +1/2 -> 1/2; weights .6/.4
    assert res["shares"]["a"]["estimate"] == pytest.approx(0.6 * 2 / 3 + 0.4 * 0.5)
    assert res["shares"]["b"]["estimate"] == pytest.approx(0.6 * 1 / 3 + 0.4 * 0.5)
    # a stratum with no audit: no estimate, worst-case bound
    audit2 = audit.copy()
    audit2[6:] = False
    res2 = class_shares_ppi(pred, audit2, np.where(audit2, truth, None), ["a", "b"], strata=strata)
    assert res2["shares"]["a"]["estimate"] is None and res2["n_unaudited_population"] == 4
    assert res2["shares"]["a"]["high"] - res2["shares"]["a"]["low"] >= 0.4
    # simultaneous intervals are wider
    sim = class_shares_ppi(pred, audit, truth, ["a", "b"], strata=strata, simultaneous=True)
    assert (
        sim["shares"]["a"]["high"] - sim["shares"]["a"]["low"] >= res["shares"]["a"]["high"] - res["shares"]["a"]["low"]
    )


def test_class_shares_errors():
    with pytest.raises(ValueError, match="predicted holds"):
        class_shares_ppi(["a", "q"], [True, False], ["a", None], ["a", "b"])
    with pytest.raises(ValueError, match="audit_labels holds"):
        class_shares_ppi(["a", "b"], [True, False], ["q", None], ["a", "b"])
    with pytest.raises(ValueError, match="duplicates"):
        class_shares_ppi(["a"], [True], ["a"], ["a", "a"])
    with pytest.raises(ValueError, match="population"):
        class_shares_ppi(["a"], [True], ["a"], ["a"], population="infinite")


def test_cross_check_against_ppi_python():
    """Point estimate and interval against the reference implementation (Angelopoulos et al.).

    ppi_python takes the unlabelled predictions as a separate sample and uses standard deviations
    with ddof 0; we pass every record's prediction as the unlabelled set (our estimator's imputed
    mean is over all records), so the point estimates are equal and the half-widths differ only by
    the ddof convention (ours/theirs in [1, sqrt(n/(n-1))])."""
    ppi_py = pytest.importorskip("ppi_py")
    rng = np.random.default_rng(1)
    n = 5000
    labels = ["neg", "neu", "pos", "mixed"]
    truth = rng.choice(labels[:3], n, p=[0.45, 0.35, 0.2])
    pred = np.where(rng.random(n) < 0.8, truth, rng.choice(labels, n))
    audit = rng.random(n) < 0.05
    m = int(audit.sum())
    ours = class_shares_ppi(
        pred, audit, np.where(audit, truth, None), labels, population="superpopulation", small_sample_adjustment=False
    )
    y = np.stack([(truth[audit] == k).astype(float) for k in labels], axis=1)
    f_all = np.stack([(pred == k).astype(float) for k in labels], axis=1)
    est = ppi_py.ppi_mean_pointestimate(y, f_all[audit], f_all, lam=1)
    lo, hi = ppi_py.ppi_mean_ci(y, f_all[audit], f_all, alpha=0.05, lam=1)
    for j, k in enumerate(labels):
        e, ref = ours["shares"][k], float(np.ravel(est)[j])
        assert e["estimate"] == pytest.approx(max(ref, 0.0), abs=1e-12)  # ours is clipped to [0, 1]
        theirs_half = (float(np.ravel(hi)[j]) - float(np.ravel(lo)[j])) / 2
        our_half = e["high"] - ref
        assert 1.0 - 1e-9 <= our_half / theirs_half <= np.sqrt(m / (m - 1)) + 1e-9


@pytest.mark.parametrize("counts", [(40, 50, 30, 50), (10, 12, 5, 20), (50, 50, 45, 60), (0, 10, 3, 10), (7, 7, 0, 9)])
def test_difference_interval_is_statsmodels_newcombe(counts):
    from statsmodels.stats.proportion import confint_proportions_2indep

    from curation.estimation import difference_interval

    d, low, high = difference_interval(*counts)
    ref_low, ref_high = confint_proportions_2indep(*counts, method="newcomb")
    assert d == pytest.approx(counts[0] / counts[1] - counts[2] / counts[3])
    assert (low, high) == pytest.approx((ref_low, ref_high), abs=1e-12)
