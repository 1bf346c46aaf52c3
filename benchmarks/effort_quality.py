"""Effort vs quality: how much human review the certified auto-accept saves, and what it costs in accuracy.

What is simulated, with the product's own functions (issue 17, "Effort-vs-quality table"): one run of
``N`` pre-labelled records, of which ``n_gold`` (drawn uniformly at random without replacement) have
a gold label; the other ``N - n_gold`` records (the *pool*) are what gets published. Per draw:

1. the auto-accept threshold is certified as ``labeltriage route`` does by default:
   :func:`curation.certify.certify_threshold` (fixed-sequence exact binomial tests) on the *raw*
   confidence of the gold records, ``pool_scores`` = the raw confidences of every record of the run
   (gold included, as ``route`` passes them), at ``--targets`` and ``--confidence-level``;
2. the pool is routed with :func:`curation.routing.route_records` at that threshold with the default
   config's ``thresholds.spot_check_rate`` (``datasets_config/sentiment.yaml``: 5%): records at or
   above it are auto-accepted, of which ``ceil(rate * n_auto)`` (drawn at random) are
   ``spot_check``, the blind audit; the rest go to human review. (``route`` routes the gold records
   ``gold``: published with their gold label, never auto-accepted; here the published set measured
   is the pool, whose labels are the unknown ones.)
3. a *human* labels every reviewed and every audited record: for Rotten Tomatoes and CrowdFlower the
   human's label is the gold label (a perfect reviewer: every reviewed label is right by
   construction); for the VADER crowd it is a real crowd rating (see below);
4. published labels: the LLM's on ``auto_accept`` records, the human's on ``spot_check`` and
   ``human_review`` records;
5. the accuracy of the LLM labels published without review is estimated exactly as
   :func:`curation.publish.published_label_accuracy` does: :func:`curation.estimation.published_accuracy`
   over the auto-accepted set (``auto_accept`` + ``spot_check``) with the audited records' human label
   as the truth, source ``llm_auto``, default method (MOVER-Jeffreys, finite-population correction),
   95% interval;
6. compared in the same draw with the *true* accuracies against the truth (gold label; for VADER the
   truth raters' mean, below).

Figures per corpus x gold size x target, over ``--seeds`` draws (mean, sd, and the 5th-95th
percentiles where useful):

* ``accepting``: share of draws that certify a threshold; ``auto_share``: share of the pool
  auto-accepted (spot checks included); ``saved_share``: share of the pool no human reads (the
  human effort saved); ``n_audits``: blind audits per draw;
* ``llm_auto``: the product's estimate and 95% interval (means over the draws that have one: a
  draw with auto-accepted records but no audit has no estimate, as the product says), the true
  accuracy of the auto-accepted LLM labels, and ``coverage``: the share of draws with an interval
  whose interval holds the true accuracy; ``below_target``: share of accepting draws whose
  auto-accepted records' true precision is below the target; ``violation_pool``: share of all draws
  that auto-accept such a set, and ``violation_run``: share of all draws whose certified threshold
  has a true precision below the target over every record of the run (gold included): the
  certificate's own statement, which it makes at ``1 - level`` (5%). The two differ because the gold
  is part of the run: in a draw whose gold above the threshold happens to be right, the pool
  records above it are the worse ones;
* ``final``: the accuracy of the whole published pool, true (mean and sd over all draws) and
  estimated. The product estimates only the ``llm_auto`` accuracy: it makes no claim about reviewed
  labels (they are not audited blind). On Rotten Tomatoes and CrowdFlower the reviewed labels are
  right by construction, so the final accuracy is ``(n_human_labelled + n_auto_accept * a) /
  n_pool`` with ``a`` the ``llm_auto`` estimate, low and high (a draw that accepts nothing has the
  exact [1, 1]); ``coverage`` is counted over the draws that auto-accept and have an audit. For
  VADER, whose reviewers err, no estimate exists (n/a): the product has nothing to estimate the
  reviewed labels' accuracy from;
* ``all_human``: the accuracy of the pool if a human reviewed every record (the baseline): 1.0 by
  construction for Rotten Tomatoes and CrowdFlower (the human *is* the gold label); for VADER the
  real crowd raters' accuracy against the truth, with the same draws of raters as the reviewed
  records get.

Corpora:

* ``rotten_tomatoes``, ``crowdflower_tweets``: the 300 qwen2.5-1.5B pre-labels with gold in
  ``benchmarks/results/prelabels_qwen_*.parquet``; confidence = ``llm_confidence`` (the default
  routing kind, log-prob); correct = ``llm_label == gold_label``.
* ``vader_1rater``, ``vader_3raters``: the demo's VADER crowd (Amazon review snippets, Hutto &
  Gilbert 2014; ``labeltriage.corpora.vader_ratings``; 20 raters per snippet, ratings -4..+4). No
  LLM pre-labels ship for it and pre-labelling is out of scope (too slow), and no lexicon scorer is
  installed (``vaderSentiment`` is not a dependency), so the "LLM" is a stand-in: per draw, 300
  snippets are drawn (the demo's size, among the snippets the demo uses: text matches the ratings,
  > 20 characters) and each snippet's 20 raters are split at random into three disjoint groups:
  5 *machine* raters (pre-label = ``labeltriage.demo.mean_label`` of their mean rating, confidence =
  ``|mean| / 4``), 5 *human* raters (the reviewers and auditors: a reviewed record gets one of them
  at random, ``rating_label``: < 0 negative, 0 neutral, > 0 positive; ``vader_3raters``: three of
  them, combined by :func:`curation.consensus.majority_vote`, ties broken at random, as
  ``publish --tie-policy random``) and 10 *truth* raters (truth = ``mean_label`` of their mean, the
  demo's gold rule: within +-0.5 of 0 is neutral). The groups are disjoint so that neither the
  machine nor the humans are part of the truth they are scored against. The 5-rater machine is a
  better labeller than a 1.5B LLM (about 0.9 accurate, nearly 1.0 on its confident half), so VADER
  shows what happens with a strong pre-labeller and imperfect humans. The two VADER rows share
  their draws (the 1-rater human is the first of the three).

Usage: ``.venv/bin/python benchmarks/effort_quality.py [--seeds 2000] [--sizes 30 60 120]
[--targets 0.85 0.90 0.95]`` (a few minutes of CPU; under ``flock /tmp/labeltriage-heavy.lock`` on a
shared machine). Writes ``benchmarks/results/effort_quality.json`` (strict JSON) and
``effort_quality.md``, and prints the table.
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from curation.certify import certify_threshold  # noqa: E402
from curation.consensus import majority_vote  # noqa: E402
from curation.estimation import published_accuracy  # noqa: E402
from curation.routing import route_records  # noqa: E402
from labeltriage.config import load_task_config  # noqa: E402
from labeltriage.jsonio import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CORPORA = ("rotten_tomatoes", "crowdflower_tweets", "vader_1rater", "vader_3raters")
PRELABEL_FILES = {
    "rotten_tomatoes": "prelabels_qwen_rotten_tomatoes.parquet",
    "crowdflower_tweets": "prelabels_qwen_crowdflower_tweets.parquet",
}
CONFIG = ROOT / "datasets_config" / "sentiment.yaml"
VADER_SUBSET = "amazonReviewSnippets"  # the demo's
VADER_RUN_SIZE = 300  # the demo's --records
VADER_GROUPS = (5, 5, 10)  # machine, human, truth raters per snippet (of 20)
VADER_LABELS = ("negative", "neutral", "positive")
AUTO_ROUTES = ("auto_accept", "spot_check")


@dataclass
class Run:
    """One run's records: LLM label and raw confidence, the truth, and the label a human gives."""

    llm: np.ndarray  # (N,) str
    conf: np.ndarray  # (N,) float in [0, 1]
    truth: np.ndarray  # (N,) str
    human: np.ndarray  # (N,) str: what a reviewer (or auditor) answers for each record
    human_is_truth: bool


# ----------------------------------------------------------------------------------------------
# the corpora
# ----------------------------------------------------------------------------------------------
_CACHE: dict[str, Any] = {}


def _prelabels(name: str) -> Run:
    if name not in _CACHE:
        import pandas as pd

        df = pd.read_parquet(RESULTS / PRELABEL_FILES[name])
        df = df[(df["status"].astype(str) == "ok") & df["gold_label"].notna() & df["llm_confidence"].notna()]
        gold = df["gold_label"].astype(str).to_numpy(dtype=object)
        _CACHE[name] = Run(
            llm=df["llm_label"].astype(str).to_numpy(dtype=object),
            conf=df["llm_confidence"].to_numpy(dtype=np.float64),
            truth=gold,
            human=gold,
            human_is_truth=True,
        )
    run: Run = _CACHE[name]
    return run


def _vader_snippets() -> list[np.ndarray]:
    if "vader" not in _CACHE:
        from labeltriage.corpora import vader_ratings

        df = vader_ratings(VADER_SUBSET)
        df = df[df["mean_matches_text"] & (df["text"].str.len() > 20)]  # as labeltriage.demo.demo_input
        _CACHE["vader"] = [np.asarray(r, dtype=np.int64) for r in df["ratings"]]
    snippets: list[np.ndarray] = _CACHE["vader"]
    return snippets


def vader_runs(rng: np.random.Generator, n: int = VADER_RUN_SIZE) -> dict[str, Run]:
    """One draw of the VADER stand-in (see the module docstring): ``{"vader_1rater": Run, "vader_3raters": Run}``."""
    from labeltriage.demo import mean_label, rating_label

    snippets = _vader_snippets()
    pick = rng.choice(len(snippets), size=n, replace=False)
    n_mach, n_hum, n_truth = VADER_GROUPS
    llm, conf, truth = [], [], []
    votes = np.empty((n, 3), dtype=np.float64)
    for row, i in enumerate(pick):
        ratings = rng.permutation(snippets[i])
        if ratings.shape[0] < n_mach + n_hum + n_truth:
            raise ValueError(f"VADER snippet {i} has {ratings.shape[0]} raters, fewer than {sum(VADER_GROUPS)}")
        machine = ratings[:n_mach].mean()
        llm.append(mean_label(float(machine)))
        conf.append(min(1.0, abs(float(machine)) / 4.0))
        truth.append(mean_label(float(ratings[n_mach + n_hum : n_mach + n_hum + n_truth].mean())))
        # the human raters in random order: the first answers alone, the first three vote
        votes[row] = [VADER_LABELS.index(rating_label(float(r))) for r in ratings[n_mach : n_mach + 3]]
    one = np.array([VADER_LABELS[int(v)] for v in votes[:, 0]], dtype=object)
    mv = majority_vote(votes, len(VADER_LABELS), tie_policy="random", random_state=int(rng.integers(2**31)))
    three = np.array([VADER_LABELS[int(v)] for v in mv.labels], dtype=object)
    common = {"llm": np.array(llm, dtype=object), "conf": np.array(conf), "truth": np.array(truth, dtype=object)}
    return {
        "vader_1rater": Run(human=one, human_is_truth=False, **common),
        "vader_3raters": Run(human=three, human_is_truth=False, **common),
    }


def draw_runs(corpora: tuple[str, ...], rng: np.random.Generator) -> dict[str, Run]:
    """The runs of one draw: the fixed pre-label files, and a fresh VADER draw when asked for."""
    out = {c: _prelabels(c) for c in corpora if c in PRELABEL_FILES}
    if any(c.startswith("vader_") for c in corpora):
        out.update({k: v for k, v in vader_runs(rng).items() if k in corpora})
    unknown = set(corpora) - set(out)
    if unknown:
        raise ValueError(f"unknown corpora {sorted(unknown)}; known are {', '.join(CORPORA)}")
    return out


# ----------------------------------------------------------------------------------------------
# one simulated run: certify, route, review, audit, estimate
# ----------------------------------------------------------------------------------------------
def simulate(
    run: Run,
    gold_idx: np.ndarray,
    target: float,
    confidence_level: float,
    spot_check_rate: float,
    route_seed: int,
) -> dict[str, Any]:
    """Certify on the gold, route the pool, publish, estimate: one draw's figures (strict-JSON dict)."""
    n = run.llm.shape[0]
    is_gold = np.zeros(n, dtype=bool)
    is_gold[gold_idx] = True
    correct = run.llm == run.truth
    # 1. the certificate, as `labeltriage route` makes it (raw confidence, the run's scores as the pool)
    cert = certify_threshold(run.conf[is_gold], correct[is_gold], target, confidence_level, pool_scores=run.conf)
    cut = np.inf if cert.threshold is None else cert.threshold
    # 2. route the pool (the records without gold)
    pool = np.flatnonzero(~is_gold)
    conf, llm, truth, human = run.conf[pool], run.llm[pool], run.truth[pool], run.human[pool]
    routes = route_records(conf, np.ones(pool.shape[0], dtype=bool), cut, spot_check_rate, seed=route_seed)
    auto = np.isin(routes, AUTO_ROUTES)
    audited = routes == "spot_check"
    unreviewed = routes == "auto_accept"
    # 3-4. published labels: the LLM's when not reviewed, else the human's
    final = np.where(unreviewed, llm, human)
    n_pool, n_auto, n_unrev = pool.shape[0], int(auto.sum()), int(unreviewed.sum())
    out: dict[str, Any] = {
        "accepted": cert.threshold is not None,
        "threshold": cert.threshold,
        # what the certificate speaks of: the precision of every record of the run at or above the threshold
        "run_precision": float(np.mean(correct[run.conf >= cut])) if cert.threshold is not None else None,
        "n_pool": n_pool,
        "n_auto": n_auto,
        "n_audits": int(audited.sum()),
        "auto_share": n_auto / n_pool,
        "saved_share": n_unrev / n_pool,
        "true_final": float(np.mean(final == truth)),
        "all_human": float(np.mean(human == truth)),
        "llm_auto_true": float(np.mean(llm[auto] == truth[auto])) if n_auto else None,
        "llm_auto_est": None,
        "llm_auto_low": None,
        "llm_auto_high": None,
        "final_est": None,
        "final_low": None,
        "final_high": None,
    }
    # 5. the product's estimate of the llm_auto accuracy, called as publish.published_label_accuracy calls it
    if n_auto == 0:
        if run.human_is_truth:  # everything reviewed by a reviewer who is always right
            out.update(final_est=1.0, final_low=1.0, final_high=1.0)
        return out
    if not audited.any():
        return out  # auto-accepted records but no audit: the product gives no estimate
    mask = audited[auto]
    audit_truth = np.full(n_auto, None, dtype=object)  # the audited records' human label, None elsewhere
    audit_truth[mask] = human[auto][mask]
    report = published_accuracy(llm[auto], ["llm_auto"] * n_auto, mask, audit_truth, confidence_level=0.95)
    entry = report["by_source"]["llm_auto"]
    out.update(llm_auto_est=entry["estimate"], llm_auto_low=entry["low"], llm_auto_high=entry["high"])
    if run.human_is_truth:  # reviewed and audited records carry the human's (= the gold) label: right
        n_human = n_pool - n_unrev
        for key in ("est", "low", "high"):
            a = entry["estimate" if key == "est" else key]
            out[f"final_{key}"] = None if a is None else (n_human + n_unrev * a) / n_pool
    return out


# ----------------------------------------------------------------------------------------------
# summaries
# ----------------------------------------------------------------------------------------------
def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "sd": None, "p05": None, "p95": None, "n": 0}
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "p05": float(np.quantile(v, 0.05)),
        "p95": float(np.quantile(v, 0.95)),
        "n": int(v.size),
    }


def _coverage(rows: list[dict[str, Any]], prefix: str, truth_key: str) -> dict[str, Any]:
    rows = [r for r in rows if r[f"{prefix}_low"] is not None]
    hits = [r[f"{prefix}_low"] - 1e-12 <= r[truth_key] <= r[f"{prefix}_high"] + 1e-12 for r in rows]
    if not hits:
        return {"coverage": None, "coverage_mc_se": None, "n": 0}
    c = float(np.mean(hits))
    return {"coverage": c, "coverage_mc_se": float(np.sqrt(c * (1 - c) / len(hits))), "n": len(hits)}


def summarise(rows: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """One cell (corpus x gold size x target) over its draws."""
    accepting = [r for r in rows if r["accepted"] and r["n_auto"] > 0]
    with_est = [r for r in accepting if r["llm_auto_low"] is not None and r["llm_auto_est"] is not None]
    with_interval = [r for r in accepting if r["llm_auto_low"] is not None]
    return {
        "draws": len(rows),
        "accepting": len(accepting) / len(rows),
        "auto_share": _stats([r["auto_share"] for r in rows]),
        "saved_share": _stats([r["saved_share"] for r in rows]),
        "n_audits": _stats([r["n_audits"] for r in rows]),
        "n_audits_if_accepting": _stats([r["n_audits"] for r in accepting]),
        "accepting_without_audit": sum(r["n_audits"] == 0 for r in accepting) / len(rows),
        "threshold": _stats([r["threshold"] for r in accepting]),
        "llm_auto": {
            "estimate": _stats([r["llm_auto_est"] for r in with_est]),
            "low": _stats([r["llm_auto_low"] for r in with_est]),
            "high": _stats([r["llm_auto_high"] for r in with_est]),
            "true_if_estimated": _stats([r["llm_auto_true"] for r in with_est]),
            "true": _stats([r["llm_auto_true"] for r in accepting]),
            "below_target": (sum(r["llm_auto_true"] < target for r in accepting) / len(accepting))
            if accepting
            else None,
            # share of ALL draws that auto-accept a set whose true precision is below the target: the pool's
            # auto-accepted records, and the run's records at or above the threshold (the certificate's statement)
            "violation_pool": sum(r["llm_auto_true"] < target for r in accepting) / len(rows),
            "violation_run": sum(r["accepted"] and r["run_precision"] < target for r in rows) / len(rows),
            **_coverage(with_interval, "llm_auto", "llm_auto_true"),
        },
        "final": {
            "estimate": _stats([r["final_est"] for r in rows if r["final_est"] is not None]),
            "low": _stats([r["final_low"] for r in rows if r["final_low"] is not None]),
            "high": _stats([r["final_high"] for r in rows if r["final_high"] is not None]),
            "true": _stats([r["true_final"] for r in rows]),
            **_coverage(with_interval, "final", "true_final"),
        },
        "all_human": _stats([r["all_human"] for r in rows]),
    }


def run(
    corpora: tuple[str, ...],
    sizes: tuple[int, ...],
    targets: tuple[float, ...],
    seeds: int,
    confidence_level: float,
    spot_check_rate: float,
    seed: int,
) -> dict[str, Any]:
    """Every cell over ``seeds`` draws; a draw's run (VADER) is shared by its gold sizes and targets."""
    started = time.perf_counter()
    rows: dict[tuple[str, int, float], list[dict[str, Any]]] = {}
    meta: dict[str, dict[str, Any]] = {}
    for r in range(seeds):
        runs = draw_runs(corpora, np.random.default_rng([seed, r]))
        for c_i, name in enumerate(corpora):
            data = runs[name]
            m = meta.setdefault(name, {"records": int(data.llm.shape[0]), "llm_accuracy": [], "all_human": []})
            m["llm_accuracy"].append(float(np.mean(data.llm == data.truth)))
            m["all_human"].append(float(np.mean(data.human == data.truth)))
            for n_gold in sizes:
                # the gold draw is shared by the corpora of one family (the two VADER rows) and the targets
                family = 0 if name.startswith("vader_") else c_i + 1
                g_rng = np.random.default_rng([seed, r, family, n_gold])
                gold_idx = g_rng.choice(data.llm.shape[0], size=n_gold, replace=False)
                route_seed = int(g_rng.integers(2**31))
                for target in targets:
                    row = simulate(data, gold_idx, target, confidence_level, spot_check_rate, route_seed)
                    rows.setdefault((name, n_gold, target), []).append(row)
    cells = [
        {"corpus": name, "n_gold": n_gold, "target": target, **summarise(rows[(name, n_gold, target)], target)}
        for name in corpora
        for n_gold in sizes
        for target in targets
    ]
    corpora_meta = {
        name: {
            "records": m["records"],
            "llm_accuracy": _stats(m["llm_accuracy"]),
            "all_human_accuracy_whole_run": _stats(m["all_human"]),
        }
        for name, m in meta.items()
    }
    return {"cells": cells, "corpora": corpora_meta, "wall_seconds": time.perf_counter() - started}


# ----------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------
NOTES = {
    "rt_cf_reviewers": "Rotten Tomatoes and CrowdFlower: the human reviewer's label is the gold label, so reviewed "
    "labels are right and the all-human accuracy is 1.0 by construction.",
    "vader_reviewers": "VADER: real crowd ratings; the LLM is a stand-in (the mean of 5 other raters), the truth the "
    "mean of 10 further raters (demo.mean_label); see the module docstring.",
    "final_estimate": "This benchmark estimates the accuracy of the LLM labels published without review (llm_auto). "
    "The final-accuracy estimate for RT/CF counts every human-labelled record as right (true there by construction) "
    "and adds the auto-accepted ones at the llm_auto estimate, low and high; for VADER it is n/a here: reviewed "
    "labels need review audits (thresholds.review_audit_rate), which this benchmark does not simulate.",
    "audits": "Blind audits are route_records' spot checks: ceil(rate * n_auto) records, so a non-empty "
    "auto-accepted set gets at least one.",
}


def _f(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _pm(s: dict[str, Any], digits: int = 3) -> str:
    return "n/a" if s["mean"] is None else f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"


def _interval(block: dict[str, Any]) -> str:
    if block["estimate"]["mean"] is None:
        return "n/a"
    return f"{block['estimate']['mean']:.3f} [{block['low']['mean']:.3f}, {block['high']['mean']:.3f}]"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Effort vs quality: certified auto-accept, blind audits, published accuracy",
        "",
        f"{result['seeds']} draws per cell (seed {result['seed']}); the threshold certified at "
        f"{result['confidence_level']:.0%} (fixed-sequence, raw confidence, as `labeltriage route`), blind audits at "
        f"the default spot-check rate {result['spot_check_rate']:.0%}, the LLM-auto estimate and interval at 95% "
        f"(curation.estimation, MOVER-Jeffreys, as `publish`). Run time {result['wall_seconds']:.0f} s "
        f"({result['cpu_seconds']:.0f} s CPU). Produced by `benchmarks/effort_quality.py`.",
        "",
        "Columns: `gold` = gold records used (drawn at random from the run; the rest is the published pool); "
        "`accepting` = share of draws that certify a threshold; `auto` = share of the pool auto-accepted, mean ± sd "
        "over draws (spot checks included); `saved` = share of the pool no human reads (the effort saved); `audits` = "
        "blind audits per accepting draw (share of accepting draws with none: no estimate); `LLM-auto est [CI]` = "
        "the product's estimate of the accuracy of the LLM labels published without review with its 95% interval "
        "(means over the draws that have one), `true` its true value, `cov` = share of those draws whose interval "
        "holds the true value (draws); `viol pool / run` = share of all draws that auto-accept a set whose "
        "true precision is below the target: the pool's auto-accepted records / every record of the run at or "
        "above the threshold (what the certificate states, at most 5%); `final est [CI]` = the published pool's "
        "accuracy (RT/CF: reviewed labels are right by construction; VADER: n/a, see notes); `final true` = its "
        "true value, mean ± sd over all draws; `all-human` = one human reviews every record (the baseline).",
        "",
        "| corpus | gold | target | accepting | auto | saved | audits | LLM-auto est [CI] | true | cov "
        "| viol pool / run | final est [CI] | final true | all-human |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- | --- | ---: | --- | --- | --- | --- | ---: |",
    ]
    for c in result["cells"]:
        la, fi = c["llm_auto"], c["final"]
        cov = "n/a" if la["coverage"] is None else f"{la['coverage']:.2f} ({la['n']})"
        aud = c["n_audits_if_accepting"]["mean"]
        audits = "n/a" if aud is None else f"{aud:.1f} ({c['accepting_without_audit'] / c['accepting']:.0%})"
        viol = f"{la['violation_pool']:.3f} / {la['violation_run']:.3f}"
        lines.append(
            f"| {c['corpus']} | {c['n_gold']} | {c['target']:.2f} | {c['accepting']:.3f} | {_pm(c['auto_share'], 2)} "
            f"| {_f(c['saved_share']['mean'], 2)} | {audits} | {_interval(la)} | {_f(la['true']['mean'])} | {cov} "
            f"| {viol} | {_interval(fi)} | {_pm(fi['true'])} | {_f(c['all_human']['mean'])} |"
        )
    lines += ["", "Corpora (whole runs, mean over draws):", ""]
    for name, m in result["corpora"].items():
        lines.append(
            f"- `{name}`: {m['records']} records per run; LLM accuracy {m['llm_accuracy']['mean']:.3f}; one human per "
            f"record {m['all_human_accuracy_whole_run']['mean']:.3f}"
        )
    lines += ["", "Notes:", ""] + [f"- {v}" for v in result["notes"].values()]
    no_audit = sum(round(c["accepting_without_audit"] * c["draws"]) for c in result["cells"])
    lines.append(f"- Accepting draws with no audit in this table: {no_audit} (every certified set here was large).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=2000, help="draws per cell")
    ap.add_argument("--sizes", type=int, nargs="+", default=[30, 60, 120], help="gold sizes (records)")
    ap.add_argument("--targets", type=float, nargs="+", default=[0.85, 0.90, 0.95])
    ap.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=CORPORA)
    ap.add_argument("--confidence-level", type=float, default=0.95)
    ap.add_argument("--spot-check-rate", type=float, default=None, help="default: the sentiment config's")
    ap.add_argument("--seed", type=int, default=20240917)
    ap.add_argument("--out", type=Path, default=RESULTS / "effort_quality.json")
    args = ap.parse_args(argv)
    spot = args.spot_check_rate
    if spot is None:
        spot = load_task_config(CONFIG).thresholds.spot_check_rate
    cpu0 = time.process_time()
    res = run(tuple(args.corpora), tuple(args.sizes), tuple(args.targets), args.seeds, args.confidence_level,
              spot, args.seed)  # fmt: skip
    result = {
        "benchmark": "effort_quality",
        "seeds": args.seeds,
        "seed": args.seed,
        "sizes": args.sizes,
        "targets": args.targets,
        "confidence_level": args.confidence_level,
        "spot_check_rate": spot,
        "spot_check_rate_from": "argument" if args.spot_check_rate is not None else str(CONFIG.relative_to(ROOT)),
        "threshold_method": "curation.certify.certify_threshold (fixed-sequence, raw confidence, pool = the run)",
        "estimator": "curation.estimation.published_accuracy over the auto-accepted set, source llm_auto, "
        "mover-jeffreys, fpc, 95% (as curation.publish.published_label_accuracy)",
        "vader": {"subset": VADER_SUBSET, "run_size": VADER_RUN_SIZE, "raters_machine_human_truth": VADER_GROUPS},
        "notes": NOTES,
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform()},
        **res,
        "cpu_seconds": time.process_time() - cpu0,
    }
    write_json(args.out, result)
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {args.out} ({result['wall_seconds']:.0f} s wall, {result['cpu_seconds']:.0f} s CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
