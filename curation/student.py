"""The student model: logistic regression on sentence embeddings, trained on the LLM's labels.

The three phases are those of the "Real-World Scenario" in Section 13.5 "LLM-Assisted Labeling &
Active Learning" (course text), where a fine-tuned DeBERTa is the student; here a multinomial
logistic regression on sentence embeddings (Sentence-BERT, Reimers & Gurevych, EMNLP 2019) stands
in for it. Training a small model on an LLM's labels is Wang et al. (2021), "Want To Reduce Labeling
Cost? GPT-3 Can Help" (Findings of EMNLP).

Phase 1, cold start: train on the LLM's labels as weak labels. Phase 2: retrain on curated
(human-reviewed) labels as they arrive. Phase 3: label the rest of the corpus with the student and
compare its accuracy with the LLM's on gold. Pure computation on numpy arrays; labels are strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression


@dataclass
class Student:
    """A fitted student: ``classes`` (sorted label names) and the sklearn model."""

    classes: np.ndarray
    model: LogisticRegression

    def predict_proba(self, embeddings: Any) -> np.ndarray:
        """``(n, n_classes)`` probabilities, columns in the order of ``classes``."""
        x = np.asarray(embeddings)
        if x.ndim != 2 or x.shape[1] != self.model.coef_.shape[1]:
            raise ValueError(f"embeddings must be (n, {self.model.coef_.shape[1]}), got {x.shape}")
        p: np.ndarray = self.model.predict_proba(x)
        if len(self.classes) == 2 and p.shape[1] == 2:
            return p
        # a class never seen in training gets probability 0 (keeps columns aligned with `classes`)
        out = np.zeros((x.shape[0], len(self.classes)))
        out[:, np.searchsorted(self.classes, self.model.classes_)] = p
        return out

    def predict(self, embeddings: Any) -> np.ndarray:
        """``(n,)`` predicted label names."""
        labels: np.ndarray = self.classes[np.argmax(self.predict_proba(embeddings), axis=1)]
        return labels


def fit_student(
    embeddings: Any,
    labels: Any,
    classes: Any | None = None,
    c: float = 1.0,
    seed: int = 0,
    sample_weight: Any | None = None,
) -> Student:
    """Fit a multinomial logistic regression on ``(n, dim)`` embeddings and ``(n,)`` labels.

    ``classes`` fixes the column order of ``predict_proba`` (default: sorted labels seen).
    Needs at least two distinct labels.
    """
    x = np.asarray(embeddings)
    y = np.asarray(labels).astype(str)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"embeddings (n, dim) and labels (n,) must match, got {x.shape} and {y.shape}")
    if np.unique(y).size < 2:
        raise ValueError("labels has a single class; the student needs at least two")
    cls = np.unique(y) if classes is None else np.asarray(sorted(map(str, classes)))
    if not np.isin(y, cls).all():
        raise ValueError(f"labels contain values outside classes {cls.tolist()}")
    model = LogisticRegression(C=c, max_iter=1000, random_state=seed)
    model.fit(x, y, sample_weight=sample_weight)
    return Student(classes=cls, model=model)


def student_vs_llm(student: Student, embeddings: Any, gold: Any, llm_labels: Any) -> dict[str, float]:
    """Accuracy on gold of the student, of the LLM, and how often the two agree; ``(n,)`` inputs."""
    gold = np.asarray(gold).astype(str)
    llm = np.asarray(llm_labels).astype(str)
    pred = student.predict(embeddings)
    return {
        "n_gold": int(gold.shape[0]),
        "student_accuracy": float(np.mean(pred == gold)),
        "llm_accuracy": float(np.mean(llm == gold)),
        "student_llm_agreement": float(np.mean(pred == llm)),
    }
