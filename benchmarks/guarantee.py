"""Simulation benchmark of the auto-accept guarantee: violation rate and coverage, old vs new.

The statement under test: "with probability >= confidence_level over the gold draw, the precision of
the records auto-accepted at this threshold, in the population the gold was drawn from, is >=
target_precision". For every scenario (a population with a known truth, a gold size, a target) the
benchmark draws ``--draws`` gold sets (uniformly with replacement from the population), runs every
method on each, and measures in the same run:

* ``violation``: share of draws where a threshold was chosen AND the true precision of the
  population's records at or above it is below the target (with its Monte-Carlo standard error
  ``sqrt(v (1 - v) / draws)``); the stated level allows ``1 - confidence_level`` = 5%;
* ``acceptance``: share of draws that auto-accept anything;
* ``coverage``: mean share of the population auto-accepted (0 when nothing is), and
  ``oracle_coverage``, the largest coverage whose true precision reaches the target.

Populations (``population()``): synthetic ones of 1,000,000 records whose correctness is drawn once
(the truth is then exact: the population's own precision above each threshold), and the real
pre-label files with their gold (300 records each; gold is resampled with replacement):

* ``flat``: score ~ U(0.5, 1), P(correct) = 0.82 whatever the score (no target >= 0.85 is reachable:
  every acceptance is a violation);
* ``rising``: score ~ U(0, 1), P(correct) = 0.70 + 0.25 score (0.95 is unreachable by a hair);
* ``calibrated``: score ~ U(0.5, 1), P(correct) = score;
* ``coarse``: stated confidences in {0.5, ..., 1.0} (ties, as small LLMs state them),
  over-confident, with precision just under the targets at some thresholds;
* ``rt_logprob``, ``rt_stated``, ``cf_logprob``, ``cf_stated``: qwen2.5-1.5B pre-labels of Rotten
  Tomatoes / CrowdFlower tweets (``benchmarks/results/prelabels_qwen_*.parquet``), log-prob or
  stated confidence, correct = ``llm_label == gold_label``.

Methods (all on the raw confidence unless named ``*_isotonic``):

* ``fixed_sequence`` (the new default, :func:`curation.certify.certify_threshold` with the run's
  scores as ``pool_scores``): grid from the population's scores, exact binomial tests strict to
  loose, stop at the first failure;
* ``fixed_sequence_gold_grid``: the same with the grid taken from the gold's own scores (no pool);
* ``scan_wilson``: :func:`curation.routing.choose_threshold`, the per-threshold scan (not
  family-wise valid), as ``labeltriage route`` uses it today;
* ``fs_top20``: a plain fixed sequence starting at the top 20 gold records, one record per step;
* ``bonferroni10``: ten gold-count sizes (10%, 20%, ... of the gold), each at level delta / 10.

The product's calibrator step (``--calibrated-families``): an isotonic calibrator is fitted on all the
gold of each draw (``curation.calibration.fit_calibrator``) and the threshold is chosen on the
calibrated gold confidences (``scan_wilson_isotonic``, what ``route`` does today;
``fixed_sequence_isotonic`` the new test on them, grid from the gold) next to the raw-score ones.

Usage: ``.venv/bin/python benchmarks/guarantee.py [--draws 2000] [--sizes 30 60 120 400 1000]``
(run it under ``flock /tmp/labeltriage-heavy.lock`` on a shared machine). Writes
``benchmarks/results/guarantee.json`` (strict JSON) and ``guarantee.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curation.calibration import fit_calibrator  # noqa: E402
from curation.certify import (  # noqa: E402
    DEFAULT_START_ERRORS,
    DEFAULT_STEP,
    certify_threshold,
    counts_above,
    default_start,
    fixed_sequence,
    threshold_grid,
)
from curation.routing import choose_threshold  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SYNTHETIC = ("flat", "rising", "calibrated", "coarse")
REAL = {
    "rt_logprob": ("prelabels_qwen_rotten_tomatoes.parquet", "confidence_logprob"),
    "rt_stated": ("prelabels_qwen_rotten_tomatoes.parquet", "confidence_stated"),
    "cf_logprob": ("prelabels_qwen_crowdflower_tweets.parquet", "confidence_logprob"),
    "cf_stated": ("prelabels_qwen_crowdflower_tweets.parquet", "confidence_stated"),
}
COARSE_VALUES = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
COARSE_SHARES = np.array([0.05, 0.05, 0.10, 0.20, 0.35, 0.25])
COARSE_ACCURACY = np.array([0.50, 0.62, 0.72, 0.82, 0.90, 0.96])
POPULATION_SIZE = 1_000_000


@dataclass
class Population:
    """A population with its truth: ``scores`` ``(M,)``, ``correct`` ``(M,)`` bool."""

    name: str
    scores: np.ndarray
    correct: np.ndarray
    description: str

    def __post_init__(self) -> None:
        order = np.argsort(-self.scores, kind="stable")
        self._desc = self.scores[order]
        self._asc = self._desc[::-1].copy()
        self._cum = np.r_[0, np.cumsum(self.correct[order])]
        # distinct thresholds (descending) with their true precision and coverage
        self.values, counts = np.unique(self.scores, return_counts=True)
        self.values = self.values[::-1]
        n_above = np.cumsum(counts[::-1])
        self.value_precision = self._cum[n_above] / n_above
        self.value_coverage = n_above / self.scores.shape[0]

    def n_above(self, t: Any) -> np.ndarray:
        return self.scores.shape[0] - np.searchsorted(self._asc, np.asarray(t, dtype=np.float64), side="left")

    def precision_above(self, t: Any) -> tuple[np.ndarray, np.ndarray]:
        """True ``(precision, coverage)`` of the records with score >= t (precision 1.0 when none)."""
        k = self.n_above(t)
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = np.where(k > 0, self._cum[k] / np.maximum(k, 1), 1.0)
        return prec, k / self.scores.shape[0]

    def oracle(self, target: float) -> dict[str, Any]:
        ok = np.nonzero(self.value_precision >= target)[0]
        if ok.size == 0:
            return {"truth_allows": False, "oracle_coverage": 0.0, "oracle_threshold": None}
        # the loosest threshold whose true precision reaches the target (precision need not be monotone)
        i = int(ok[-1])
        return {
            "truth_allows": True,
            "oracle_coverage": float(self.value_coverage[i]),
            "oracle_threshold": float(self.values[i]),
        }


def population(name: str, seed: int = 12345) -> Population:
    """Build a named population (see the module docstring)."""
    rng = np.random.default_rng(seed)
    m = POPULATION_SIZE
    if name == "flat":
        s = rng.uniform(0.5, 1.0, m)
        return Population(name, s, rng.random(m) < 0.82, "score ~ U(0.5,1), P(correct) = 0.82")
    if name == "rising":
        s = rng.uniform(0.0, 1.0, m)
        return Population(name, s, rng.random(m) < 0.70 + 0.25 * s, "score ~ U(0,1), P(correct) = 0.70 + 0.25 score")
    if name == "calibrated":
        s = rng.uniform(0.5, 1.0, m)
        return Population(name, s, rng.random(m) < s, "score ~ U(0.5,1), P(correct) = score")
    if name == "coarse":
        i = rng.choice(COARSE_VALUES.shape[0], size=m, p=COARSE_SHARES)
        return Population(
            name,
            COARSE_VALUES[i],
            rng.random(m) < COARSE_ACCURACY[i],
            f"stated score in {COARSE_VALUES.tolist()} with shares {COARSE_SHARES.tolist()}, "
            f"P(correct) {COARSE_ACCURACY.tolist()}",
        )
    if name in REAL:
        import pandas as pd

        fname, col = REAL[name]
        df = pd.read_parquet(RESULTS / fname)
        df = df[(df["status"].astype(str) == "ok") & df[col].notna() & df["gold_label"].notna()]
        return Population(
            name,
            df[col].to_numpy(dtype=np.float64),
            (df["llm_label"].astype(str) == df["gold_label"].astype(str)).to_numpy(),
            f"{fname} ({len(df)} records), score = {col}, correct = llm_label == gold_label",
        )
    raise ValueError(f"unknown population {name!r}")


def counts_at(gold_scores: np.ndarray, gold_correct: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`curation.certify.counts_above` over draws: ``(D, n)`` gold, ``(J,)`` thresholds
    (descending) -> ``(n_accepted (D, J), n_correct (D, J))``."""
    d, _ = gold_scores.shape
    j = thresholds.shape[0]
    # first candidate index at which each record is accepted = number of thresholds above its score
    first = j - np.searchsorted(thresholds[::-1], gold_scores, side="right")
    flat = (np.arange(d)[:, None] * (j + 1) + first).ravel()
    n_acc = np.bincount(flat, minlength=d * (j + 1)).reshape(d, j + 1).cumsum(axis=1)[:, :j]
    n_cor = np.bincount(flat, weights=gold_correct.ravel().astype(np.float64), minlength=d * (j + 1))
    n_cor = n_cor.reshape(d, j + 1).cumsum(axis=1)[:, :j]
    return n_acc.astype(np.int64), np.rint(n_cor).astype(np.int64)
