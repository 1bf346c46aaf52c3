"""Simulation benchmark of the audit monitor: wrong verdicts and time to a verdict, under repeated looks.

The statement under test (:mod:`curation.sequential`): blind audits of the auto-accepted records are
checked after every loop round; "drift" (precision below the target) is said with probability
<= 1 - confidence_level when the precision is at or above the target, and "confirmed" (at or above)
with probability <= 1 - confidence_level when it is at or below, however many rounds are looked at.

For every scenario (true precision ``p`` of the auto-accepted set, target ``p0``) the benchmark
draws ``--runs`` audit streams of ``--max-audits`` Bernoulli(p) outcomes, looks after every
``--per-round`` audits, and measures in the same run, for three procedures:

* ``anytime``: the product's default, Beta-mixture test supermartingales with the prior
  Beta(10 p0, 10 (1 - p0)) (:func:`curation.sequential.default_prior`), verdict when a statistic
  crosses 1/alpha (Ville's inequality);
* ``anytime_uniform``: the same with a uniform prior (Robbins 1970), for comparison;
* ``naive_fixed``: the baseline a product would write first: an exact one-sided binomial test
  (Clopper-Pearson) at level alpha re-run on all audits at every look, each direction. It is valid
  for one look only; looked at every round it is not.

Reported per scenario and procedure: the share of runs with a ``drift`` verdict and with a
``confirmed`` verdict by the last look (a *wrong* verdict is drift when p >= p0, confirmed when
p <= p0: must be <= alpha within Monte-Carlo error for a valid procedure), and the median number
of audits to the right verdict among the runs that reach it.

Run: ``.venv/bin/python benchmarks/audit_monitor.py`` (seconds) -> results/audit_monitor.{json,md}
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import numpy as np
from scipy import stats

from curation.sequential import default_prior, mixture_log_e_value
from labeltriage.jsonio import write_json

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = [(p, 0.85) for p in (0.75, 0.80, 0.85, 0.88, 0.92, 0.95)] + [(p, 0.90) for p in (0.85, 0.90, 0.95, 0.98)]


def crossings(successes: np.ndarray, looks: np.ndarray, target: float, alpha: float, procedure: str) -> dict:
    """(runs, looks) counts -> per run: the first look index with a drift / confirm verdict (-1: none)."""
    failures = looks - successes
    if procedure == "naive_fixed":
        # one-sided exact binomial p-values at every look: P(X >= S | p0) and P(X <= S | p0)
        p_confirm = stats.binom.sf(successes - 1, looks, target)
        p_drift = stats.binom.cdf(successes, looks, target)
        drift, confirm = p_drift <= alpha, p_confirm <= alpha
    else:
        prior = default_prior(target) if procedure == "anytime" else (1.0, 1.0)
        bar = math.log(1 / alpha)
        drift = mixture_log_e_value(successes, failures, target, "drift", prior) >= bar
        confirm = mixture_log_e_value(successes, failures, target, "confirm", prior) >= bar

    def first(hit: np.ndarray) -> np.ndarray:
        return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)

    return {"drift": first(drift), "confirm": first(confirm)}


def run(runs: int, max_audits: int, per_round: int, alpha: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    looks = np.arange(per_round, max_audits + 1, per_round)
    rows = []
    for p, target in SCENARIOS:
        outcomes = rng.random((runs, max_audits)) < p
        successes = np.cumsum(outcomes, axis=1)[:, looks - 1]
        se = math.sqrt(alpha * (1 - alpha) / runs)
        for procedure in ("anytime", "anytime_uniform", "naive_fixed"):
            first = crossings(successes, looks, target, alpha, procedure)
            share = {k: float((v >= 0).mean()) for k, v in first.items()}
            wrong = max(share["drift"] if p >= target else 0.0, share["confirm"] if p <= target else 0.0)
            right = "drift" if p < target else "confirm" if p > target else None
            reached = first[right][first[right] >= 0] if right else np.array([])
            rows.append(
                {
                    "true_precision": p,
                    "target": target,
                    "procedure": procedure,
                    "drift_share": share["drift"],
                    "confirm_share": share["confirm"],
                    "wrong_verdict_share": wrong,
                    "wrong_within_level": bool(wrong <= alpha + 2 * se),
                    "right_verdict": right,
                    "right_verdict_share": share[right] if right else None,
                    "median_audits_to_right_verdict": int(np.median(looks[reached])) if reached.size else None,
                }
            )
    return {"rows": rows, "monte_carlo_se_at_alpha": math.sqrt(alpha * (1 - alpha) / runs)}


def markdown(report: dict) -> str:
    lines = [
        f"# Audit monitor: {report['runs']} runs, up to {report['max_audits']} audits, a look every "
        f"{report['per_round']}, level {1 - report['alpha']:.0%}",
        "",
        "| true precision | target | procedure | drift said | confirmed said | wrong verdict (<= 5%?) | "
        "median audits to the right verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        ok = "yes" if r["wrong_within_level"] else "**NO**"
        lines.append(
            f"| {r['true_precision']} | {r['target']} | {r['procedure']} | {r['drift_share']:.1%} | "
            f"{r['confirm_share']:.1%} | {r['wrong_verdict_share']:.1%} ({ok}) | "
            f"{r['median_audits_to_right_verdict'] if r['median_audits_to_right_verdict'] is not None else '-'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--max-audits", type=int, default=300)
    parser.add_argument("--per-round", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "audit_monitor.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report = {
        "benchmark": "audit_monitor",
        "runs": args.runs,
        "max_audits": args.max_audits,
        "per_round": args.per_round,
        "alpha": args.alpha,
        "seed": args.seed,
        "python": platform.python_version(),
        **run(args.runs, args.max_audits, args.per_round, args.alpha, args.seed),
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    table = markdown(report)
    print(table)
    write_json(args.out, report)
    args.out.with_suffix(".md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
