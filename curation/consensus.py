"""Consensus labels from several reviewers: majority vote, Dawid-Skene EM, adjudication queue.

Pure functions on ratings arrays: ``(n_units, n_raters)`` float category codes
``0..n_categories-1`` with NaN where a reviewer did not answer (the layout of
`curation.agreement.ratings_from_long`). Nothing here talks to Argilla: the adjudication queue
is returned as data and the caller pushes it as record metadata.

Reference: Dawid & Skene (1979), "Maximum Likelihood Estimation of Observer Error-Rates Using the
EM Algorithm" (Journal of the Royal Statistical Society, Series C), fitted by EM (Dempster, Laird &
Rubin 1977).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "DawidSkeneResult",
    "MajorityResult",
    "adjudication_queue",
    "dawid_skene",
    "majority_vote",
]

UNRESOLVED = -1


@dataclass(frozen=True)
class MajorityResult:
    """Result of :func:`majority_vote`, all arrays of shape ``(n_units,)``.

    Attributes:
        labels: winning category code; ``-1`` when unresolved (no votes, or a tie the policy did
            not break).
        agreement: votes for the winner / votes cast (for an unresolved tie: the tied share;
            NaN with no votes).
        n_votes: number of ratings on the unit.
        tied: whether the top count was shared by two or more categories (before tie-breaking).
    """

    labels: np.ndarray
    agreement: np.ndarray
    n_votes: np.ndarray
    tied: np.ndarray


def _counts(data: np.ndarray, n_categories: int) -> np.ndarray:
    arr = np.asarray(data, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"data must be 2-D (units x raters), got shape {arr.shape}")
    if n_categories < 1:
        raise ValueError(f"n_categories must be >= 1, got {n_categories}")
    observed = arr[~np.isnan(arr)]
    if observed.size and (
        np.any(observed < 0) or np.any(observed >= n_categories) or np.any(observed != np.round(observed))
    ):
        raise ValueError(f"data must hold integer codes in 0..{n_categories - 1} or NaN")
    counts = np.zeros((arr.shape[0], n_categories), dtype=np.int64)
    rows, cols = np.nonzero(~np.isnan(arr))
    np.add.at(counts, (rows, arr[rows, cols].astype(np.int64)), 1)
    return counts


def majority_vote(
    data: np.ndarray,
    n_categories: int,
    *,
    tie_policy: Literal["abstain", "llm", "random"] = "abstain",
    llm_labels: np.ndarray | None = None,
    random_state: int | np.random.Generator | None = None,
) -> MajorityResult:
    """Plurality vote per unit with an explicit tie policy.

    Tie policy (a tie = two or more categories share the top count):

    * ``"abstain"`` (default): the unit stays unresolved (label -1) and goes to adjudication.
      Breaking ties silently would publish a label no majority chose.
    * ``"llm"``: take the LLM's label if it is one of the tied categories, else abstain. The
      LLM acts as one extra, lowest-priority voter.
    * ``"random"``: pick one of the tied categories uniformly, seeded by ``random_state``.

    Args:
        data: ``(n_units, n_raters)`` category codes, NaN for missing.
        n_categories: number of categories.
        tie_policy: see above.
        llm_labels: ``(n_units,)`` LLM codes (NaN/negative = none); required for ``"llm"``.
        random_state: seed for ``"random"``.

    Returns:
        :class:`MajorityResult`.

    Raises:
        ValueError: ``data`` not 2-D or holding codes outside ``0..n_categories-1``;
            ``n_categories < 1``; an unknown ``tie_policy``; ``"llm"`` without ``llm_labels`` of
            shape ``(n_units,)``.
    """
    counts = _counts(data, n_categories)
    n_votes = counts.sum(axis=1)
    top = counts.max(axis=1)
    is_top = (counts == top[:, None]) & (top[:, None] > 0)
    tied = is_top.sum(axis=1) > 1
    labels = np.where(top > 0, counts.argmax(axis=1), UNRESOLVED)
    if tie_policy == "abstain":
        labels[tied] = UNRESOLVED
    elif tie_policy == "llm":
        if llm_labels is None:
            raise ValueError("tie_policy='llm' needs llm_labels")
        llm = np.asarray(llm_labels, dtype=float)
        if llm.shape != (counts.shape[0],):
            raise ValueError(f"llm_labels must have shape ({counts.shape[0]},), got {llm.shape}")
        llm = np.where(np.isnan(llm), -1, llm).astype(int)
        valid = (llm >= 0) & (llm < n_categories)
        llm_in_tie = np.zeros_like(tied)
        llm_in_tie[valid] = is_top[np.nonzero(valid)[0], llm[valid]]
        labels[tied] = np.where(llm_in_tie[tied], llm[tied], UNRESOLVED)
    elif tie_policy == "random":
        rng = np.random.default_rng(random_state)
        for i in np.nonzero(tied)[0]:
            labels[i] = rng.choice(np.nonzero(is_top[i])[0])
    else:
        raise ValueError(f"tie_policy must be 'abstain', 'llm' or 'random', got {tie_policy!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(n_votes > 0, top / np.maximum(n_votes, 1), np.nan)
    return MajorityResult(labels=labels.astype(int), agreement=agreement, n_votes=n_votes, tied=tied)


@dataclass(frozen=True)
class DawidSkeneResult:
    """Result of :func:`dawid_skene`.

    Attributes:
        posteriors: ``(n_units, n_categories)`` P(true class | ratings); rows sum to 1. Units
            with no rating get the class priors.
        labels: ``(n_units,)`` argmax of the posteriors (-1 for units with no rating).
        confusion: ``(n_raters, n_categories, n_categories)``; ``confusion[r, t, l]`` =
            P(rater r says l | true class t), rows sum to 1.
        priors: ``(n_categories,)`` class prevalence.
        n_iter: EM iterations run.
        converged: whether the log-likelihood change fell below ``tol``.
        log_likelihood: final observed-data log-likelihood.
    """

    posteriors: np.ndarray
    labels: np.ndarray
    confusion: np.ndarray
    priors: np.ndarray
    n_iter: int
    converged: bool
    log_likelihood: float


def dawid_skene(
    data: np.ndarray,
    n_categories: int,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    smoothing: float = 0.01,
    init: Literal["majority", "random"] = "majority",
    random_state: int | np.random.Generator | None = None,
) -> DawidSkeneResult:
    """Dawid & Skene (1979) EM: true-class posteriors and one confusion matrix per reviewer.

    E-step: ``P(t | unit) ∝ prior_t * prod_r confusion[r, t, label_r]``; M-step: priors and
    confusion rows from the expected counts. Start from the soft majority vote (vote shares),
    the usual choice that converges to the "reviewers are better than chance" solution; the
    ``"random"`` start (Dirichlet, seeded) is for checking that the optimum is stable; it may
    land on a label-switched optimum (same likelihood, classes permuted), which the majority
    start avoids by tying class t to what the reviewers call t.

    Args:
        data: ``(n_units, n_raters)`` category codes, NaN for missing.
        n_categories: number of categories.
        max_iter: EM iteration cap.
        tol: stop when the log-likelihood improves by less than ``tol`` (absolute, per unit).
        smoothing: additive (Dirichlet) pseudo-count on confusion rows and priors, so a
            reviewer who never saw a class does not get probability 0 (which would veto it).
        init: ``"majority"`` or ``"random"``.
        random_state: seed for the random start.

    Returns:
        :class:`DawidSkeneResult` (``log_likelihood`` in nats).

    Raises:
        ValueError: invalid ``data`` or ``n_categories`` (as :func:`majority_vote`), ``max_iter < 1``,
            ``smoothing < 0`` or an unknown ``init``.
    """
    counts = _counts(data, n_categories)
    arr = np.asarray(data, dtype=float)
    n_units, n_raters = arr.shape
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    # one-hot ratings (units, raters, categories); zero rows for missing
    onehot = np.zeros((n_units, n_raters, n_categories))
    u, r = np.nonzero(~np.isnan(arr))
    onehot[u, r, arr[u, r].astype(int)] = 1.0
    rated = counts.sum(axis=1) > 0
    if init == "majority":
        t = counts.astype(float)
        t[~rated] = 1.0
        t /= t.sum(axis=1, keepdims=True)
    elif init == "random":
        t = np.random.default_rng(random_state).dirichlet(np.ones(n_categories), size=n_units)
    else:
        raise ValueError(f"init must be 'majority' or 'random', got {init!r}")

    prev_ll = -np.inf
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
        # M-step
        priors = t.sum(axis=0) + smoothing
        priors /= priors.sum()
        # expected[r, true, said] = sum_u t[u, true] * onehot[u, r, said]
        expected = np.einsum("ut,urs->rts", t, onehot) + smoothing
        confusion = expected / expected.sum(axis=2, keepdims=True)
        # E-step in log space: log P(t, ratings_u) = log prior_t + sum_r sum_s onehot * log conf
        log_joint = np.log(priors)[None, :] + np.einsum("urs,rts->ut", onehot, np.log(confusion))
        mx = log_joint.max(axis=1, keepdims=True)
        log_norm = mx[:, 0] + np.log(np.exp(log_joint - mx).sum(axis=1))
        t = np.exp(log_joint - log_norm[:, None])
        ll = float(log_norm.sum())
        if abs(ll - prev_ll) < tol * max(n_units, 1):
            converged = True
            break
        prev_ll = ll
    labels = np.where(rated, t.argmax(axis=1), UNRESOLVED)
    return DawidSkeneResult(
        posteriors=t,
        labels=labels.astype(int),
        confusion=confusion,
        priors=priors,
        n_iter=n_iter,
        converged=converged,
        log_likelihood=ll,
    )


def adjudication_queue(
    labels: np.ndarray,
    agreement: np.ndarray,
    n_votes: np.ndarray,
    *,
    min_agreement: float = 0.6,
    min_reviewers: int = 1,
) -> tuple[np.ndarray, list[str | None]]:
    """Which units need an adjudicator, and why.

    A unit is flagged when it is unresolved (a tie the policy did not break: ``"tie"``), when
    the winner's vote share is below ``min_agreement`` (``"low_agreement"``), or when it has
    fewer than ``min_reviewers`` votes (``"too_few_reviewers"``; units with zero votes are
    pending, not flagged). Flagged units stay out of the published set; the caller pushes them
    back to Argilla as metadata.

    Args:
        labels: ``(n_units,)`` consensus codes, -1 unresolved (``MajorityResult.labels``).
        agreement: ``(n_units,)`` winner's vote share (``MajorityResult.agreement`` or a
            Dawid-Skene posterior max).
        n_votes: ``(n_units,)`` ratings per unit.
        min_agreement: smallest acceptable winner share; with three reviewers the default 0.6
            accepts 2-of-3 and flags 1-1-1 splits.
        min_reviewers: smallest acceptable number of votes.

    Returns:
        ``(flagged (n_units,) bool, reasons list[str | None])``.

    Raises:
        ValueError: the three arrays are not 1-D of one length.
    """
    labels = np.asarray(labels)
    agreement = np.asarray(agreement, dtype=float)
    n_votes = np.asarray(n_votes)
    if not (labels.shape == agreement.shape == n_votes.shape) or labels.ndim != 1:
        raise ValueError(
            f"labels, agreement and n_votes must be 1-D of one length, got {labels.shape}, "
            f"{agreement.shape}, {n_votes.shape}"
        )
    reasons: list[str | None] = []
    for lab, agr, n in zip(labels, agreement, n_votes, strict=True):
        if n == 0:
            reasons.append(None)
        elif lab < 0:
            reasons.append("tie")
        elif n < min_reviewers:
            reasons.append("too_few_reviewers")
        elif agr < min_agreement:
            reasons.append("low_agreement")
        else:
            reasons.append(None)
    flagged = np.array([r is not None for r in reasons], dtype=bool)
    return flagged, reasons
