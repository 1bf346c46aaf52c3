"""Agreement metrics: published values, the example of Section 13.5 "LLM-Assisted Labeling & Active
Learning" (course text), Code Fragment 13.5.4, and random cross-checks against sklearn, statsmodels
and the `krippendorff` package."""

from __future__ import annotations

import json

import krippendorff
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import cohen_kappa_score, f1_score
from statsmodels.stats import inter_rater

from curation.agreement import (
    agreement_report,
    cohens_kappa,
    count_table,
    fleiss_kappa,
    interpret_kappa,
    krippendorff_alpha,
    llm_favours_reviewer,
    llm_per_class_f1,
    llm_vs_majority_kappa,
    per_reviewer_agreement,
    percent_agreement,
    ratings_from_long,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The example labels of Section 13.5 "LLM-Assisted Labeling & Active Learning" (course text),
# Code Fragment 13.5.4.
HUMAN_A = ["pos", "neg", "neu", "pos", "neg", "pos", "neu", "neg", "pos", "neu"]
HUMAN_B = ["pos", "neg", "pos", "pos", "neg", "pos", "neg", "neg", "pos", "neu"]
LLM = ["pos", "neg", "neu", "pos", "neg", "pos", "neu", "neg", "pos", "pos"]

# Wikipedia's Fleiss example, as in statsmodels' own test (kappa 0.210).
WIKIPEDIA_FLEISS = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 coders x 12 units
# example with missing values; published alphas: nominal .743, ordinal .815, interval .849,
# ratio .797.
NAN = np.nan
KRIPPENDORFF_EXAMPLE = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
).T  # units x raters


# ------------------------------------------------------------------------------- published values


def test_course_text_example_kappas_match_sklearn():
    # Code Fragment 13.5.4 prints 0.538 / 0.769 / 0.385 for this example, but its own function (and sklearn)
    # give the values below for the listed labels; we assert the computed values.
    assert cohens_kappa(HUMAN_A, HUMAN_B) == pytest.approx(cohen_kappa_score(HUMAN_A, HUMAN_B))
    assert cohens_kappa(HUMAN_A, HUMAN_B) == pytest.approx(0.6923076923)
    assert cohens_kappa(LLM, HUMAN_A) == pytest.approx(0.8461538462)
    assert cohens_kappa(LLM, HUMAN_B) == pytest.approx(0.5081967213)


def test_fleiss_wikipedia_value():
    assert fleiss_kappa(WIKIPEDIA_FLEISS) == pytest.approx(0.2099, abs=5e-4)
    assert fleiss_kappa(WIKIPEDIA_FLEISS) == pytest.approx(inter_rater.fleiss_kappa(WIKIPEDIA_FLEISS))


@pytest.mark.parametrize(
    ("level", "expected"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorff_published_example(level, expected):
    assert krippendorff_alpha(KRIPPENDORFF_EXAMPLE, level) == pytest.approx(expected, abs=5e-4)


def test_bands_follow_landis_koch():
    # Landis & Koch (1977), Biometrics 33(1); "slight" and "poor" merged as Code Fragment 13.5.4 prints them
    assert interpret_kappa(0.95) == "almost perfect"
    assert interpret_kappa(0.81) == "almost perfect"
    assert interpret_kappa(0.80) == "substantial"
    assert interpret_kappa(0.61) == "substantial"
    assert interpret_kappa(0.55) == "moderate"  # Section 13.5 (course text), Self-Check Q5
    assert interpret_kappa(0.30) == "fair"
    assert interpret_kappa(0.20) == "slight/poor"
    assert interpret_kappa(-0.3) == "slight/poor"
    assert interpret_kappa(float("nan")) == "undefined"


# ------------------------------------------------------------------------------ random cross-checks


@st.composite
def two_raters(draw, min_size=2, max_size=60, n_cats=5):
    n = draw(st.integers(min_size, max_size))
    a = draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_cats - 1)))
    b = draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_cats - 1)))
    return a, b


@PROPERTY
@given(two_raters(), st.sampled_from([None, "linear", "quadratic"]))
def test_cohens_kappa_matches_sklearn(pair, weights):
    a, b = pair
    if len(set(a) | set(b)) < 2:  # 0/0: sklearn gives NaN, we give 1.0 (documented)
        assert cohens_kappa(a, b, weights=weights) == 1.0
        return
    expected = cohen_kappa_score(a, b, weights=weights)
    assert cohens_kappa(a, b, weights=weights) == pytest.approx(expected, abs=1e-9)


@PROPERTY
@given(two_raters(n_cats=4))
def test_cohens_kappa_matches_statsmodels_table(pair):
    a, b = pair
    table = np.zeros((4, 4))
    np.add.at(table, (a, b), 1)
    used = (table.sum(0) + table.sum(1)) > 0
    table = table[np.ix_(used, used)]
    if table.shape[0] < 2:
        return
    expected = inter_rater.cohens_kappa(table, return_results=False)
    assert cohens_kappa(a, b) == pytest.approx(expected, abs=1e-9)


def test_weighted_kappa_uses_given_label_order():
    a = ["neg", "neu", "pos", "pos", "neu"]
    b = ["neu", "neu", "pos", "neg", "pos"]
    order = ["neg", "neu", "pos"]
    codes = {c: i for i, c in enumerate(order)}
    expected = cohen_kappa_score([codes[x] for x in a], [codes[x] for x in b], weights="quadratic")
    assert cohens_kappa(a, b, weights="quadratic", labels=order) == pytest.approx(expected)


@st.composite
def equal_rater_tables(draw):
    n_subjects = draw(st.integers(2, 30))
    n_cats = draw(st.integers(2, 5))
    n_raters = draw(st.integers(2, 8))
    rows = []
    for _ in range(n_subjects):
        cuts = sorted(draw(st.lists(st.integers(0, n_raters), min_size=n_cats - 1, max_size=n_cats - 1)))
        rows.append(np.diff([0, *cuts, n_raters]))
    return np.array(rows)


@PROPERTY
@given(equal_rater_tables())
def test_fleiss_matches_statsmodels(table):
    p_j = table.sum(0) / table.sum()
    if (p_j**2).sum() >= 1 - 1e-12:
        assert fleiss_kappa(table) == 1.0
        return
    assert fleiss_kappa(table) == pytest.approx(inter_rater.fleiss_kappa(table, method="fleiss"), abs=1e-9)


@PROPERTY
@given(hnp.arrays(np.int64, st.tuples(st.integers(2, 25), st.integers(2, 6)), elements=st.integers(0, 3)))
def test_count_table_matches_statsmodels_aggregate_raters(codes):
    ours = count_table(codes.astype(float), 4)
    theirs, cats = inter_rater.aggregate_raters(codes, n_cat=4)
    assert np.array_equal(ours, theirs)


def test_fleiss_unequal_raters_refuses_and_points_to_alpha():
    table = np.array([[2, 1], [1, 1], [0, 3]])
    with pytest.raises(ValueError, match="krippendorff_alpha"):
        fleiss_kappa(table)


def test_fleiss_subsample_is_seeded_and_keeps_k():
    rng = np.random.default_rng(1)
    table = np.stack([rng.multinomial(n, [0.6, 0.3, 0.1]) for n in rng.integers(5, 12, size=200)])
    v1 = fleiss_kappa(table, unequal="subsample", random_state=7)
    v2 = fleiss_kappa(table, unequal="subsample", random_state=7)
    assert v1 == v2
    # equal to Fleiss on the explicitly subsampled table
    sub_rng = np.random.default_rng(7)
    k = table.sum(1).min()
    sub = np.stack([r if r.sum() == k else sub_rng.multivariate_hypergeometric(r, k) for r in table])
    assert v1 == pytest.approx(inter_rater.fleiss_kappa(sub))
    with pytest.raises(ValueError, match="k=99"):
        fleiss_kappa(table, unequal="subsample", k=99)


@st.composite
def ratings_with_missing(draw, max_units=30, max_raters=6, n_values=5):
    n_units = draw(st.integers(2, max_units))
    n_raters = draw(st.integers(2, max_raters))
    values = draw(hnp.arrays(np.float64, (n_units, n_raters), elements=st.integers(0, n_values - 1).map(float)))
    missing = draw(hnp.arrays(np.bool_, (n_units, n_raters), elements=st.booleans()))
    data = np.where(missing, np.nan, values)
    return data


@PROPERTY
@given(ratings_with_missing(), st.sampled_from(["nominal", "ordinal", "interval", "ratio"]))
def test_krippendorff_matches_package(data, level):
    pairable = (~np.isnan(data)).sum(1) >= 2
    if not pairable.any():
        with pytest.raises(ValueError, match="two ratings"):
            krippendorff_alpha(data, level)
        return
    if len(np.unique(data[pairable][~np.isnan(data[pairable])])) < 2:
        assert krippendorff_alpha(data, level) == 1.0  # the package raises here
        return
    if level == "ratio":
        data = data + 1.0  # ratio needs a true zero away from the values
    expected = krippendorff.alpha(reliability_data=data.T, level_of_measurement=level)
    assert krippendorff_alpha(data, level) == pytest.approx(expected, abs=1e-9)


@PROPERTY
@given(ratings_with_missing())
def test_percent_agreement_equals_fleiss_p_bar_with_equal_raters(data):
    full = np.nan_to_num(data, nan=0.0)  # every unit fully rated
    counts = count_table(full, 5)
    n = full.shape[1]
    p_i = ((counts**2).sum(1) - n) / (n * (n - 1))
    assert percent_agreement(full) == pytest.approx(p_i.mean())


# ------------------------------------------------------------------------------ reviewer/LLM checks


def test_per_reviewer_uses_leave_one_out_majority():
    # 3 reviewers; C always disagrees with A and B who agree
    data = np.array([[0, 0, 1], [1, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=float)
    rows = per_reviewer_agreement(data, 2)
    # for A (and B) the others split 1-1 on every unit: nothing to compare, NaN
    assert rows[0]["n_items"] == 0 and np.isnan(rows[0]["agreement"])
    assert rows[2]["n_items"] == 4 and rows[2]["agreement"] == 0.0
    data4 = np.column_stack([data, data[:, 0]])  # add D = copy of A
    rows = per_reviewer_agreement(data4, 2)
    assert rows[0]["agreement"] == 1.0 and rows[2]["agreement"] == 0.0


def test_llm_vs_majority_and_per_class_f1_match_sklearn():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 300)
    data = np.column_stack([np.where(rng.random(300) < 0.8, truth, rng.integers(0, 3, 300)) for _ in range(3)])
    data = data.astype(float)
    llm = np.where(rng.random(300) < 0.7, truth, rng.integers(0, 3, 300))
    from curation.consensus import majority_vote

    maj = majority_vote(data, 3).labels
    mask = maj >= 0
    res = llm_vs_majority_kappa(llm, data, 3)
    assert res["n_items"] == mask.sum()
    assert res["kappa"] == pytest.approx(cohen_kappa_score(llm[mask], maj[mask]))
    f1 = [d["f1"] for d in llm_per_class_f1(llm, data, 3)]
    assert f1 == pytest.approx(f1_score(maj[mask], llm[mask], average=None, labels=[0, 1, 2]))


def test_llm_favours_one_reviewer_is_flagged():
    rng = np.random.default_rng(0)
    n = 400
    truth = rng.integers(0, 3, n)
    honest = [np.where(rng.random(n) < 0.85, truth, rng.integers(0, 3, n)) for _ in range(3)]
    biased = np.where(truth == 1, 2, truth)  # reviewer 0 never says class 1
    biased = np.where(rng.random(n) < 0.9, biased, rng.integers(0, 3, n))
    llm = np.where(rng.random(n) < 0.9, biased, rng.integers(0, 3, n))  # LLM mimics reviewer 0
    data = np.column_stack([biased, *honest]).astype(float)
    rows = llm_favours_reviewer(llm, data, 3)
    assert rows[0]["flagged"] and rows[0]["gap"] > 0.3
    assert not any(r["flagged"] for r in rows[1:])
    # an LLM that tracks the truth favours nobody
    fair = np.where(rng.random(n) < 0.9, truth, rng.integers(0, 3, n))
    assert not any(r["flagged"] for r in llm_favours_reviewer(fair, np.column_stack(honest).astype(float), 3))


def test_course_text_example_flags_llm_mimicking_reviewer_a():
    df = pd.DataFrame(
        [(i, "a", x) for i, x in enumerate(HUMAN_A)] + [(i, "b", x) for i, x in enumerate(HUMAN_B)],
        columns=["record_id", "user", "label"],
    )
    report = agreement_report(ratings_from_long(df), dict(enumerate(LLM)), min_items=5)
    assert report["llm_favours_reviewer_flagged"] == ["a"]
    assert report["pairwise_kappa"][0]["kappa"] == pytest.approx(cohen_kappa_score(HUMAN_A, HUMAN_B))


def test_report_from_long_table_equals_direct_metrics():
    rng = np.random.default_rng(5)
    labels = ["negative", "neutral", "positive"]
    rows = []
    for rec in range(120):
        truth = rng.integers(0, 3)
        for user in rng.choice(["ann", "bob", "cy", "dee"], size=rng.integers(1, 4), replace=False):
            lab = truth if rng.random() < 0.75 else rng.integers(0, 3)
            rows.append((f"r{rec}", user, labels[lab], pd.Timestamp("2024-01-01")))
    # a stale duplicate answer that must be superseded by the later one
    rows.append(("r0", rows[0][1], "neutral", pd.Timestamp("2023-01-01")))
    df = pd.DataFrame(rows, columns=["record_id", "user", "label", "updated_at"])
    r = ratings_from_long(df, labels)
    assert r.data.shape == (120, 4)
    rep = agreement_report(r, {f"r{i}": labels[i % 3] for i in range(120)})
    json.dumps(rep, allow_nan=False)
    multi = (~np.isnan(r.data)).sum(1) >= 2
    assert rep["krippendorff_alpha_nominal"] == pytest.approx(
        krippendorff.alpha(reliability_data=r.data.T, level_of_measurement="nominal")
    )
    assert rep["percent_agreement"] == pytest.approx(percent_agreement(r.data[multi]))
    assert rep["n_responses"] == int((~np.isnan(r.data)).sum()) == len(df) - 1


def test_long_table_errors_name_the_problem():
    df = pd.DataFrame({"record_id": [1, 1], "user": ["a", "b"], "label": ["pos", "meh"]})
    with pytest.raises(ValueError, match="'meh'"):
        ratings_from_long(df, ["neg", "pos"])
    with pytest.raises(ValueError, match="user"):
        ratings_from_long(df.drop(columns="user"))


def test_input_errors_name_the_argument():
    with pytest.raises(ValueError, match="labels_a and labels_b differ"):
        cohens_kappa([1, 2], [1])
    with pytest.raises(ValueError, match="labels_b contains missing"):
        cohens_kappa([1, 2], [1, None])
    with pytest.raises(ValueError, match="ratings_matrix must be 2-D"):
        fleiss_kappa(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(np.ones((3, 2)), "cardinal")
