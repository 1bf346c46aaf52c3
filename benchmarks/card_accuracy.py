"""Coverage of the accuracy figures the dataset card states, through the product's own publish code.

`benchmarks/published_accuracy.py` checks the estimators on their own audit design. This one runs the
product end to end on simulated runs with a known truth: routed records (auto-accepted with a blind
spot-check sample, an assisted review queue with a blind review-audit sample, gold records), the
answers a reviewer would give, then :func:`curation.publish.build_final_dataset` and
:func:`curation.publish.published_label_accuracy` exactly as `labeltriage publish` calls them, and
counts how often each stated 95% interval contains the true accuracy of the published labels:

* ``llm_auto``: the LLM labels published without review (true accuracy over the auto-accepted set);
* ``reviewed``: the human/consensus labels of the assisted review queue;
* ``overall``: the measured published labels (llm_auto, the assisted queue's reviewed labels and
  gold counted as right, as the card says; answered spot checks have no audit and are left out).

The simulated run: ``--records`` records with 3 labels; the LLM is right with probability rising
with its confidence (``0.55 + 0.45 c``); records with ``c >= 0.75`` are auto-accepted, a
``--spot-check-rate`` share of them is audited blind; ``--gold`` records drawn at random carry their
gold label; the rest are reviewed by one reviewer who keeps a right suggestion and corrects a wrong
one with probability ``--reviewer-catch`` (anchoring: the reviewed labels are not all right); a
``--review-audit-rate`` share of the review queue is answered again, blind, by an auditor who gives
the truth (the card's stated assumption). A spot-check audit answered with a tie never happens
here (one auditor).

Run: ``.venv/bin/python benchmarks/card_accuracy.py`` (about a minute) -> results/card_accuracy.json
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from curation.publish import RunFiles, build_final_dataset, published_label_accuracy
from labeltriage.jsonio import write_json

RESULTS = Path(__file__).resolve().parent / "results"
LABELS = ["a", "b", "c"]


def simulate(rng: np.random.Generator, args: argparse.Namespace) -> tuple[RunFiles, np.ndarray]:
    """One run: the routed frame and the answers as the product stores them, and the truth."""
    n = args.records
    truth = rng.choice(LABELS, n)
    confidence = rng.uniform(0.4, 1.0, n)
    right = rng.random(n) < 0.55 + 0.45 * confidence
    wrong = np.array([rng.choice([x for x in LABELS if x != t]) for t in truth])
    llm = np.where(right, truth, wrong)
    route = np.where(confidence >= 0.75, "auto_accept", "human_review").astype(object)
    gold = np.zeros(n, dtype=bool)
    gold[rng.choice(n, args.gold, replace=False)] = True
    route[gold] = "gold"
    auto = np.flatnonzero(route == "auto_accept")
    route[rng.choice(auto, math.ceil(args.spot_check_rate * auto.size), replace=False)] = "spot_check"
    queue = np.flatnonzero(route == "human_review")
    review_audit = np.zeros(n, dtype=bool)
    review_audit[rng.choice(queue, math.ceil(args.review_audit_rate * queue.size), replace=False)] = True
    ids = np.array([f"r{i}" for i in range(n)])
    routed = pd.DataFrame({"id": ids, "text": "t", "llm_label": llm, "calibrated_confidence": confidence,
                           "status": "ok", "route": route, "review_audit": review_audit,
                           "gold_label": np.where(gold, truth, None)})  # fmt: skip
    rows = []
    for i in np.flatnonzero(route == "spot_check"):  # blind: the auditor gives the truth
        rows.append((ids[i], "auditor", truth[i]))
    for i in queue:  # assisted: a right suggestion is kept, a wrong one corrected with probability catch
        keep = right[i] or rng.random() >= args.reviewer_catch
        rows.append((ids[i], "reviewer", llm[i] if keep else truth[i]))
    responses = pd.DataFrame(rows, columns=["record_id", "user", "label"]).assign(status="submitted")
    audits = pd.DataFrame([(ids[i], "auditor", truth[i]) for i in np.flatnonzero(review_audit)],
                          columns=["record_id", "user", "label"])  # fmt: skip
    config = {"labels": [{"name": x} for x in LABELS], "task_type": "single_label"}
    return RunFiles(Path("."), routed, responses, review_audits=audits, config=config), truth


def one_run(rng: np.random.Generator, args: argparse.Namespace) -> dict[str, tuple[bool, float] | None]:
    files, truth = simulate(rng, args)
    final = build_final_dataset(files)
    measured = published_label_accuracy(files, final)
    routed = files.routed.set_index("id")
    truth_of = dict(zip(routed.index, truth, strict=True))
    published = final.final.set_index("id")
    auto = routed.index[routed["route"].isin(["auto_accept", "spot_check"])]
    true_auto = float(np.mean([routed.at[r, "llm_label"] == truth_of[r] for r in auto]))
    queue = routed.index[routed["route"].eq("human_review")]
    reviewed = published[published.index.isin(queue) & published["label_source"].isin(["human", "consensus"])]
    true_reviewed = float(np.mean([lab == truth_of[r] for r, lab in reviewed["label"].items()]))
    # the card's overall covers the measured rows: llm_auto, the assisted queue's reviewed rows, gold
    measured_rows = published[
        published["label_source"].isin(["llm_auto", "gold"]) | published.index.isin(reviewed.index)
    ]
    true_overall = float(np.mean([lab == truth_of[r] for r, lab in measured_rows["label"].items()]))
    out: dict[str, tuple[bool, float] | None] = {}
    for name, entry, true in (
        ("llm_auto", measured.get("llm_auto"), true_auto),
        ("reviewed", (measured.get("reviewed") or {}).get("overall"), true_reviewed),
        ("overall", measured.get("overall"), true_overall),
    ):
        if entry is None or entry.get("estimate") is None:
            out[name] = None
        else:
            out[name] = (entry["low"] <= true <= entry["high"], float(entry["high"] - entry["low"]))
    return out


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    hits: dict[str, list[tuple[bool, float]]] = {"llm_auto": [], "reviewed": [], "overall": []}
    for _ in range(args.runs):
        for name, value in one_run(rng, args).items():
            if value is not None:
                hits[name].append(value)
    out = {}
    for name, values in hits.items():
        covered = np.array([v[0] for v in values])
        out[name] = {
            "runs_with_figure": len(values),
            "coverage": float(covered.mean()) if len(values) else None,
            "monte_carlo_se": float(math.sqrt(0.95 * 0.05 / len(values))) if len(values) else None,
            "mean_width": float(np.mean([v[1] for v in values])) if len(values) else None,
            "bar_93_percent": bool(len(values) and covered.mean() >= 0.93),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--gold", type=int, default=60)
    parser.add_argument("--spot-check-rate", type=float, default=0.1)
    parser.add_argument("--review-audit-rate", type=float, default=0.2)
    parser.add_argument("--reviewer-catch", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "card_accuracy.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    figures = run(args)
    report = {"benchmark": "card_accuracy", "settings": {k: v for k, v in vars(args).items() if k != "out"},
              "nominal": 0.95, "figures": figures, "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    for name, f in figures.items():
        print(f"{name:9s} coverage {f['coverage']} over {f['runs_with_figure']} runs (mean width {f['mean_width']})")
    write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
