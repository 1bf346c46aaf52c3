"""Interval coverage of the published dataset's accuracy and class shares (issue 17, point 4).

Bar: over >= 500 simulated labelling runs with a known truth, each 95% interval of
``curation.estimation`` (overall accuracy, accuracy per label_source, class shares) contains the true
value in >= 93% of the runs.

One simulated run (vectorised over records):

* ``N`` records with a true label; the LLM labels them with a confidence, right with a probability
  that rises with the confidence (or: the real pre-label files with their gold as the truth);
* routing: the most confident ``auto_share`` are auto-accepted, a random ``spot_share`` of them is
  spot-checked (reviewed with the LLM suggestion shown), the rest goes to human review;
* reviewers (1 to 3 per record) err at rate ``human_error`` and, seeing the suggestion, adopt the
  LLM's label with probability ``anchor`` (the anchoring the issue cites); the majority is the final
  label, ``human`` when unanimous, ``consensus`` otherwise; auto-accepted records publish the LLM
  label as ``llm_auto``;
* blind audits: Bernoulli samples at rate ``audit_auto`` of the auto-accepted and ``audit_reviewed``
  of the reviewed records (design strata ``auto_accept`` / ``reviewed``, inclusion probabilities
  passed to the estimator); auditors are right (the estimator's assumption), except in the
  ``sensitivity_auditor_error`` scenario, which shows what auditor error does (no bar there).

Compared in the same runs: the estimator's methods (``mover-jeffreys`` default, ``mover-wilson``,
``mover-clopper-pearson``, ``bonferroni-exact``; PPI with and without the Agresti-Min variance)
and naive baselines: the pooled audits' Wilson interval ignoring the design, the LLM-vs-reviewer
agreement on spot-checked records (what a card shows today) as the llm_auto accuracy, the
classical stratified interval on the audit labels alone (no predictions), and the published
labels' shares (no interval).

Usage: ``.venv/bin/python benchmarks/published_accuracy.py [--runs 2000] [--seed 0] [--scenario NAME ...]``
Writes ``benchmarks/results/published_accuracy.json`` (strict JSON) and prints a table.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from curation.estimation import (  # noqa: E402
    ACCURACY_METHODS,
    audited_proportion,
    binomial_interval,
    class_shares_ppi,
    published_accuracy,
)
from labeltriage.jsonio import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
LABELS = ("positive", "negative", "neutral", "mixed")  # the sentiment task's four labels
SOURCES = ("human", "consensus", "llm_auto")
NOMINAL = 0.95
BAR = 0.93

SCENARIOS: dict[str, dict[str, Any]] = {
    # close to the demo: 300 records, 3 true classes among 4 labels, three reviewers per record
    "demo_300": dict(
        n=300, classes=("positive", "negative", "neutral"), class_p=(0.3, 0.45, 0.25), auto_share=0.5,
        spot_share=0.05, reviewers=(0.0, 0.0, 1.0), human_error=0.08, anchor=0.3,
        audit_auto=0.10, audit_reviewed=0.05,
    ),
    "large_20000": dict(
        n=20000, classes=("positive", "negative", "neutral", "mixed"), class_p=(0.4, 0.35, 0.2, 0.05),
        auto_share=0.7, spot_share=0.05, reviewers=(0.7, 0.0, 0.3), human_error=0.06, anchor=0.3,
        audit_auto=0.02, audit_reviewed=0.02,
    ),
    # every run draws its own settings in the brief's ranges
    "varied_2k_20k": dict(
        n=(2000, 20000), classes=("positive", "negative", "neutral", "mixed"), class_p=(0.4, 0.3, 0.2, 0.1),
        auto_share=(0.3, 0.7), spot_share=(0.02, 0.10), reviewers=(0.6, 0.1, 0.3), human_error=(0.05, 0.10),
        anchor=(0.0, 0.4), audit_auto=(0.02, 0.10), audit_reviewed=(0.01, 0.05),
    ),
    # the real pre-label files, gold as the truth: the 300 records as they are, and a population of
    # 3,000 resampled from them (with replacement, new in every run)
    "real_crowdflower_300": dict(
        real="crowdflower_tweets", n=300, auto_share=0.5, spot_share=0.05, reviewers=(0.0, 0.0, 1.0),
        human_error=0.08, anchor=0.3, audit_auto=0.10, audit_reviewed=0.05,
    ),
    "real_rotten_tomatoes_300": dict(
        real="rotten_tomatoes", n=300, auto_share=0.5, spot_share=0.05, reviewers=(0.0, 0.0, 1.0),
        human_error=0.08, anchor=0.3, audit_auto=0.10, audit_reviewed=0.05,
    ),
    "real_crowdflower_resampled_3000": dict(
        real="crowdflower_tweets", n=3000, auto_share=0.4, spot_share=0.05, reviewers=(0.7, 0.0, 0.3),
        human_error=0.08, anchor=0.3, audit_auto=0.05, audit_reviewed=0.03,
    ),
    # what the estimator does NOT cover: auditors who err 5% of the time (no bar)
    "sensitivity_auditor_error": dict(
        n=5000, classes=("positive", "negative", "neutral", "mixed"), class_p=(0.4, 0.35, 0.2, 0.05),
        auto_share=0.6, spot_share=0.05, reviewers=(0.7, 0.0, 0.3), human_error=0.06, anchor=0.3,
        audit_auto=0.05, audit_reviewed=0.03, auditor_error=0.05, bar=False,
    ),
}  # fmt: skip


def _draw(value: Any, rng: np.random.Generator, integer: bool = False) -> Any:
    """A setting: a fixed value, or a (low, high) range drawn per run (log-uniform for sizes)."""
    if isinstance(value, tuple) and len(value) == 2 and not isinstance(value[0], str):
        lo, hi = value
        if integer:
            return int(round(float(np.exp(rng.uniform(np.log(lo), np.log(hi))))))
        return float(rng.uniform(lo, hi))
    return value


def _other_label(truth_idx: np.ndarray, rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """A label index different from each truth, drawn with ``weights`` over the other labels."""
    k = len(weights)
    w = np.tile(weights, (truth_idx.size, 1))
    w[np.arange(truth_idx.size), truth_idx] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    u = rng.random(truth_idx.size)[:, None]
    return np.minimum((u > np.cumsum(w, axis=1)).sum(axis=1), k - 1)


def _real(name: str) -> dict[str, np.ndarray]:
    import pandas as pd

    df = pd.read_parquet(RESULTS / f"prelabels_qwen_{name}.parquet")
    df = df[(df["status"] == "ok") & df["gold_label"].notna()]
    index = {lab: i for i, lab in enumerate(LABELS)}
    return {
        "truth": df["gold_label"].map(index).to_numpy(np.int64),
        "llm": df["llm_label"].map(index).to_numpy(np.int64),
        "conf": df["llm_confidence"].to_numpy(np.float64),
    }


_REAL_CACHE: dict[str, dict[str, np.ndarray]] = {}


def simulate_run(sc: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One labelling run: truth, published labels and sources, routes, audits (index arrays)."""
    n = _draw(sc["n"], rng, integer=True)
    k = len(LABELS)
    if "real" in sc:
        data = _REAL_CACHE.setdefault(sc["real"], _real(sc["real"]))
        pick = np.arange(n) if n == data["truth"].size else rng.integers(0, data["truth"].size, n)
        truth, llm, conf = data["truth"][pick], data["llm"][pick], data["conf"][pick]
    else:
        class_idx = np.array([LABELS.index(c) for c in sc["classes"]])
        truth = class_idx[rng.choice(len(class_idx), n, p=np.asarray(sc["class_p"]))]
        conf = rng.beta(5.0, 2.0, n)
        llm_right = rng.random(n) < np.clip(0.35 + 0.62 * conf, 0.0, 0.99)
        error_w = np.array([1.0, 1.0, 1.0, 2.0])  # the LLM says "mixed" wrongly more often
        llm = np.where(llm_right, truth, _other_label(truth, rng, error_w))
    auto_share = _draw(sc["auto_share"], rng)
    order = np.argsort(-conf + 1e-9 * rng.random(n))  # random tie-break
    auto = np.zeros(n, bool)
    auto[order[: int(round(auto_share * n))]] = True
    spot = auto & (rng.random(n) < _draw(sc["spot_share"], rng))
    reviewed = ~auto | spot
    # reviewers: how many per reviewed record, each right / wrong / anchored on the LLM label
    m_rev = 1 + rng.choice(3, n, p=np.asarray(sc["reviewers"]))
    human_error, anchor = _draw(sc["human_error"], rng), _draw(sc["anchor"], rng)
    votes = np.empty((n, 3), np.int64)
    for j in range(3):
        own = np.where(rng.random(n) < human_error, _other_label(truth, rng, np.ones(k)), truth)
        votes[:, j] = np.where(rng.random(n) < anchor, llm, own)
    counts = np.zeros((n, k), np.int64)
    for j in range(3):
        active = j < m_rev
        np.add.at(counts, (np.flatnonzero(active), votes[active, j]), 1)
    top = counts.max(axis=1)
    tied = (counts == top[:, None]).sum(axis=1) > 1
    majority = np.where(tied, votes[:, 0], counts.argmax(axis=1))  # a tie: the first reviewer's label
    unanimous = top == m_rev
    final = np.where(reviewed, majority, llm)
    source = np.where(~reviewed, "llm_auto", np.where(unanimous, "human", "consensus"))
    # blind audits: design strata auto_accept (not spot-checked) / reviewed
    stratum = np.where(reviewed, "reviewed", "auto_accept")
    a_auto, a_rev = _draw(sc["audit_auto"], rng), _draw(sc["audit_reviewed"], rng)
    pi = np.where(reviewed, a_rev, a_auto)
    audited = rng.random(n) < pi
    auditor_error = sc.get("auditor_error", 0.0)
    audit = np.where(rng.random(n) < auditor_error, _other_label(truth, rng, np.ones(k)), truth)
    return {
        "n": n, "truth": truth, "llm": llm, "final": final, "source": source, "stratum": stratum,
        "pi": pi, "audited": audited, "audit": audit, "spot": spot, "reviewed": reviewed,
    }  # fmt: skip


def _record(store: dict[str, list], key: str, truth: float | None, est: Any, low: Any, high: Any) -> None:
    store.setdefault(key, []).append((truth, est, low, high))


def evaluate_run(run: dict[str, Any]) -> dict[str, list]:
    """Every interval of one run against its true value: ``{target/method: [(truth, est, low, high)]}``."""
    out: dict[str, list] = {}
    names = np.array(LABELS)
    final, truth, audit, audited = names[run["final"]], names[run["truth"]], names[run["audit"]], run["audited"]
    audit_labels = np.where(audited, audit, None)
    correct = run["final"] == run["truth"]
    for method in ACCURACY_METHODS:
        res = published_accuracy(
            final, run["source"], audited, audit_labels, strata=run["stratum"], inclusion_prob=run["pi"], method=method
        )
        e = res["overall"]
        _record(out, f"accuracy.overall/{method}", float(correct.mean()), e["estimate"], e["low"], e["high"])
        for s in SOURCES:
            sel = run["source"] == s
            e = res["by_source"][s]
            _record(out, f"accuracy.{s}/{method}", float(correct[sel].mean()) if sel.any() else None,
                    e["estimate"], e["low"], e["high"])  # fmt: skip
    # baseline: all audits pooled, Wilson, design ignored
    n_a = int(audited.sum())
    if n_a:
        x = int((run["final"][audited] == run["audit"][audited]).sum())
        lo, hi = binomial_interval(x, n_a, method="wilson")
        _record(out, "accuracy.overall/baseline-pooled-audits-wilson", float(correct.mean()), x / n_a, lo, hi)
    else:
        _record(out, "accuracy.overall/baseline-pooled-audits-wilson", float(correct.mean()), None, None, None)
    # baseline: the LLM-vs-reviewer agreement on spot-checked records, read as llm_auto accuracy
    llm_auto = run["source"] == "llm_auto"
    spot = run["spot"]
    true_auto = float(correct[llm_auto].mean()) if llm_auto.any() else None
    if spot.any():
        x = int((run["llm"][spot] == run["final"][spot]).sum())
        lo, hi = binomial_interval(x, int(spot.sum()), method="wilson")
        _record(out, "accuracy.llm_auto/baseline-llm-vs-reviewer-agreement", true_auto, x / spot.sum(), lo, hi)
    else:
        _record(out, "accuracy.llm_auto/baseline-llm-vs-reviewer-agreement", true_auto, None, None, None)
    # class shares
    shares_true = {lab: float((truth == lab).mean()) for lab in LABELS}
    for tag, kwargs in (("ppi", {}), ("ppi-plain-variance", {"small_sample_adjustment": False})):
        res = class_shares_ppi(
            final, audited, audit_labels, LABELS, strata=run["stratum"], inclusion_prob=run["pi"], **kwargs
        )
        for lab in LABELS:
            e = res["shares"][lab]
            _record(out, f"share.{lab}/{tag}", shares_true[lab], e["estimate"], e["low"], e["high"])
    for lab in LABELS:
        res = audited_proportion(
            np.where(audited, audit == lab, None), audited, strata=run["stratum"], inclusion_prob=run["pi"]
        )
        _record(out, f"share.{lab}/baseline-classical-audits-only", shares_true[lab],
                res["estimate"], res["low"], res["high"])  # fmt: skip
        _record(out, f"share.{lab}/baseline-published-shares", shares_true[lab], float((final == lab).mean()),
                None, None)  # fmt: skip
    return out


def summarise(rows: list[tuple]) -> dict[str, Any]:
    """Coverage (runs whose interval holds the truth, among runs with an interval), width, error."""
    rows = [r for r in rows if r[0] is not None]
    with_ci = [r for r in rows if r[2] is not None]
    with_est = [r for r in rows if r[1] is not None]
    out: dict[str, Any] = {
        "runs": len(rows),
        "runs_with_interval": len(with_ci),
        "runs_with_estimate": len(with_est),
        "coverage": None,
        "coverage_mc_se": None,
        "mean_width": None,
        "median_width": None,
        "mean_abs_error": None,
        "mean_error": None,
    }
    if with_ci:
        t, lo, hi = (np.array([r[i] for r in with_ci], float) for i in (0, 2, 3))
        cov = float(np.mean((lo <= t + 1e-12) & (t <= hi + 1e-12)))
        out.update(
            coverage=cov,
            coverage_mc_se=float(np.sqrt(cov * (1 - cov) / len(with_ci))),
            mean_width=float(np.mean(hi - lo)),
            median_width=float(np.median(hi - lo)),
        )
    if with_est:
        t, e = np.array([r[0] for r in with_est], float), np.array([r[1] for r in with_est], float)
        out.update(mean_abs_error=float(np.mean(np.abs(e - t))), mean_error=float(np.mean(e - t)))
    return out


def run_scenario(name: str, sc: dict[str, Any], runs: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    store: dict[str, list] = {}
    started = time.perf_counter()
    sizes, auto_shares, audits = [], [], []
    for _ in range(runs):
        run = simulate_run(sc, rng)
        sizes.append(run["n"])
        auto_shares.append(float((run["source"] == "llm_auto").mean()))
        audits.append(int(run["audited"].sum()))
        for key, rows in evaluate_run(run).items():
            store.setdefault(key, []).extend(rows)
    wall = time.perf_counter() - started
    targets = {key: summarise(rows) for key, rows in sorted(store.items())}
    checked = {
        k: v for k, v in targets.items() if "/baseline" not in k and ("/mover-jeffreys" in k or k.endswith("/ppi"))
    }
    worst = min((v["coverage"] for v in checked.values() if v["coverage"] is not None), default=None)
    bar = sc.get("bar", True)
    return {
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in sc.items()},
        "runs": runs,
        "seed": [seed, sum(map(ord, name))],
        "wall_s": wall,
        "mean_n": float(np.mean(sizes)),
        "mean_llm_auto_share": float(np.mean(auto_shares)),
        "mean_audits": float(np.mean(audits)),
        "targets": targets,
        "default_methods_worst_coverage": worst,
        "bar_applies": bar,
        "bar_ok": (worst is not None and worst >= BAR) if bar else None,
    }


def print_table(name: str, res: dict[str, Any]) -> None:
    print(
        f"\n{name}: {res['runs']} runs, mean N {res['mean_n']:.0f}, llm_auto share {res['mean_llm_auto_share']:.2f}, "
        f"audits {res['mean_audits']:.1f}, {res['wall_s']:.1f} s; worst default coverage "
        f"{res['default_methods_worst_coverage']}" + ("" if res["bar_applies"] else " (no bar: auditor error)")
    )
    print(f"  {'target / method':<62}{'cover':>7}{'width':>8}{'|err|':>8}{'n_ci':>6}{'n_est':>6}")
    for key, v in res["targets"].items():
        cov = "-" if v["coverage"] is None else f"{v['coverage']:.3f}"
        wid = "-" if v["mean_width"] is None else f"{v['mean_width']:.3f}"
        err = "-" if v["mean_abs_error"] is None else f"{v['mean_abs_error']:.3f}"
        print(f"  {key:<62}{cov:>7}{wid:>8}{err:>8}{v['runs_with_interval']:>6}{v['runs_with_estimate']:>6}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=2000, help="simulated runs per scenario (>= 500 for the bar)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    ap.add_argument("--out", type=Path, default=RESULTS / "published_accuracy.json")
    args = ap.parse_args()
    started = time.perf_counter()
    chosen = args.scenario or list(SCENARIOS)
    results = {}
    for name in chosen:
        results[name] = run_scenario(name, SCENARIOS[name], args.runs, args.seed)
        print_table(name, results[name])
    bar_ok = all(r["bar_ok"] for r in results.values() if r["bar_applies"])
    payload = {
        "benchmark": "published_accuracy",
        "bar": f"every default interval (accuracy overall and per label_source: mover-jeffreys; class shares: ppi) "
        f"covers its true value in >= {BAR:.0%} of runs at nominal {NOMINAL:.0%}",
        "bar_ok": bar_ok,
        "runs_per_scenario": args.runs,
        "seed": args.seed,
        "wall_s": time.perf_counter() - started,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scenarios": results,
    }
    write_json(args.out, payload)
    print(f"\nbar ({BAR:.0%} coverage for the default intervals, bar scenarios): {'OK' if bar_ok else 'NOT MET'}")
    print(f"wrote {args.out} in {payload['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
