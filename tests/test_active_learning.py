"""Acquisition functions: identical to the reference formulas of Section 13.5 "LLM-Assisted Labeling &
Active Learning" (course text), Code Fragment 13.5.2, chunked, batch-aware, strict on input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics.pairwise import cosine_distances

from curation import active_learning as al


# --- Code Fragment 13.5.2 of Section 13.5 (course text), verbatim, as the reference --------------
# entropy uncertainty sampling (Lewis & Gale, SIGIR 1994), distance to the nearest labelled record
# (the core-set criterion of Sener & Savarese, ICLR 2018, without the greedy update) and their
# 0.6/0.4 weighted sum; Settles (2009), "Active Learning Literature Survey", surveys both.
def src_uncertainty_sampling(predictions, n_select=50):
    entropy = -np.sum(predictions * np.log(predictions + 1e-10), axis=1)
    return np.argsort(entropy)[-n_select:]


def src_diversity_sampling(embeddings, labeled_embeddings, n_select=50):
    distances = cosine_distances(embeddings, labeled_embeddings)
    min_distances = distances.min(axis=1)
    return np.argsort(min_distances)[-n_select:]


def src_hybrid_acquisition(predictions, embeddings, labeled_embeddings, n_select=50, uncertainty_weight=0.6):
    entropy = -np.sum(predictions * np.log(predictions + 1e-10), axis=1)
    max_entropy = np.log(predictions.shape[1])
    uncertainty_scores = entropy / max_entropy
    distances = cosine_distances(embeddings, labeled_embeddings)
    min_distances = distances.min(axis=1)
    diversity_scores = min_distances / max(min_distances.max(), 1e-10)
    combined = uncertainty_weight * uncertainty_scores + (1 - uncertainty_weight) * diversity_scores
    return np.argsort(combined)[-n_select:]


def pool(n=3000, n_lab=400, dim=64, c=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    pred = rng.dirichlet(np.ones(c) * 2, n)
    emb = rng.standard_normal((n, dim)).astype(dtype)
    lab = rng.standard_normal((n_lab, dim)).astype(dtype)
    return pred, emb, lab


def test_course_text_example_identical():
    np.random.seed(42)
    predictions = np.random.dirichlet(np.ones(4) * 2, 1000)
    embeddings = np.random.randn(1000, 128)
    labeled = np.random.randn(100, 128)
    np.testing.assert_array_equal(al.uncertainty_sampling(predictions, 50), src_uncertainty_sampling(predictions, 50))
    np.testing.assert_array_equal(
        al.diversity_sampling(embeddings, labeled, 50), src_diversity_sampling(embeddings, labeled, 50)
    )
    np.testing.assert_array_equal(
        al.hybrid_acquisition(predictions, embeddings, labeled, 50),
        src_hybrid_acquisition(predictions, embeddings, labeled, 50),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight", [0.0, 0.6, 1.0])
def test_hybrid_identical_with_small_blocks(dtype, weight):
    pred, emb, lab = pool(dtype=dtype, seed=int(weight * 10))
    # block of 256 rows -> the pool is processed in 12 blocks; the same indices as the reference
    ours = al.hybrid_acquisition(pred, emb, lab, 200, weight, block_bytes=1)
    np.testing.assert_array_equal(ours, src_hybrid_acquisition(pred, emb, lab, 200, weight))
    d = al.min_cosine_distance(emb, lab, block_bytes=1)
    # and distances within 4 ulp of sklearn's full product: some BLAS kernels round a block's
    # product differently from the whole one's (2 ulp seen in float32 on an AMD EPYC's OpenBLAS)
    reference = cosine_distances(emb, lab).min(axis=1)
    assert reference.dtype == dtype
    np.testing.assert_array_max_ulp(d, reference, maxulp=4)
    assert d.dtype == dtype


def test_scores_hand_computed():
    p = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    np.testing.assert_allclose(al.margin_scores(p), [1.0, 0.2, 0.8])
    np.testing.assert_allclose(al.least_confidence_scores(p), [0.5, 0.1, 0.4])
    np.testing.assert_allclose(al.normalised_uncertainty(p, "entropy")[0], 1.0, atol=1e-9)
    assert al.margin_sampling(p, 2).tolist() == [0, 2]
    assert al.least_confidence_sampling(p, 3).tolist() == [0, 2, 1]
    np.testing.assert_allclose(al.disagreement_scores(np.array([1, 0, -1]), p), [0.5, 0.1, 1.0])
    assert al.disagreement_sampling(np.array([1, 0, 0]), p, 1).tolist() == [0]


def test_core_set_picks_far_points_and_no_repeats():
    lab = np.array([[1.0, 0.0, 0.0]])
    emb = np.array([[1.0, 0.01, 0], [0, 1.0, 0], [0, 0, 1.0], [0.0, 1.0, 0.01], [-1.0, 0, 0]])
    picks = al.core_set_sampling(emb, lab, 3)
    assert picks[0] == 4  # the antipode of the labelled point
    assert len(set(picks.tolist())) == 3 and set(picks[1:]) & {1, 3} and 2 in picks


def test_batch_hybrid_avoids_near_duplicates():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 32))
    # every point appears 5 times with tiny noise: a naive top-k takes duplicates
    emb = np.repeat(base, 5, axis=0) + 1e-4 * rng.standard_normal((250, 32))
    pred = np.repeat(rng.dirichlet(np.ones(3), 50), 5, axis=0)
    lab = rng.standard_normal((20, 32))
    naive = src_hybrid_acquisition(pred, emb, lab, 20)
    assert len(set((naive // 5).tolist())) < 20
    ours = al.batch_hybrid_acquisition(pred, emb, lab, 20, 0.6)
    assert len(set((ours // 5).tolist())) == 20  # 20 distinct originals
    d = cosine_distances(emb[ours])
    assert d[np.triu_indices(20, 1)].min() >= 0.05


def test_batch_hybrid_prefilter_and_weight_one_is_uncertainty():
    pred, emb, lab = pool(n=2000)
    top = al.batch_hybrid_acquisition(pred, emb, lab, 30, 1.0, uncertainty="margin", duplicate_distance=0.0)
    np.testing.assert_array_equal(top, al.margin_sampling(pred, 30))
    pre = al.batch_hybrid_acquisition(pred, emb, lab, 30, 0.5, n_candidates=100)
    assert set(pre.tolist()) <= set(al.margin_sampling(pred, 100).tolist())
    with pytest.raises(ValueError, match="n_candidates"):
        al.batch_hybrid_acquisition(pred, emb, lab, 30, n_candidates=10)


def test_batch_hybrid_reports_when_everything_is_a_duplicate():
    emb = np.ones((10, 4)) + 1e-6 * np.arange(40).reshape(10, 4)
    pred = np.full((10, 2), 0.5)
    with pytest.raises(ValueError, match="duplicate_distance"):
        al.batch_hybrid_acquisition(pred, emb, np.eye(4)[:1], 3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p, e, lab: al.uncertainty_sampling(np.array([[0.5, np.nan]]), 1), "predictions contains NaN"),
        (lambda p, e, lab: al.uncertainty_sampling(np.array([[0.5, 0.6]]), 1), "predictions rows must sum to 1"),
        (lambda p, e, lab: al.uncertainty_sampling(np.array([[1.5, -0.5]]), 1), "negative"),
        (lambda p, e, lab: al.uncertainty_sampling(np.array([0.5, 0.5]), 1), "2-D"),
        (lambda p, e, lab: al.uncertainty_sampling(p, 11), "n_select=11 is larger than the pool"),
        (lambda p, e, lab: al.uncertainty_sampling(p, 0), "n_select must be >= 1"),
        (lambda p, e, lab: al.diversity_sampling(e, lab[:0], 2), "labeled_embeddings has no rows"),
        (lambda p, e, lab: al.diversity_sampling(e, lab[:, :3], 2), "labeled_embeddings|dimension"),
        (lambda p, e, lab: al.diversity_sampling(np.where(e > 1, np.inf, e), lab, 2), "embeddings contains NaN or inf"),
        (lambda p, e, lab: al.hybrid_acquisition(p[:5], e, lab, 2), "same pool"),
        (lambda p, e, lab: al.hybrid_acquisition(p, e, lab, 2, 1.5), "uncertainty_weight"),
        (lambda p, e, lab: al.batch_hybrid_acquisition(p, e, lab, 2, uncertainty="x"), "uncertainty must be"),
    ],
)
def test_bad_input_messages(call, match):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), 10)
    e = rng.standard_normal((10, 8)) * 3
    lab = rng.standard_normal((4, 8))
    with pytest.raises(ValueError, match=match):
        call(p, e, lab)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 60),
    c=st.integers(2, 5),
    k=st.integers(1, 60),
    seed=st.integers(0, 10_000),
    w=st.floats(0, 1),
)
def test_property_identical_to_course_text(n, c, k, seed, w):
    k = min(k, n)
    rng = np.random.default_rng(seed)
    pred = rng.dirichlet(np.ones(c) * 0.5, n)
    emb = rng.standard_normal((n, 6))
    lab = rng.standard_normal((3, 6))
    np.testing.assert_array_equal(
        al.hybrid_acquisition(pred, emb, lab, k, w), src_hybrid_acquisition(pred, emb, lab, k, w)
    )
    got = al.batch_hybrid_acquisition(pred, emb, lab, k, w, duplicate_distance=0.0)
    assert len(set(got.tolist())) == k
