"""Combined confidence: the signals, the combiner and its cross-fitting (curation.signals)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from curation.signals import (
    CombinedConfidence,
    cross_fit_confidence,
    distribution_signals,
    neighbour_signals,
    signal_features,
)


def test_distribution_signals_top_margin_entropy() -> None:
    dist = [json.dumps({"positive": 0.7, "negative": 0.2, "neutral": 0.1}), None, {"positive": 1.0}]
    out = distribution_signals(dist, ["negative", "positive", "neutral"])
    entropy = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1))
    assert out[0] == pytest.approx([0.2, 0.2 - 0.7, entropy])
    assert np.isnan(out[1]).all() and np.isnan(out[2]).all()  # no distribution; label not in it


def test_neighbour_signals_match_their_definitions() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 5
    x = np.vstack([c + rng.normal(size=(30, 3)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat(["a", "b", "c"], 30).astype(object)
    labels[5] = "b"  # one label the neighbours contradict
    out = neighbour_signals(x, labels, k=5, n_splits=5, seed=3)
    assert out[5, 0] <= 0.2 and np.median(out[:, 0]) == 1.0
    # column 1 is exactly scikit-learn's out-of-fold probability of the record's own label
    proba = cross_val_predict(LogisticRegression(max_iter=1000), x, labels.astype(str),
                              cv=StratifiedKFold(5, shuffle=True, random_state=3), method="predict_proba")  # fmt: skip
    assert out[:, 1] == pytest.approx(proba[np.arange(90), np.searchsorted(["a", "b", "c"], labels.astype(str))])
    assert out[5, 1] < 0.5 < np.median(out[:, 1])


def test_signal_features_keep_the_signals_the_frame_has() -> None:
    frame = pd.DataFrame(
        {
            "llm_label": ["positive", "negative", None],
            "confidence_logprob": [0.9, 0.6, None],
            "confidence_stated": [1.0, 0.5, None],
            "label_distribution": [json.dumps({"positive": 0.9, "negative": 0.1}), None, None],
        }
    )
    x, names = signal_features(frame)
    assert names == ["logprob", "distribution_top", "distribution_margin", "distribution_entropy", "stated"]
    assert x.shape == (3, 5) and x[0, 1] == pytest.approx(0.9) and np.isnan(x[1, 1]) and np.isnan(x[2]).all()


def test_cross_fitting_keeps_the_gold_from_scoring_itself() -> None:
    """Pure-noise signals: a combiner fitted and scored on the same gold looks informative
    (in-sample AUROC well above 0.5); cross-fitted gold scores do not (the certificate would
    otherwise accept on noise)."""
    rng = np.random.default_rng(1)
    n, d = 120, 30
    x = rng.normal(size=(n, d))
    y = rng.random(n) < 0.7
    in_sample = roc_auc_score(y, CombinedConfidence(c=10.0).fit(x, y).predict_proba(x))
    crossed = cross_fit_confidence(x, np.ones(n, dtype=bool), y, c=10.0, seed=0)
    assert in_sample > 0.8
    assert abs(roc_auc_score(y, crossed.gold_scores) - 0.5) < 0.12
    assert crossed.n_splits == 5 and len(crossed.models) == 5


def test_cross_fit_scores_other_records_with_the_mean_of_the_fold_models() -> None:
    rng = np.random.default_rng(2)
    n = 200
    signal = rng.random(n)
    correct_all = rng.random(n) < signal  # the signal is informative
    gold = np.zeros(n, dtype=bool)
    gold[:120] = True
    result = cross_fit_confidence(signal[:, None], gold, correct_all[gold], seed=4, names=["logprob"])
    mean = np.mean([m.predict_proba(signal[~gold, None]) for m in result.models], axis=0)
    assert result.scores[~gold] == pytest.approx(mean)
    assert result.scores[gold] == pytest.approx(result.gold_scores)
    assert roc_auc_score(correct_all[gold], result.gold_scores) > 0.7
    assert result.models[0].coefficients()["logprob"] > 0


def test_cross_fit_refuses_gold_without_both_outcomes() -> None:
    with pytest.raises(ValueError, match="at least 2 right and 2 wrong"):
        cross_fit_confidence(np.zeros((10, 1)), np.ones(10, dtype=bool), np.r_[np.ones(9), 0].astype(bool))
    with pytest.raises(ValueError, match="must agree"):
        cross_fit_confidence(np.zeros((10, 1)), np.ones(9, dtype=bool), np.ones(9, dtype=bool))
