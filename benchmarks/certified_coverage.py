"""Certified coverage per confidence signal: how much a better ranking lets the guarantee accept.

Issue 18's table. For each corpus (the real pre-labels of ``benchmarks/prelabel_accuracy.py``:
Rotten Tomatoes and CrowdFlower tweets, with their gold labels as the known truth) and each
confidence, per draw: ``--gold`` records drawn at random from the run are the gold; the threshold
is certified as ``labeltriage route`` does (:func:`curation.certify.certify_threshold`,
fixed-sequence exact binomial tests at 95%, grid from the run's scores); the rest of the run (the
pool) is auto-accepted at or above it and reviewed below it by a human who is right (the gold label
is the human's answer, as in ``benchmarks/effort_quality.py``).

Confidences compared (same draws for all):

* ``logprob`` on the shipped 4-label task (``sentiment``): what the product did before issue 18;
  every row uses route's test sequence (size-only start), except ``guided start``, the option
  :func:`curation.certify.default_start` offers;
* ``logprob``, ``distribution`` (the chosen label's share of the label distribution at the first
  token) on the 3-label task (``sentiment_3class``, the corpora's own label set);
* ``combined``: :func:`curation.signals.cross_fit_confidence` on the LLM's own signals (logprob,
  label distribution, stated confidence), and ``combined+emb`` adding the neighbour signals
  (kNN label agreement and LLM-student agreement on the bundled MiniLM embeddings), cross-fitted
  on the drawn gold in every draw;
* the same with retrieved examples in the prompt (``benchmarks/retrieved_examples.py``'s answers,
  when present: the k most similar human-labelled texts of a separate pool as few-shot turns);
* ``cascade`` (issue 18 point 5, ``labeltriage second-opinion --below 1.0``): the other prompt's
  answer of the same record as the second opinion, :func:`curation.cascade.cascade_confidence`;
  the published label is the first answer's. Its formula was picked among five on these same
  records (AUROC within 0.01 of each other), so its rows are slightly optimistic. Both orders (plain
  first or retrieved first) certify the same records: near the top only agreeing pairs remain,
  whose score (the mean of both) is symmetric; they differ in AUROC (the ranking of the rest).

Per cell: ``accepting`` (share of draws certifying a threshold), ``coverage`` (certified coverage:
share of the pool auto-accepted, mean over all draws), ``violation`` (share of draws whose
certified threshold has a true precision below the target over every ok record of the run at or
above it: what the certificate states, at most 5%), ``final`` (accuracy of the published pool:
auto-accepted LLM labels + reviewed labels, which are right here), ``all_human`` (1.0 by
construction), ``auroc`` (ranking of right vs wrong labels over the whole run; for the combined
confidences the mean over draws of the pooled scores). Writes benchmarks/results/
certified_coverage.{json,md}.

Gold sizes the measured runs cannot hold (issue 18 asks for 400 gold; the runs have 300 records, and
700 more LLM answers per corpus and prompt are hours of CPU) are *estimated*, separately
(``resampled_cells``): each draw is a run of ``--resample-run`` records drawn with replacement from
the measured ones (the plug-in bootstrap), the fixed scores only. The figures are conditional on
the measured run (a top slice that was 30 of 30 right is taken as always right), and the plug-in's
120 and 200 rows, set beside the real draws', show how optimistic it is.

    .venv/bin/python benchmarks/certified_coverage.py            # ~20 min on 2 cores
    .venv/bin/python benchmarks/certified_coverage.py --draws 100
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from curation.cascade import asked_mask, cascade_confidence
from curation.certify import certify_threshold
from curation.signals import cross_fit_confidence, signal_features
from labeltriage.jsonio import write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CORPORA = ("rotten_tomatoes", "crowdflower_tweets")
MIN_BASE_COVERAGE = 0.005  # the ratio column's smallest baseline
LLM_SIGNALS = ("logprob", "distribution_top", "distribution_margin", "distribution_entropy", "stated")


def load(corpus: str, tag: str) -> pd.DataFrame | None:
    path = RESULTS / f"prelabels_qwen{tag}_{corpus}.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def embeddings_for(texts: list[str]) -> np.ndarray:
    from curation.adapters.embeddings import embed_texts

    return embed_texts(texts, cache_dir=ROOT / "runs" / "embedding-cache")


def variants(frame3: pd.DataFrame, with_embeddings: bool, seed: int) -> dict[str, tuple[str, Any]]:
    """name -> ("raw", scores) for a fixed score, or ("combined", X) for a cross-fitted one."""
    out: dict[str, tuple[str, Any]] = {
        "logprob (3-label)": ("raw", frame3["confidence_logprob"].to_numpy(dtype=float)),
    }
    if "confidence_distribution" in frame3.columns and frame3["confidence_distribution"].notna().any():
        out["distribution (3-label)"] = ("raw", frame3["confidence_distribution"].to_numpy(dtype=float))
    x, names = signal_features(frame3)
    keep = [j for j, n in enumerate(names) if n in LLM_SIGNALS]
    out["combined, LLM signals (3-label)"] = ("combined", (x[:, keep], [names[j] for j in keep]))
    if with_embeddings:
        emb = embeddings_for(frame3["text"].astype(str).tolist())
        xe, names_e = signal_features(frame3, emb, seed=seed)
        out["combined + embeddings (3-label)"] = ("combined", (xe, names_e))
    return out


def simulate(
    correct: np.ndarray, ok: np.ndarray, kind: str, payload: Any, n_gold: int, target: float, level: float,
    draws: int, seed: int, guided: bool = True, resample_run: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Draw gold, certify, route; return the cell's figures.

    ``resample_run``: instead of drawing the gold from the measured run, each draw is a new run of
    that many records drawn with replacement from the measured ones (the plug-in bootstrap: Efron &
    Tibshirani 1993, ch. 6), its first ``n_gold`` the gold; the truth a certificate is checked against
    is the measured run's precision above the threshold. For gold sizes the measured run cannot hold
    (``raw`` scores only)."""
    rng = np.random.default_rng(seed)
    n = correct.shape[0]
    ok_idx = np.flatnonzero(ok)
    measured_scores = np.where(np.isfinite(payload), payload, -np.inf) if kind == "raw" else None
    if resample_run is not None and measured_scores is None:
        raise ValueError("resampled runs take raw scores only (a cross-fitted score is a new model per draw)")
    accepted, coverage, violation, final, aurocs = [], [], [], [], []
    for _ in range(draws):
        if resample_run is not None:
            run = rng.choice(ok_idx, resample_run, replace=True)
            scores, right = measured_scores[run], correct[run]
            gold = np.arange(resample_run) < n_gold
            usable = np.isfinite(scores)
            pool = ~gold
        else:
            gold = np.zeros(n, dtype=bool)
            gold[rng.choice(ok_idx, n_gold, replace=False)] = True
            right, pool = correct, ok & ~gold
            if measured_scores is not None:
                scores = measured_scores
            else:
                x, names = payload
                y = correct[gold]
                if min(y.sum(), (~y).sum()) < 2:
                    scores = np.full(n, -np.inf)  # cannot fit: nothing is accepted
                else:
                    scores = cross_fit_confidence(x, gold, y, seed=int(rng.integers(1 << 31)), names=names).scores
                aurocs.append(float(roc_auc_score(correct[ok], scores[ok])))
            usable = ok & np.isfinite(scores)
        cert = certify_threshold(np.where(np.isfinite(scores[gold]), scores[gold], -1e9), right[gold], target,
                                 level, pool_scores=scores[usable], guided_start=guided)  # fmt: skip
        if cert.threshold is None:
            accepted.append(False)
            coverage.append(0.0)
            violation.append(False)
            final.append(1.0)
            continue
        auto = usable & (scores >= cert.threshold) & pool
        accepted.append(True)
        coverage.append(float(auto.sum() / pool.sum()))
        if resample_run is not None:  # the truth: the measured records the threshold accepts
            truth = correct[ok & (measured_scores >= cert.threshold)]
        else:
            truth = correct[usable & (scores >= cert.threshold)]
        violation.append(bool(truth.mean() < target))
        final.append(float(1.0 - (auto & ~right).sum() / pool.sum()))
    out = {
        "accepting": float(np.mean(accepted)),
        "coverage": float(np.mean(coverage)),
        "coverage_sd": float(np.std(coverage)),
        "violation": float(np.mean(violation)),
        "violation_mc_se": float(np.sqrt(max(np.mean(violation) * (1 - np.mean(violation)), 1e-12) / draws)),
        "final": float(np.mean(final)),
        "final_sd": float(np.std(final)),
        "all_human": 1.0,
    }
    if kind == "raw":
        finite = ok & np.isfinite(payload)
        out["auroc"] = float(roc_auc_score(correct[finite], payload[finite]))
    else:
        out["auroc"] = float(np.mean(aurocs))
    return out


def cascade_scores(first: pd.DataFrame, second: pd.DataFrame) -> np.ndarray:
    """The product's cascade score (:func:`curation.cascade.cascade_confidence`) with every ok
    record asked (``--below 1.0``): ``first``'s label and log-prob confidence, ``second``'s answer
    of the same records (same order) as the second opinion."""
    ok1, ok2 = first["status"].eq("ok").to_numpy(), second["status"].eq("ok").to_numpy()
    s1 = np.where(ok1, first["confidence_logprob"].to_numpy(dtype=float), np.nan)
    s2 = np.where(ok2, second["confidence_logprob"].to_numpy(dtype=float), np.nan)
    labels2 = np.where(ok2, second["llm_label"].to_numpy(dtype=object), None)
    return cascade_confidence(first["llm_label"].to_numpy(dtype=object), s1, labels2, s2, asked_mask(s1, 1.0))


def correct3_of(frame: pd.DataFrame) -> np.ndarray:
    ok = frame["status"].eq("ok").to_numpy()
    right: np.ndarray = (frame["llm_label"] == frame["gold_label"]).to_numpy() & ok
    return right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--gold", type=int, nargs="+", default=[120, 200])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.90, 0.95])
    parser.add_argument(
        "--resampled-gold",
        type=int,
        nargs="*",
        default=[120, 200, 400],
        help="gold sizes simulated on runs resampled from the measured one (raw scores only)",
    )
    parser.add_argument("--resample-run", type=int, default=1000, help="records per resampled run")
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--no-embeddings", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    started, cpu = time.perf_counter(), time.process_time()
    report: dict[str, Any] = {"draws": args.draws, "level": args.level, "seed": args.seed, "corpora": {}}
    for corpus in CORPORA:
        frame4, frame3 = load(corpus, ""), load(corpus, "_sentiment_3class")
        if frame3 is None:
            print(f"skip {corpus}: no 3-label pre-labels (benchmarks/prelabel_accuracy.py --config sentiment_3class)")
            continue
        entry: dict[str, Any] = {"n_records": len(frame3), "cells": []}
        cases: list[tuple[str, np.ndarray, np.ndarray, str, Any]] = []
        if frame4 is not None:
            ok4 = frame4["status"].eq("ok").to_numpy()
            correct4 = (frame4["llm_label"] == frame4["gold_label"]).to_numpy() & ok4
            entry["llm_accuracy_4label"] = float(correct4.mean())
            cases.append(("logprob (4-label, before)", correct4, ok4, "raw",
                          frame4["confidence_logprob"].to_numpy(dtype=float)))  # fmt: skip
        cases.append(("logprob (3-label), guided start", correct3_of(frame3), frame3["status"].eq("ok").to_numpy(),
                      "raw", frame3["confidence_logprob"].to_numpy(dtype=float)))  # fmt: skip
        ok3 = frame3["status"].eq("ok").to_numpy()
        correct3 = (frame3["llm_label"] == frame3["gold_label"]).to_numpy() & ok3
        entry["llm_accuracy_3label"] = float(correct3.mean())
        for name, (kind, payload) in variants(frame3, not args.no_embeddings, args.seed).items():
            cases.append((name, correct3, ok3, kind, payload))
            if kind == "combined":
                entry.setdefault("signals", {})[name] = payload[1]
        retrieved = load(corpus, "_sentiment_3class_retrieved")
        if retrieved is not None and retrieved["id"].tolist() == frame3["id"].tolist():
            ok_r = retrieved["status"].eq("ok").to_numpy()
            correct_r = (retrieved["llm_label"] == retrieved["gold_label"]).to_numpy() & ok_r
            entry["llm_accuracy_3label_retrieved"] = float(correct_r.mean())
            for name, (kind, payload) in variants(retrieved, not args.no_embeddings, args.seed).items():
                if name.startswith(("logprob", "combined + embeddings")):
                    label = name.replace("(3-label)", "(3-label, retrieved examples)")
                    cases.append((label, correct_r, ok_r, kind, payload))
            # the cascade (labeltriage second-opinion --below 1.0): the other prompt's answer as the second opinion
            for label, first, second, correct_first, ok_first in (
                ("cascade: plain, second opinion with retrieved examples (3-label)", frame3, retrieved, correct3, ok3),
                ("cascade: retrieved examples, second opinion plain (3-label)", retrieved, frame3, correct_r, ok_r),
            ):
                cases.append((label, correct_first, ok_first, "raw", cascade_scores(first, second)))
            cases.append((cases[-2][0] + ", guided start", *cases[-2][1:]))  # route --guided-start
            entry["cascade_agreement"] = float((frame3["llm_label"] == retrieved["llm_label"])[ok3 & ok_r].mean())
        for n_gold in args.gold:
            for target in args.targets:
                for name, correct, ok, kind, payload in cases:
                    # route's start is the size-only one; the guided start (an option) is compared on 3-label logprob
                    guided = "guided start" in name
                    cell = simulate(correct, ok, kind, payload, n_gold, target, args.level, args.draws,
                                    seed=args.seed + n_gold, guided=guided)  # same gold draws for all  # fmt: skip
                    entry["cells"].append({"confidence": name, "gold": n_gold, "target": target, **cell})
                    print_cell(corpus, entry["cells"][-1])
        for n_gold in args.resampled_gold:  # gold sizes the measured run cannot hold, on resampled runs
            for target in args.targets:
                for name, correct, ok, kind, payload in cases:
                    if kind != "raw":
                        continue
                    cell = simulate(correct, ok, kind, payload, n_gold, target, args.level, args.draws,
                                    seed=args.seed + n_gold, guided="guided start" in name,
                                    resample_run=args.resample_run)  # fmt: skip
                    entry.setdefault("resampled_cells", []).append(
                        {"confidence": name, "gold": n_gold, "target": target, "run": args.resample_run, **cell}
                    )
                    print_cell(corpus, entry["resampled_cells"][-1])
        report["corpora"][corpus] = entry
    report["run_time_s"] = round(time.perf_counter() - started, 1)
    report["cpu_time_s"] = round(time.process_time() - cpu, 1)
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "certified_coverage.json", report)
    (args.results / "certified_coverage.md").write_text(markdown(report))
    print(markdown(report))


TABLE_HEAD = (
    "| corpus | gold | target | confidence | AUROC | accepting | coverage | ratio | violation | final |",
    "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
)


def table_rows(corpus: str, cells: list[dict[str, Any]]) -> list[str]:
    """Markdown rows, with each cell's coverage over the 4-label logprob's in the same draws (n/a when
    that is under half a percent of the pool: a ratio to almost nothing says nothing)."""
    base = {(c["gold"], c["target"]): c["coverage"] for c in cells if c["confidence"].startswith("logprob (4-label")}
    rows = []
    for c in cells:
        b = base.get((c["gold"], c["target"]))
        ratio = "n/a" if not b or b < MIN_BASE_COVERAGE else f"{c['coverage'] / b:.1f}x"
        rows.append(
            f"| {corpus} | {c['gold']} | {c['target']:.2f} | {c['confidence']} | {c['auroc']:.3f} | "
            f"{c['accepting']:.2f} | {c['coverage']:.3f} ± {c['coverage_sd']:.3f} | {ratio} | "
            f"{c['violation']:.3f} | {c['final']:.3f} |"
        )
    return rows


def print_cell(corpus: str, cell: dict[str, Any]) -> None:
    run = f" (resampled run of {cell['run']})" if "run" in cell else ""
    print(f"{corpus:18s} gold {cell['gold']:4d}{run} target {cell['target']:.2f} {cell['confidence']:34s} "
          f"accept {cell['accepting']:.2f} coverage {cell['coverage']:.3f} "
          f"viol {cell['violation']:.3f} final {cell['final']:.3f} auroc {cell['auroc']:.3f}", flush=True)  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Certified coverage per confidence signal",
        "",
        f"{report['draws']} gold draws per cell (seed {report['seed']}); threshold certified at "
        f"{report['level']:.0%} (fixed-sequence, as `labeltriage route`); reviewers right (gold). Run time "
        f"{report['run_time_s']} s. Produced by `benchmarks/certified_coverage.py`.",
        "",
        "`coverage`: certified coverage, share of the pool auto-accepted (mean over draws); `accepting`: share "
        "of draws certifying a threshold; `violation`: share of draws whose threshold's true precision over the "
        "run is below the target (stated: at most 5%); `final`: accuracy of the published pool (all-human: 1.0); "
        "`ratio`: coverage over the 4-label logprob's (before issue 18) in the same draws (n/a when that is under "
        f"{MIN_BASE_COVERAGE:.1%} of the pool).",
        "",
        *TABLE_HEAD,
    ]
    for corpus, entry in report["corpora"].items():
        lines += table_rows(corpus, entry["cells"])
    resampled = {corpus: entry["resampled_cells"] for corpus, entry in report["corpora"].items()
                 if entry.get("resampled_cells")}  # fmt: skip
    if resampled:
        run = next(iter(resampled.values()))[0]["run"]
        lines += [
            "",
            f"Gold sizes beyond the measured run: each draw is a run of {run} records drawn with replacement from "
            "the measured ones (plug-in bootstrap), its first `gold` records the gold; `violation` checks the "
            "threshold against the measured run's precision above it. Fixed scores only (the combined ones are "
            "a new model per draw). Compare its 120 and 200 rows with the table above to see how close the plug-in "
            "comes.",
            "",
            *TABLE_HEAD,
        ]
        for corpus, cells in resampled.items():
            lines += table_rows(corpus, cells)
    lines += ["", "LLM accuracy on the whole run:", ""]
    for corpus, entry in report["corpora"].items():
        lines.append(
            f"- {corpus}: {entry['n_records']} records; 4-label task "
            f"{entry.get('llm_accuracy_4label', float('nan')):.3f}, "
            f"3-label task {entry['llm_accuracy_3label']:.3f}, with retrieved examples "
            f"{entry.get('llm_accuracy_3label_retrieved', float('nan')):.3f}; combined signals {entry.get('signals')}"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
