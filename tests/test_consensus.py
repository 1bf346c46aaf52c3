"""Consensus: majority vote and its tie policy, Dawid-Skene EM, the adjudication queue."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from curation.consensus import adjudication_queue, dawid_skene, majority_vote

NAN = np.nan
CODES = [0.0, 1.0, 2.0, 3.0]
SHAPES = st.tuples(st.integers(1, 20), st.integers(1, 5))


def test_majority_vote_and_tie_policies():
    data = np.array(
        [
            [0, 0, 1],  # 2-1 -> 0
            [0, 1, NAN],  # tie 0/1
            [2, NAN, NAN],  # single vote
            [NAN, NAN, NAN],  # nobody
            [0, 1, 2],  # three-way tie
        ]
    )
    res = majority_vote(data, 3)
    assert res.labels.tolist() == [0, -1, 2, -1, -1]
    assert res.tied.tolist() == [False, True, False, False, True]
    assert res.n_votes.tolist() == [3, 2, 1, 0, 3]
    np.testing.assert_allclose(res.agreement, [2 / 3, 0.5, 1.0, NAN, 1 / 3])

    llm = np.array([1, 1, 0, 0, 2], dtype=float)
    res = majority_vote(data, 3, tie_policy="llm", llm_labels=llm)
    # the LLM breaks a tie only between the tied categories; never overrides a majority
    assert res.labels.tolist() == [0, 1, 2, -1, 2]
    res = majority_vote(data, 3, tie_policy="llm", llm_labels=np.array([1, 2, 0, 0, NAN]))
    assert res.labels.tolist() == [0, -1, 2, -1, -1]

    r1 = majority_vote(data, 3, tie_policy="random", random_state=3).labels
    r2 = majority_vote(data, 3, tie_policy="random", random_state=3).labels
    assert r1.tolist() == r2.tolist()
    assert r1[1] in (0, 1) and r1[4] in (0, 1, 2) and r1[3] == -1


def test_majority_vote_errors():
    with pytest.raises(ValueError, match="llm_labels"):
        majority_vote(np.zeros((2, 2)), 2, tie_policy="llm")
    with pytest.raises(ValueError, match="0..1"):
        majority_vote(np.array([[0, 2]], dtype=float), 2)
    with pytest.raises(ValueError, match="tie_policy"):
        majority_vote(np.zeros((2, 2)), 2, tie_policy="coin")


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, SHAPES, elements=st.sampled_from(CODES)))
def test_majority_label_has_the_top_count(data):
    res = majority_vote(data, 4)
    for row, lab, tied in zip(data, res.labels, res.tied, strict=True):
        counts = np.bincount(row.astype(int), minlength=4)
        if tied:
            assert lab == -1
        else:
            assert counts[lab] == counts.max() and (counts == counts.max()).sum() == 1


def _simulate(n_units, confusions, priors, rng, missing=0.0):
    k = len(priors)
    truth = rng.choice(k, size=n_units, p=priors)
    cols = []
    for conf in confusions:
        said = np.array([rng.choice(k, p=conf[t]) for t in truth], dtype=float)
        said[rng.random(n_units) < missing] = np.nan
        cols.append(said)
    return truth, np.column_stack(cols)


def _noisy(acc, k):
    return np.full((k, k), (1 - acc) / (k - 1)) + np.eye(k) * (acc - (1 - acc) / (k - 1))


def test_dawid_skene_recovers_reviewer_quality_and_beats_majority():
    rng = np.random.default_rng(0)
    k = 3
    flip = np.roll(np.eye(k), 1, axis=1) * 0.85 + 0.05  # systematically says t+1
    confusions = [_noisy(0.9, k), _noisy(0.55, k), _noisy(0.5, k), flip, _noisy(0.45, k)]
    truth, data = _simulate(1500, confusions, [0.5, 0.3, 0.2], rng, missing=0.1)
    res = dawid_skene(data, k, tol=1e-8, max_iter=500)
    assert res.converged
    np.testing.assert_allclose(res.posteriors.sum(1), 1.0)
    np.testing.assert_allclose(res.confusion.sum(2), 1.0)
    np.testing.assert_allclose(res.priors, [0.5, 0.3, 0.2], atol=0.04)
    # estimated accuracies (diagonal) near the generating ones
    assert np.abs(np.diagonal(res.confusion[0]) - 0.9).max() < 0.06
    assert np.abs(res.confusion[3] - flip).max() < 0.08
    ds_acc = np.mean(res.labels == truth)
    mv = majority_vote(data, k, tie_policy="random", random_state=0).labels
    assert ds_acc > np.mean(mv == truth) + 0.05
    assert ds_acc > 0.9


def test_dawid_skene_is_seeded_and_start_independent():
    rng = np.random.default_rng(1)
    truth, data = _simulate(600, [_noisy(0.8, 2), _noisy(0.7, 2), _noisy(0.75, 2)], [0.6, 0.4], rng)
    a = dawid_skene(data, 2, init="random", random_state=5, tol=1e-10, max_iter=1000)
    b = dawid_skene(data, 2, init="random", random_state=5, tol=1e-10, max_iter=1000)
    np.testing.assert_array_equal(a.posteriors, b.posteriors)
    m = dawid_skene(data, 2, tol=1e-10, max_iter=1000)
    # same optimum from a random and from the majority start, up to label switching: EM's
    # likelihood is symmetric under permuting the classes, which is why the default start is
    # the majority vote (it pins class t to "what reviewers call t")
    a_post = a.posteriors if np.mean(a.labels == m.labels) > 0.5 else a.posteriors[:, ::-1]
    np.testing.assert_allclose(a_post, m.posteriors, atol=1e-3)
    assert a.log_likelihood == pytest.approx(m.log_likelihood, abs=1e-6)


def test_dawid_skene_unrated_units_get_priors():
    data = np.array([[0, 0], [1, 1], [NAN, NAN], [0, 1]])
    res = dawid_skene(data, 2)
    assert res.labels[2] == -1
    np.testing.assert_allclose(res.posteriors[2], res.priors)


def test_adjudication_queue_reasons():
    data = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 2], [0, 1, NAN], [1, NAN, NAN], [NAN, NAN, NAN]])
    mv = majority_vote(data, 3)
    flagged, reasons = adjudication_queue(mv.labels, mv.agreement, mv.n_votes, min_agreement=0.6, min_reviewers=2)
    assert reasons == [None, None, "tie", "tie", "too_few_reviewers", None]
    assert flagged.tolist() == [False, False, True, True, True, False]
    flagged, reasons = adjudication_queue(mv.labels, mv.agreement, mv.n_votes, min_agreement=0.7)
    assert reasons[1] == "low_agreement" and reasons[4] is None
    with pytest.raises(ValueError, match="one length"):
        adjudication_queue(mv.labels, mv.agreement[:2], mv.n_votes)


def test_human_majority_leaves_a_tie_as_none_not_nan() -> None:
    """pandas 3 stores a column of strings as `str` and turned a tie's None into NaN, which the
    callers' `is not None` checks then counted as the label 'nan' (found in review)."""
    import pandas as pd

    from curation.feedback import human_majority

    answers = pd.DataFrame({"record_id": ["a", "a", "b", "b"], "user": ["u1", "u2", "u1", "u2"],
                            "label": ["x", "y", "x", "x"]})  # fmt: skip
    majority = human_majority(answers)
    assert majority["majority"].tolist() == [None, "x"] and majority.index.tolist() == [0, 1]
