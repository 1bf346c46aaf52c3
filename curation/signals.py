"""Combined confidence: one score learned on gold from every signal a pre-label has.

The LLM's own label probability is one signal of whether its label is right; others cost nothing
more to compute: the full distribution over the label set at the label's first token (its top
share, the margin to the runner-up, its entropy), the confidence the model states, the agreement of
k sampled answers, and, with sentence embeddings, how the LLM's label sits among similar texts:
the share of the k nearest neighbours the LLM gave the same label (kNN label agreement) and the
probability a student trained on the LLM's labels of the *other* records gives it (LLM-student
agreement, out of fold). None of these reads a gold label.

:class:`CombinedConfidence` is a logistic regression of "the LLM's label is right" on those
features (median imputation of a missing signal, standardised; scikit-learn), the stacking of
confidence signals of Guo et al. (2017)-style post-hoc calibration generalised to several inputs.
Fitting it on the gold that also certifies the threshold would let the scores learn the gold's own
answers, so :func:`cross_fit_confidence` cross-fits (Chernozhukov et al. 2018, "Double/debiased
machine learning", Econometrics Journal): each gold record is scored by a model fitted on the other
folds, every other record by the average of the fold models. The certificate
(:func:`curation.certify.certify_threshold`) then sees gold scores that never saw their own label;
the fold models differ slightly from their average, so the guarantee is checked by simulation
against a known truth in ``benchmarks/certified_coverage.py`` (violation rate per scenario).

Pure computation on numpy arrays and pandas frames; no client.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# what each feature is, in column order of :func:`signal_features`
SIGNALS: dict[str, str] = {
    "logprob": "probability of the label's tokens (confidence_logprob)",
    "distribution_top": "the chosen label's share of the label distribution at the first token",
    "distribution_margin": "chosen label's share minus the largest other label's share",
    "distribution_entropy": "entropy of the label distribution (nats)",
    "stated": "the confidence the model writes in its answer",
    "consistency": "share of sampled answers agreeing with the main one",
    "knn_agreement": "share of the k nearest texts (embeddings) the LLM labelled the same",
    "student_agreement": "out-of-fold probability of the LLM's label from a student trained on the LLM's labels",
}
EMBEDDING_SIGNALS = ("knn_agreement", "student_agreement")


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    values: np.ndarray = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
    return values


def distribution_signals(label_distribution: Sequence[Any], labels: Sequence[Any]) -> np.ndarray:
    """``(n, 3)``: top share, margin and entropy of each record's label distribution.

    ``label_distribution``: per record a JSON object (label -> probability) or None; ``labels``:
    the LLM's label per record. A record without a distribution, or whose label is not in it, is NaN.
    """
    out = np.full((len(labels), 3), np.nan)
    for i, (raw, label) in enumerate(zip(label_distribution, labels, strict=True)):
        if raw is None or (isinstance(raw, float) and np.isnan(raw)):
            continue
        dist = json.loads(raw) if isinstance(raw, str) else dict(raw)
        if label not in dist:
            continue
        p = np.clip(np.asarray(list(dist.values()), dtype=np.float64), 0.0, 1.0)
        top = float(dist[label])
        others = [float(v) for k, v in dist.items() if k != label]
        nonzero = p[p > 0]
        out[i] = (top, top - (max(others) if others else 0.0), float(-(nonzero * np.log(nonzero)).sum()))
    return out


def neighbour_signals(
    embeddings: Any, llm_labels: Sequence[Any], k: int = 10, n_splits: int = 5, seed: int = 0
) -> np.ndarray:
    """``(n, 2)``: kNN label agreement and out-of-fold LLM-student agreement.

    Args:
        embeddings: ``(n, dim)`` L2-normalised sentence embeddings of the records.
        llm_labels: ``(n,)`` the LLM's label per record (None for a failed record).
        k: neighbours per record (cosine similarity, the record itself excluded).
        n_splits: folds of the student (logistic regression on the embeddings, trained on the LLM's
            labels of the other folds: :func:`sklearn.model_selection.cross_val_predict`).
        seed: fold assignment.

    Returns: column 0 the share of the k nearest records with the same LLM label; column 1 the
    student's probability of the record's LLM label. NaN for a record without a label; column 1
    is NaN when fewer than two labels or too few records per label exist.

    Raises:
        ValueError: ``embeddings`` not 2-D or of another length than ``llm_labels``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray([None if v is None or v != v else str(v) for v in llm_labels], dtype=object)
    if x.ndim != 2 or x.shape[0] != labels.shape[0]:
        raise ValueError(f"embeddings must be (n, dim) with n = {labels.shape[0]}, got {x.shape}")
    out = np.full((labels.shape[0], 2), np.nan)
    has = np.flatnonzero(labels != None)  # noqa: E711 (elementwise on an object array)
    if has.size < 3:
        return out
    xs, ys = x[has], labels[has].astype(str)
    neighbours = min(k, has.size - 1)
    index = NearestNeighbors(n_neighbors=neighbours + 1, metric="cosine").fit(xs)
    _, near = index.kneighbors(xs)
    near = near[:, 1:]  # the record itself comes first
    out[has, 0] = (ys[near] == ys[:, None]).mean(axis=1)
    classes, counts = np.unique(ys, return_counts=True)
    folds = min(n_splits, int(counts.min())) if classes.size >= 2 else 0
    if folds >= 2:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        proba = cross_val_predict(LogisticRegression(max_iter=1000), xs, ys, cv=splitter, method="predict_proba")
        out[has, 1] = proba[np.arange(ys.size), np.searchsorted(classes, ys)]
    return out


def signal_features(
    prelabels: pd.DataFrame,
    embeddings: Any | None = None,
    *,
    k: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """The signals of every pre-label as a feature matrix.

    Args:
        prelabels: a ``prelabels.parquet`` frame (``llm_label`` and any of ``confidence_logprob``,
            ``confidence_stated``, ``confidence_consistency``, ``label_distribution``).
        embeddings: optional ``(n, dim)`` embeddings of the same rows, for the neighbour signals.
        k, seed: see :func:`neighbour_signals`.

    Returns: ``(X, names)``: ``X`` is ``(n, len(names))`` float64 with NaN where a signal is
    missing for a record; ``names`` are keys of :data:`SIGNALS`, only those the frame has for at
    least one record.
    """
    labels = prelabels["llm_label"].tolist()
    columns = {
        "logprob": _column(prelabels, "confidence_logprob"),
        "stated": _column(prelabels, "confidence_stated"),
        "consistency": _column(prelabels, "confidence_consistency"),
    }
    if "label_distribution" in prelabels.columns:
        dist = distribution_signals(prelabels["label_distribution"].tolist(), labels)
        for j, name in enumerate(("distribution_top", "distribution_margin", "distribution_entropy")):
            columns[name] = dist[:, j]
    if embeddings is not None:
        near = neighbour_signals(embeddings, labels, k=k, seed=seed)
        columns |= {"knn_agreement": near[:, 0], "student_agreement": near[:, 1]}
    names = [name for name in SIGNALS if name in columns and np.isfinite(columns[name]).any()]
    x = np.column_stack([columns[name] for name in names]) if names else np.empty((len(prelabels), 0))
    return x, names


@dataclass
class CombinedConfidence:
    """Logistic regression of "the LLM's label is right" on the signals (scikit-learn pipeline:
    median imputation, standardisation, L2-penalised logistic regression with inverse penalty
    ``c``, default 0.05: strong, since a gold slice is small).

    ``fit(X, y)`` with ``X`` ``(n, d)`` and ``y`` ``(n,)`` bool; ``predict_proba(X)`` gives ``(m,)``
    probabilities that the label is right. A constant signal is dropped by the imputer/scaler's
    handling (zero variance scales to 0)."""

    c: float = 0.05
    model: Any = None
    names: list[str] = field(default_factory=list)

    def fit(self, x: Any, correct: Any, names: Sequence[str] | None = None) -> CombinedConfidence:
        """Fit on gold: ``x`` ``(n, d)``, ``correct`` ``(n,)`` bool with both values present.

        Raises ValueError when ``correct`` has a single value or the shapes differ."""
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        xs = np.asarray(x, dtype=np.float64)
        y = np.asarray(correct, dtype=bool)
        if xs.ndim != 2 or xs.shape[0] != y.shape[0]:
            raise ValueError(f"x must be (n, d) with n = {y.shape[0]}, got {xs.shape}")
        if y.all() or not y.any():
            raise ValueError("correct needs both right and wrong labels to fit a combined confidence")
        self.model = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=self.c, max_iter=1000),
        ).fit(xs, y)
        self.names = list(names) if names is not None else [f"x{j}" for j in range(xs.shape[1])]
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        """``(m,)`` probability that each record's LLM label is right."""
        if self.model is None:
            raise ValueError("CombinedConfidence is not fitted: call fit first")
        proba: np.ndarray = self.model.predict_proba(np.asarray(x, dtype=np.float64))[:, 1]
        return proba

    def coefficients(self) -> dict[str, float]:
        """Standardised coefficient per signal (its weight in the combination)."""
        return dict(zip(self.names, self.model[-1].coef_[0].tolist(), strict=True))


@dataclass
class CrossFit:
    """What :func:`cross_fit_confidence` returns.

    ``gold_scores``: ``(n_gold,)`` out-of-fold scores of the gold records; ``scores``: ``(n,)``
    scores of every record (gold rows: their out-of-fold score; others: the mean of the fold
    models); ``models``: the fold models; ``n_splits``."""

    gold_scores: np.ndarray
    scores: np.ndarray
    models: list[CombinedConfidence]
    n_splits: int


def cross_fit_confidence(
    x: Any, gold_mask: Any, correct: Any, *, n_splits: int = 5, c: float = 0.05, seed: int = 0,
    names: Sequence[str] | None = None,
) -> CrossFit:  # fmt: skip
    """Cross-fitted combined confidence: gold scores from models that never saw their label.

    Args:
        x: ``(n, d)`` signals of every record (:func:`signal_features`).
        gold_mask: ``(n,)`` bool, the records with a gold label.
        correct: ``(n_gold,)`` bool, LLM label == gold label, in the order of the gold rows.
        n_splits: folds (stratified on ``correct``; fewer when a class has fewer records).
        c: inverse L2 penalty of the logistic regression (default 0.05, strong: on 100-300
            gold records a weaker penalty ranked worse out of fold than the log-prob alone).
        seed: fold assignment.

    Returns: :class:`CrossFit`.

    Raises:
        ValueError: shapes that differ, fewer than 2 right or 2 wrong gold labels.
    """
    from sklearn.model_selection import StratifiedKFold

    xs = np.asarray(x, dtype=np.float64)
    mask = np.asarray(gold_mask, dtype=bool)
    y = np.asarray(correct, dtype=bool)
    if xs.ndim != 2 or mask.shape != (xs.shape[0],) or y.shape != (int(mask.sum()),):
        raise ValueError(
            f"x (n, d), gold_mask (n,) and correct (n_gold,) must agree: got {xs.shape}, {mask.shape}, {y.shape}"
        )
    smallest = int(min(y.sum(), (~y).sum()))
    if smallest < 2:
        raise ValueError("cross-fitting needs at least 2 right and 2 wrong gold labels")
    folds = min(n_splits, smallest)
    gold_x = xs[mask]
    gold_scores = np.empty(y.shape[0])
    models = []
    for fit_rows, score_rows in StratifiedKFold(folds, shuffle=True, random_state=seed).split(gold_x, y):
        model = CombinedConfidence(c=c).fit(gold_x[fit_rows], y[fit_rows], names)
        gold_scores[score_rows] = model.predict_proba(gold_x[score_rows])
        models.append(model)
    scores = np.mean([m.predict_proba(xs) for m in models], axis=0)
    scores[mask] = gold_scores
    return CrossFit(gold_scores=gold_scores, scores=scores, models=models, n_splits=folds)
