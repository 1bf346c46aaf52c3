"""Inter-annotator agreement: Cohen's and Fleiss' kappa, Krippendorff's alpha and the LLM checks.

Pure functions on numpy arrays (plus one helper that reads a long pandas table). The signatures
`cohens_kappa(labels_a, labels_b)` and `fleiss_kappa(ratings_matrix)` are the plain ones (two label
lists; a count table); every extra is keyword-only, so such calls keep working.

References: Cohen (1960), "A Coefficient of Agreement for Nominal Scales" (Educational and
Psychological Measurement) and Cohen (1968), "Weighted Kappa" (Psychological Bulletin); Fleiss
(1971), "Measuring Nominal Scale Agreement among Many Raters" (Psychological Bulletin);
Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability" (Annenberg School for
Communication); the interpretation bands of Landis & Koch (1977), "The Measurement of Observer
Agreement for Categorical Data" (Biometrics). Every coefficient is unitless: 1 perfect agreement,
0 chance, below 0 systematic disagreement.

Conventions used throughout:

* A *ratings array* is ``(n_units, n_raters)`` float, one column per reviewer, the category code
  (``0..n_categories-1``) in each cell and NaN where that reviewer did not answer. It is the
  shape Krippendorff's alpha wants (the `krippendorff` package wants the transpose).
* A *count table* is ``(n_subjects, n_categories)``: how many raters put subject i in category j.
* When chance agreement is total (every rating is the same single category), every coefficient is
  0/0. We return 1.0 there: the raters did agree on every item. sklearn and statsmodels return NaN
  in that case.
* Units with fewer than two ratings carry no information about agreement and are ignored by every
  coefficient here (Krippendorff's "pairable values").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from curation.consensus import majority_vote

__all__ = [
    "KAPPA_BANDS",
    "Ratings",
    "agreement_report",
    "cohens_kappa",
    "count_table",
    "fleiss_kappa",
    "interpret_kappa",
    "krippendorff_alpha",
    "llm_favours_reviewer",
    "llm_per_class_f1",
    "llm_vs_majority_kappa",
    "pairwise_kappas",
    "percent_agreement",
    "per_reviewer_agreement",
    "ratings_from_long",
]

# Landis & Koch (1977)'s bands: "0.81-1.00 almost perfect ... < 0.20 slight/poor".
# Read as upper-inclusive intervals: (0.80, 1] almost perfect, (0.60, 0.80] substantial, ...
KAPPA_BANDS: tuple[tuple[float, str], ...] = (
    (0.80, "almost perfect"),
    (0.60, "substantial"),
    (0.40, "moderate"),
    (0.20, "fair"),
)
POOR_BAND = "slight/poor"


def interpret_kappa(value: float) -> str:
    """Band name for a kappa or alpha value, with Landis & Koch (1977)'s cut points.

    ``> 0.80`` almost perfect, ``> 0.60`` substantial, ``> 0.40`` moderate, ``> 0.20`` fair,
    otherwise slight/poor; NaN gives ``"undefined"``.
    """
    if value is None or not np.isfinite(value):
        return "undefined"
    for lower, name in KAPPA_BANDS:
        if value > lower:
            return name
    return POOR_BAND


# --------------------------------------------------------------------------------------------
# Cohen's kappa


def _as_label_vector(values: Sequence[Any] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in arr):
        raise ValueError(f"{name} contains missing values (None/NaN); drop those items first")
    return arr


def cohens_kappa(
    labels_a: Sequence[Any] | np.ndarray,
    labels_b: Sequence[Any] | np.ndarray,
    *,
    weights: Literal["linear", "quadratic"] | None = None,
    labels: Sequence[Any] | None = None,
) -> float:
    """Cohen's kappa (Cohen 1960; weighted: Cohen 1968) between two raters who labelled the same items.

    Args:
        labels_a: ``(n_items,)`` labels of rater A (any hashable values, no missing).
        labels_b: ``(n_items,)`` labels of rater B, aligned with ``labels_a``.
        weights: None for plain (nominal) kappa; ``"linear"`` or ``"quadratic"`` for weighted
            kappa, where disagreement costs ``|i-j|`` or ``(i-j)**2`` between category ranks.
        labels: the ordered category list. Needed for weighted kappa on ordinal labels whose
            sorted order is not their meaning (e.g. ``["neg", "neu", "pos"]``); defaults to the
            sorted union of observed labels, like sklearn.

    Returns:
        kappa in ``[-1, 1]``; 1.0 when both raters used one and the same category throughout.

    Raises:
        ValueError: inputs not 1-D, of different lengths, empty or with missing values; unknown
            ``weights``; labels outside ``labels``.
    """
    a = _as_label_vector(labels_a, "labels_a")
    b = _as_label_vector(labels_b, "labels_b")
    if len(a) != len(b):
        raise ValueError(f"labels_a and labels_b differ in length: {len(a)} != {len(b)}")
    if len(a) == 0:
        raise ValueError("labels_a and labels_b are empty")
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    if labels is None:
        categories = sorted(set(a.tolist()) | set(b.tolist()))
    else:
        categories = list(labels)
        unknown = (set(a.tolist()) | set(b.tolist())) - set(categories)
        if unknown:
            raise ValueError(f"labels does not contain {sorted(map(str, unknown))}")
    index = {c: i for i, c in enumerate(categories)}
    k = len(categories)
    confusion = np.zeros((k, k), dtype=float)
    np.add.at(confusion, ([index[v] for v in a], [index[v] for v in b]), 1.0)
    return _kappa_from_confusion(confusion, weights)


def _kappa_from_confusion(confusion: np.ndarray, weights: str | None) -> float:
    n = confusion.sum()
    observed = confusion / n
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    k = confusion.shape[0]
    ranks = np.arange(k)
    if weights is None:
        disagreement = 1.0 - np.eye(k)
    elif weights == "linear":
        disagreement = np.abs(ranks[:, None] - ranks[None, :]).astype(float)
    else:
        disagreement = ((ranks[:, None] - ranks[None, :]) ** 2).astype(float)
    expected_dis = float((disagreement * expected).sum())
    observed_dis = float((disagreement * observed).sum())
    if expected_dis <= 1e-15:
        return 1.0
    return 1.0 - observed_dis / expected_dis


# --------------------------------------------------------------------------------------------
# Fleiss' kappa


def fleiss_kappa(
    ratings_matrix: np.ndarray,
    *,
    unequal: Literal["raise", "subsample"] = "raise",
    k: int | None = None,
    random_state: int | np.random.Generator | None = None,
) -> float:
    """Fleiss' kappa (Fleiss 1971) on a subjects x categories count table.

    Fleiss' formula assumes every subject was rated by the same number of raters. Real review
    rounds (and the VADER crowd data) break that, so the policy is explicit:

    * ``unequal="raise"`` (default): refuse with a ValueError that points to
      :func:`krippendorff_alpha`, which handles missing ratings without discarding any.
    * ``unequal="subsample"``: draw ``k`` ratings per subject without replacement
      (multivariate hypergeometric, seeded by ``random_state``); ``k`` defaults to the smallest
      row total. Subjects are never dropped: a ``k`` larger than some row total is an error.
      Different seeds give slightly different values; report the seed with the figure.

    Args:
        ratings_matrix: ``(n_subjects, n_categories)`` non-negative integer counts.
        unequal: policy when row totals differ (see above).
        k: raters per subject after subsampling (only with ``unequal="subsample"``).
        random_state: seed or Generator for the subsampling.

    Returns:
        kappa; 1.0 when all ratings fall in a single category.

    Raises:
        ValueError: not a 2-D table of non-negative integer counts, no subjects, unequal rater
            counts with ``unequal="raise"``, a ``k`` above some row total, ``k`` without
            ``"subsample"``, or fewer than 2 raters per subject.
    """
    counts = np.asarray(ratings_matrix)
    if counts.ndim != 2:
        raise ValueError(f"ratings_matrix must be 2-D (subjects x categories), got shape {counts.shape}")
    if counts.shape[0] == 0:
        raise ValueError("ratings_matrix has no subjects (rows)")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise ValueError("ratings_matrix must hold non-negative integer counts")
    counts = counts.astype(np.int64)
    if unequal not in ("raise", "subsample"):
        raise ValueError(f"unequal must be 'raise' or 'subsample', got {unequal!r}")
    totals = counts.sum(axis=1)
    if unequal == "subsample":
        target = int(totals.min()) if k is None else int(k)
        if target > totals.min():
            short = int(np.sum(totals < target))
            raise ValueError(
                f"k={target} exceeds the ratings of {short} subject(s) (smallest row total "
                f"{int(totals.min())}); lower k or use krippendorff_alpha"
            )
        if np.any(totals != target):
            rng = np.random.default_rng(random_state)
            counts = np.stack(
                [
                    row if t == target else rng.multivariate_hypergeometric(row, target)
                    for row, t in zip(counts, totals, strict=True)
                ]
            )
            totals = counts.sum(axis=1)
    elif k is not None:
        raise ValueError("k is only used with unequal='subsample'")
    if np.any(totals != totals[0]):
        raise ValueError(
            f"ratings_matrix rows have unequal rater counts ({int(totals.min())}..{int(totals.max())}); "
            "Fleiss' kappa assumes the same number per subject. Use krippendorff_alpha(data) on the "
            "units x raters array (handles missing ratings), or fleiss_kappa(..., unequal='subsample', "
            "random_state=SEED) to subsample every subject to the same k"
        )
    n = int(totals[0])
    if n < 2:
        raise ValueError(f"Fleiss' kappa needs at least 2 raters per subject, got {n}")
    n_subjects = counts.shape[0]
    p_j = counts.sum(axis=0) / (n_subjects * n)
    p_i = ((counts.astype(float) ** 2).sum(axis=1) - n) / (n * (n - 1))
    p_bar = float(p_i.mean())
    p_e = float((p_j**2).sum())
    if p_e >= 1.0 - 1e-15:
        return 1.0
    return (p_bar - p_e) / (1.0 - p_e)


def count_table(data: np.ndarray, n_categories: int | None = None) -> np.ndarray:
    """Turn a ratings array into a count table.

    Args:
        data: ``(n_units, n_raters)`` category codes ``0..n_categories-1``, NaN for missing.
        n_categories: number of columns; defaults to ``max code + 1``.

    Returns:
        ``(n_units, n_categories)`` int64 counts.

    Raises:
        ValueError: ``data`` not 2-D, codes that are not integers >= 0, or a code >= ``n_categories``.
    """
    arr = _as_ratings(data, "data")
    observed = arr[~np.isnan(arr)]
    if observed.size and (np.any(observed < 0) or np.any(observed != np.round(observed))):
        raise ValueError("data must hold integer category codes >= 0 (or NaN)")
    if n_categories is None:
        n_categories = int(observed.max()) + 1 if observed.size else 0
    elif observed.size and observed.max() >= n_categories:
        raise ValueError(f"data holds code {int(observed.max())} >= n_categories={n_categories}")
    counts = np.zeros((arr.shape[0], n_categories), dtype=np.int64)
    rows, cols = np.nonzero(~np.isnan(arr))
    np.add.at(counts, (rows, arr[rows, cols].astype(np.int64)), 1)
    return counts


# --------------------------------------------------------------------------------------------
# Krippendorff's alpha


def _as_ratings(data: Any, name: str) -> np.ndarray:
    arr = np.asarray(data, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (units x raters), got shape {arr.shape}")
    return arr


def krippendorff_alpha(
    data: np.ndarray,
    level: Literal["nominal", "ordinal", "interval", "ratio"] = "nominal",
) -> float:
    """Krippendorff's alpha on a units x raters array with NaN for missing ratings.

    Computed from the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's
    Alpha-Reliability"): ``alpha = 1 - (n - 1) * sum(o_ck d_ck) / sum(n_c n_k d_ck)`` over
    pairable values only (units with at least two ratings).

    Args:
        data: ``(n_units, n_raters)`` numeric values, NaN where a rater did not rate a unit. For
            nominal data any numeric codes work; for ordinal the codes' order is the scale order;
            for interval/ratio the values themselves are used. Note: the `krippendorff`
            package takes the transpose (raters x units).
        level: ``"nominal"``, ``"ordinal"``, ``"interval"`` or ``"ratio"``.

    Returns:
        alpha (1 = perfect, 0 = chance, < 0 = systematic disagreement); 1.0 when every pairable
        value is the same.

    Raises:
        ValueError: ``data`` not 2-D, an unknown ``level``, or no unit with two ratings.
    """
    arr = _as_ratings(data, "data")
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ValueError(f"level must be nominal, ordinal, interval or ratio, got {level!r}")
    present = ~np.isnan(arr)
    pairable = present.sum(axis=1) >= 2
    if not pairable.any():
        raise ValueError("data has no unit with at least two ratings; alpha is undefined")
    arr = arr[pairable]
    values, codes = np.unique(arr[~np.isnan(arr)], return_inverse=True)
    # per-unit value counts (units x values): o_ck = sum_u n_uc n_uk / (m_u - 1), minus self-pairs
    unit_counts = np.zeros((arr.shape[0], len(values)), dtype=float)
    rows = np.nonzero(~np.isnan(arr))[0]
    np.add.at(unit_counts, (rows, codes), 1.0)
    m = unit_counts.sum(axis=1)
    weighted = unit_counts / (m - 1.0)[:, None]
    coincidence = weighted.T @ unit_counts - np.diag(weighted.sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    delta = _difference(values, n_c, level)
    observed = float((coincidence * delta).sum())
    expected = float((np.outer(n_c, n_c) * delta).sum()) / (n - 1.0)
    if expected <= 1e-15:
        return 1.0
    return float(1.0 - observed / expected)


def _difference(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    """Squared difference function delta^2(c, k) between the sorted observed values."""
    if level == "nominal":
        return 1.0 - np.eye(len(values))
    if level == "interval":
        squared: np.ndarray = (values[:, None] - values[None, :]) ** 2
        return squared
    if level == "ratio":
        total = values[:, None] + values[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = ((values[:, None] - values[None, :]) / total) ** 2
        ratio: np.ndarray = np.nan_to_num(out, nan=0.0)
        return ratio
    # ordinal: (sum_{g=c..k} n_g - (n_c + n_k)/2)^2 over the rank order of the values
    cumulative = np.concatenate([[0.0], np.cumsum(n_c)])
    i, j = np.meshgrid(np.arange(len(values)), np.arange(len(values)), indexing="ij")
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    span = cumulative[hi + 1] - cumulative[lo]
    ordinal: np.ndarray = (span - (n_c[i] + n_c[j]) / 2.0) ** 2
    return ordinal


# --------------------------------------------------------------------------------------------
# Simple agreement and the reviewer / LLM checks


def percent_agreement(data: np.ndarray) -> float:
    """Mean pairwise percent agreement over units with at least two ratings.

    For each unit, the share of rater pairs that gave the same label (Fleiss' ``P_i``, which
    also works with unequal rater counts); then the mean over units.

    Args:
        data: ``(n_units, n_raters)`` category codes, NaN for missing.

    Returns:
        The mean share of agreeing pairs, in [0, 1].

    Raises:
        ValueError: no unit with at least two ratings, or invalid codes (see :func:`count_table`).
    """
    counts = count_table(data)
    m = counts.sum(axis=1)
    keep = m >= 2
    if not keep.any():
        raise ValueError("data has no unit with at least two ratings")
    counts, m = counts[keep].astype(float), m[keep].astype(float)
    return float((((counts * (counts - 1)).sum(axis=1)) / (m * (m - 1))).mean())


def _leave_one_out_majority(data: np.ndarray, rater: int, n_categories: int) -> np.ndarray:
    others = np.delete(data, rater, axis=1)
    return majority_vote(others, n_categories, tie_policy="abstain").labels


def per_reviewer_agreement(data: np.ndarray, n_categories: int, min_items: int = 1) -> list[dict[str, Any]]:
    """Each reviewer against the majority of the *other* reviewers.

    Leaving the reviewer out matters: with three reviewers, a reviewer's own vote is a third of
    the majority and would inflate their score. Units where the others tie are skipped.

    Args:
        data: ``(n_units, n_raters)`` category codes, NaN for missing.
        n_categories: number of categories.
        min_items: reviewers with fewer compared items get NaN figures.

    Returns:
        one dict per rater column: ``rater`` (column index), ``n_items`` (compared units),
        ``agreement`` (share equal to the others' majority), ``kappa`` (Cohen's, vs that majority).
    """
    arr = _as_ratings(data, "data")
    out = []
    for r in range(arr.shape[1]):
        majority = _leave_one_out_majority(arr, r, n_categories)
        mask = ~np.isnan(arr[:, r]) & (majority >= 0)
        n_items = int(mask.sum())
        if n_items < max(min_items, 1):
            out.append({"rater": r, "n_items": n_items, "agreement": float("nan"), "kappa": float("nan")})
            continue
        mine, theirs = arr[mask, r].astype(int), majority[mask]
        out.append(
            {
                "rater": r,
                "n_items": n_items,
                "agreement": float(np.mean(mine == theirs)),
                "kappa": cohens_kappa(mine, theirs),
            }
        )
    return out


def pairwise_kappas(data: np.ndarray, min_items: int = 2) -> dict[tuple[int, int], dict[str, float]]:
    """Cohen's kappa for every pair of raters on the units both rated.

    Returns ``{(i, j): {"n_items": ..., "kappa": ...}}`` for pairs with at least ``min_items``
    shared units.
    """
    arr = _as_ratings(data, "data")
    out: dict[tuple[int, int], dict[str, float]] = {}
    for i in range(arr.shape[1]):
        for j in range(i + 1, arr.shape[1]):
            mask = ~np.isnan(arr[:, i]) & ~np.isnan(arr[:, j])
            if mask.sum() >= min_items:
                out[(i, j)] = {
                    "n_items": int(mask.sum()),
                    "kappa": cohens_kappa(arr[mask, i].astype(int), arr[mask, j].astype(int)),
                }
    return out


def llm_vs_majority_kappa(llm_labels: np.ndarray, data: np.ndarray, n_categories: int) -> dict[str, Any]:
    """Cohen's kappa of the LLM against the human majority vote.

    Args:
        llm_labels: ``(n_units,)`` LLM category codes (negative or NaN = no LLM label).
        data: ``(n_units, n_raters)`` human category codes, NaN for missing.
        n_categories: number of categories.

    Returns:
        ``{"n_items", "kappa", "band", "accuracy"}`` over units with an LLM label and a
        resolved (non-tied) majority (NaN figures when there is none).

    Raises:
        ValueError: ``data`` not 2-D, or ``llm_labels`` not of shape ``(n_units,)``.
    """
    llm, majority, mask = _llm_and_majority(llm_labels, data, n_categories)
    if not mask.any():
        return {"n_items": 0, "kappa": float("nan"), "band": "undefined", "accuracy": float("nan")}
    kappa = cohens_kappa(llm[mask], majority[mask])
    return {
        "n_items": int(mask.sum()),
        "kappa": kappa,
        "band": interpret_kappa(kappa),
        "accuracy": float(np.mean(llm[mask] == majority[mask])),
    }


def _llm_and_majority(
    llm_labels: np.ndarray, data: np.ndarray, n_categories: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arr = _as_ratings(data, "data")
    llm = np.asarray(llm_labels, dtype=float)
    if llm.shape != (arr.shape[0],):
        raise ValueError(f"llm_labels must have shape ({arr.shape[0]},), got {llm.shape}")
    llm = np.where(np.isnan(llm), -1, llm).astype(int)
    majority = majority_vote(arr, n_categories, tie_policy="abstain").labels
    return llm, majority, (llm >= 0) & (majority >= 0)


def llm_per_class_f1(llm_labels: np.ndarray, data: np.ndarray, n_categories: int) -> list[dict[str, Any]]:
    """Per-class precision, recall and F1 of the LLM, taking the human majority as truth.

    Returns one dict per category code: ``category, precision, recall, f1, support`` (support =
    majority-labelled units of that class). Zero-division gives 0.0, as sklearn's default.
    """
    from sklearn.metrics import precision_recall_fscore_support

    llm, majority, mask = _llm_and_majority(llm_labels, data, n_categories)
    cats = list(range(n_categories))
    if not mask.any():
        return [
            {
                "category": c,
                "precision": float("nan"),
                "recall": float("nan"),
                "f1": float("nan"),
                "support": 0,
            }
            for c in cats
        ]
    p, r, f, s = precision_recall_fscore_support(majority[mask], llm[mask], labels=cats, zero_division=0.0)
    return [
        {
            "category": c,
            "precision": float(p[c]),
            "recall": float(r[c]),
            "f1": float(f[c]),
            "support": int(s[c]),
        }
        for c in cats
    ]


def llm_favours_reviewer(
    llm_labels: np.ndarray,
    data: np.ndarray,
    n_categories: int,
    *,
    margin: float = 0.2,
    min_items: int = 10,
) -> list[dict[str, Any]]:
    """Does the LLM mimic one reviewer rather than the majority? (An LLM can look accurate because
    it shares one annotator's habits; this checks for it.)

    For each reviewer r, on the units r rated where the *other* reviewers have a resolved
    majority: ``kappa(LLM, r)`` versus ``kappa(LLM, majority of the others)``. The reviewer is
    flagged when the first exceeds the second by at least ``margin``: the LLM then agrees with r
    far more than with the rest of the team, which suggests it shares r's biases (or r copies the
    suggestion) rather than tracking the ground truth.

    Args:
        llm_labels: ``(n_units,)`` LLM category codes (negative or NaN = none).
        data: ``(n_units, n_raters)`` human category codes, NaN for missing.
        n_categories: number of categories.
        margin: kappa gap that raises the flag.
        min_items: reviewers with fewer comparable units are reported but never flagged.

    Returns:
        one dict per rater column: ``rater, n_items, kappa_llm_reviewer, kappa_llm_others,
        gap, flagged``.

    Raises:
        ValueError: ``data`` not 2-D, or ``llm_labels`` not of shape ``(n_units,)``.
    """
    arr = _as_ratings(data, "data")
    llm = np.asarray(llm_labels, dtype=float)
    if llm.shape != (arr.shape[0],):
        raise ValueError(f"llm_labels must have shape ({arr.shape[0]},), got {llm.shape}")
    llm = np.where(np.isnan(llm), -1, llm).astype(int)
    out = []
    for r in range(arr.shape[1]):
        others = _leave_one_out_majority(arr, r, n_categories)
        mask = ~np.isnan(arr[:, r]) & (others >= 0) & (llm >= 0)
        n_items = int(mask.sum())
        if n_items == 0:
            k_rev = k_oth = float("nan")
        else:
            k_rev = cohens_kappa(llm[mask], arr[mask, r].astype(int))
            k_oth = cohens_kappa(llm[mask], others[mask])
        gap = k_rev - k_oth
        out.append(
            {
                "rater": r,
                "n_items": n_items,
                "kappa_llm_reviewer": k_rev,
                "kappa_llm_others": k_oth,
                "gap": gap,
                "flagged": bool(n_items >= min_items and np.isfinite(gap) and gap >= margin),
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# From the long responses table


@dataclass(frozen=True)
class Ratings:
    """A ratings array with its row, column and code labels.

    Attributes:
        data: ``(n_units, n_raters)`` float category codes, NaN for missing.
        record_ids: ``(n_units,)`` record id of each row.
        users: ``(n_raters,)`` reviewer of each column.
        categories: code -> label (``categories[code]``).
    """

    data: np.ndarray
    record_ids: list[Any]
    users: list[Any]
    categories: list[Any]

    def encode(self, labels: Sequence[Any]) -> np.ndarray:
        """Codes for ``labels`` (NaN for None/unknown), e.g. the LLM labels of ``record_ids``."""
        index = {c: i for i, c in enumerate(self.categories)}
        return np.array([index.get(v, np.nan) if v is not None else np.nan for v in labels], dtype=float)


def llm_agreement_by_review_mode(agree: Any, blind: Any, confidence_level: float = 0.95) -> dict[str, Any]:
    """LLM-vs-reviewer agreement on records reviewed with the suggestion shown vs hidden.

    Reviewers shown a pre-filled label tend to keep it (anchoring, automation bias), so agreement
    measured on assisted reviews overstates the LLM; a random share of the review queue reviewed
    blind gives the unbiased figure, and the difference estimates the anchoring effect.

    Args:
        agree: ``(n,)`` bool, the reviewers' final label equals the LLM label, one per reviewed record.
        blind: ``(n,)`` bool, the record was reviewed blind (no suggestion, score or reasoning);
            blind records must be a random share of the same queue as the assisted ones.
        confidence_level: of the two-sided intervals.

    Returns:
        ``{"assisted": {...}, "blind": {...}, "difference": {...}, "method": ...}``: per mode
        ``n``, ``agree``, ``share`` and its Wilson interval ``low``/``high`` (None without
        records); ``difference`` = assisted - blind share with Newcombe's hybrid score interval
        (:func:`curation.estimation.difference_interval`), None unless both modes have records.

    Raises:
        ValueError: ``agree`` and ``blind`` not 1-D of one length.
    """
    from curation.estimation import binomial_interval, difference_interval

    a, b = np.asarray(agree, dtype=bool), np.asarray(blind, dtype=bool)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"agree and blind must be 1-D of one length, got {a.shape} and {b.shape}")
    out: dict[str, Any] = {}
    counts = {}
    for mode, mask in (("assisted", ~b), ("blind", b)):
        n, k = int(mask.sum()), int(a[mask].sum())
        counts[mode] = (k, n)
        low, high = binomial_interval(k, n, confidence_level=confidence_level) if n else (None, None)
        out[mode] = {"n": n, "agree": k, "share": k / n if n else None, "low": low, "high": high}
    if counts["assisted"][1] and counts["blind"][1]:
        d, low, high = difference_interval(*counts["assisted"], *counts["blind"], confidence_level=confidence_level)
        out["difference"] = {"estimate": d, "low": low, "high": high}
    else:
        out["difference"] = None
    out["confidence_level"] = confidence_level
    out["method"] = "Wilson intervals; difference: Newcombe (1998) hybrid score interval"
    return out


def ratings_from_long(
    responses: Any,
    categories: Sequence[Any] | None = None,
    *,
    record_col: str = "record_id",
    user_col: str = "user",
    label_col: str = "label",
    time_col: str | None = "updated_at",
) -> Ratings:
    """Pivot a long responses table (one row per record x reviewer) into a :class:`Ratings`.

    Args:
        responses: pandas DataFrame with ``record_col, user_col, label_col`` (the
            ``responses.parquet`` layout). A reviewer answering a record twice keeps the latest
            answer by ``time_col`` (or the last row if that column is absent).
        categories: the question's labels in their order (their order is the ordinal scale);
            defaults to the sorted observed labels. A label outside ``categories`` is an error.

    Returns:
        Ratings with rows in first-seen record order and columns in sorted user order.

    Raises:
        TypeError: ``responses`` is not a pandas DataFrame.
        ValueError: a column is missing, or a label is not in ``categories``.
    """
    import pandas as pd

    if not isinstance(responses, pd.DataFrame):
        raise TypeError(f"responses must be a pandas DataFrame, got {type(responses).__name__}")
    missing = [c for c in (record_col, user_col, label_col) if c not in responses.columns]
    if missing:
        raise ValueError(
            f"responses lacks column(s) {missing}; expected {record_col}, {user_col}, {label_col} "
            f"(the responses.parquet layout), got {list(responses.columns)}"
        )
    df = responses[responses[label_col].notna()]
    if time_col and time_col in df.columns:
        df = df.sort_values(time_col, kind="stable")
    df = df.drop_duplicates([record_col, user_col], keep="last")
    observed = sorted(df[label_col].unique().tolist())
    if categories is None:
        categories = observed
    categories = list(categories)
    unknown = sorted(set(observed) - set(categories))
    if unknown:
        raise ValueError(
            f"responses column {label_col!r} has label(s) {unknown} not in the question's labels "
            f"{categories}; fix the task config labels or drop those responses"
        )
    record_ids = list(dict.fromkeys(responses[record_col].tolist()))
    users = sorted(df[user_col].unique().tolist(), key=str)
    row = {r: i for i, r in enumerate(record_ids)}
    col = {u: j for j, u in enumerate(users)}
    code = {c: i for i, c in enumerate(categories)}
    data = np.full((len(record_ids), len(users)), np.nan)
    data[df[record_col].map(row).to_numpy(), df[user_col].map(col).to_numpy()] = df[label_col].map(code).to_numpy()
    return Ratings(data=data, record_ids=record_ids, users=users, categories=categories)


def agreement_report(
    ratings: Ratings,
    llm_labels: Mapping[Any, Any] | None = None,
    *,
    fleiss_seed: int = 0,
    favour_margin: float = 0.2,
    min_items: int = 10,
) -> dict[str, Any]:
    """All agreement figures for one review round, as a JSON-serialisable dict.

    Args:
        ratings: from :func:`ratings_from_long`.
        llm_labels: record id -> LLM label (the suggestion); records absent get no LLM figures.
        fleiss_seed: seed for Fleiss' subsampling when reviewers per record differ.
        favour_margin: kappa gap for :func:`llm_favours_reviewer`.
        min_items: minimum shared items before a reviewer figure is flagged or reported.

    Fleiss' kappa here uses the units with at least two ratings, subsampled to the smallest
    number of ratings among them (``fleiss_k`` and ``fleiss_seed`` are in the output); alpha
    uses every rating.
    """
    data = ratings.data
    k = len(ratings.categories)
    n_per_unit = (~np.isnan(data)).sum(axis=1)
    multi = n_per_unit >= 2
    report: dict[str, Any] = {
        "categories": list(map(str, ratings.categories)),
        "n_records": int(len(ratings.record_ids)),
        "n_reviewers": int(len(ratings.users)),
        "n_responses": int(n_per_unit.sum()),
        "n_records_multi_reviewed": int(multi.sum()),
        "reviewers_per_record": {
            str(int(c)): int(n) for c, n in zip(*np.unique(n_per_unit, return_counts=True), strict=True)
        },
        "bands": {name: f"> {lo:.2f}" for lo, name in KAPPA_BANDS} | {POOR_BAND: "<= 0.20"},
    }
    if multi.any():
        sub = data[multi]
        counts = count_table(sub, k)
        fk = int(counts.sum(axis=1).min())
        fleiss = fleiss_kappa(counts, unequal="subsample", k=fk, random_state=fleiss_seed)
        alpha = krippendorff_alpha(sub, "nominal")
        report |= {
            "percent_agreement": percent_agreement(sub),
            "fleiss_kappa": fleiss,
            "fleiss_band": interpret_kappa(fleiss),
            "fleiss_k": fk,
            "fleiss_seed": fleiss_seed,
            "fleiss_equal_raters": bool(np.all(counts.sum(axis=1) == fk)),
            "krippendorff_alpha_nominal": alpha,
            "krippendorff_alpha_band": interpret_kappa(alpha),
        }
        if k > 2:
            report["krippendorff_alpha_ordinal"] = krippendorff_alpha(sub, "ordinal")
    else:
        report |= {
            "percent_agreement": None,
            "fleiss_kappa": None,
            "krippendorff_alpha_nominal": None,
            "note": "no record has two or more submitted responses; agreement is undefined",
        }
    report["pairwise_kappa"] = [
        {"a": str(ratings.users[i]), "b": str(ratings.users[j]), **v, "band": interpret_kappa(v["kappa"])}
        for (i, j), v in pairwise_kappas(data).items()
    ]
    report["per_reviewer"] = [
        {"user": str(ratings.users[d["rater"]]), **{k_: v for k_, v in d.items() if k_ != "rater"}}
        for d in per_reviewer_agreement(data, k, min_items=1)
    ]
    if llm_labels is not None:
        llm = ratings.encode([llm_labels.get(r) for r in ratings.record_ids])
        report["llm_vs_majority"] = llm_vs_majority_kappa(llm, data, k)
        report["llm_per_class"] = [
            {**d, "category": str(ratings.categories[d["category"]])} for d in llm_per_class_f1(llm, data, k)
        ]
        favours = llm_favours_reviewer(llm, data, k, margin=favour_margin, min_items=min_items)
        report["llm_favours_reviewer"] = [
            {"user": str(ratings.users[d["rater"]]), **{k_: v for k_, v in d.items() if k_ != "rater"}} for d in favours
        ]
        report["llm_favours_reviewer_flagged"] = [d["user"] for d in report["llm_favours_reviewer"] if d["flagged"]]
    safe: dict[str, Any] = _json_safe(report)
    return safe


def _json_safe(obj: Any) -> Any:
    """NaN -> None and numpy scalars -> Python, so json.dumps gives strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
