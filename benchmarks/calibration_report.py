"""Calibration report: ECE before/after each calibrator on a held-out split.

Bar (issue 4): on a held-out split, ECE after calibration <= 50% of the raw ECE, on synthetic
over-confident scores and on the local model's real confidences.

* Synthetic: two over-confident generators (a smooth one, and coarse "stated" confidences in
  {0.5, 0.7, 0.9, 1.0} like small LLMs give), 4,000 records, fit on half, measure on the other
  half, 5 seeds.
* Real: every ``prelabels.parquet`` given with ``--prelabels`` (or found under ``runs/``) that has
  a ``gold_label`` column: for each confidence column (``llm_confidence``,
  ``confidence_stated``, ``confidence_logprob``, ``confidence_consistency`` when present), the
  same held-out protocol over 5 random splits.

ECE convention: top-label confidence, 15 equal-width right-closed bins, L1 weighted by bin size
(equal-mass ECE also reported).

Usage: ``.venv/bin/python benchmarks/calibration_report.py [--prelabels runs/x/prelabels.parquet ...]``
Writes ``benchmarks/results/calibration_report.json`` and ``calibration_report*.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from curation.calibration import (  # noqa: E402
    METHODS,
    calibration_metrics,
    fit_calibrator,
    reliability_diagram,
    save_reliability_diagram,
)
from labeltriage.jsonio import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CONF_COLUMNS = ("llm_confidence", "confidence_stated", "confidence_logprob", "confidence_consistency")


def synthetic(kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "smooth":
        true_p = rng.beta(4, 2, n)
        correct = rng.random(n) < true_p
        return np.clip(true_p**0.3, 0, 1), correct
    # coarse stated confidences: the model says 0.9/1.0 far more often than it is right
    conf = rng.choice([0.5, 0.7, 0.9, 1.0], n, p=[0.05, 0.15, 0.4, 0.4])
    acc = {0.5: 0.45, 0.7: 0.55, 0.9: 0.68, 1.0: 0.8}
    correct = rng.random(n) < np.vectorize(acc.get)(conf)
    return conf, correct


def held_out(conf: np.ndarray, correct: np.ndarray, seeds: int, fit_share: float = 0.5) -> dict:
    """Per method: mean/std over random splits of raw and calibrated held-out metrics."""
    out: dict = {}
    for method in METHODS:
        rows = []
        for s in range(seeds):
            perm = np.random.default_rng(1000 + s).permutation(conf.shape[0])
            k = int(fit_share * conf.shape[0])
            fit, test = perm[:k], perm[k:]
            if correct[fit].all() or not correct[fit].any():
                continue
            cal = fit_calibrator(conf[fit], correct[fit], method=method)
            before = calibration_metrics(conf[test], correct[test])
            after = calibration_metrics(cal.transform(conf[test]), correct[test])
            rows.append((before, after))
        if not rows:
            continue

        def agg(key: str, which: int, rows: list = rows) -> tuple[float, float]:
            vals = [r[which][key] for r in rows if r[which][key] is not None]
            return float(np.mean(vals)), float(np.std(vals))

        res = {"n_splits": len(rows)}
        for key in ("ece", "ece_equal_mass", "mce", "brier", "auroc"):
            res[f"raw_{key}"], res[f"raw_{key}_std"] = agg(key, 0)
            res[f"cal_{key}"], res[f"cal_{key}_std"] = agg(key, 1)
        ratios = [r[1]["ece"] / r[0]["ece"] for r in rows if r[0]["ece"] > 0]
        res["ece_ratio_mean"] = float(np.mean(ratios))
        res["ece_ratio_std"] = float(np.std(ratios))
        res["bar_ok"] = res["ece_ratio_mean"] <= 0.5
        out[method] = res
    return out


def ece_noise_floor(conf: np.ndarray, n_test: int, draws: int = 200, seed: int = 0) -> float:
    """Mean ECE of a perfectly calibrated score on ``n_test`` records with these confidences.

    Correctness is drawn as Bernoulli(confidence), so the true calibration error is 0 and what
    remains is the estimator's sampling noise. An ECE near this floor cannot be halved."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        sample = rng.choice(conf, size=n_test, replace=False)
        values.append(calibration_metrics(sample, rng.random(n_test) < sample)["ece"])
    return float(np.mean(values))


def print_table(title: str, table: dict) -> None:
    print(title)
    print(f"  {'method':<12}{'raw ECE':>10}{'cal ECE':>10}{'ratio':>8}{'raw Brier':>11}{'cal Brier':>11}  bar<=0.5")
    for m, r in table.items():
        print(
            f"  {m:<12}{r['raw_ece']:>10.4f}{r['cal_ece']:>10.4f}{r['ece_ratio_mean']:>8.2f}"
            f"{r['raw_brier']:>11.4f}{r['cal_brier']:>11.4f}  {'yes' if r['bar_ok'] else 'NO'}"
        )


def _run_name(path: Path) -> str:
    """runs/<run>/prelabels.parquet -> <run>; benchmarks/results/prelabels_qwen_x.parquet -> prelabels_qwen_x."""
    return path.parent.name if path.stem == "prelabels" else path.stem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prelabels", nargs="*", type=Path, default=None, help="prelabels.parquet with gold_label")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n", type=int, default=4000)
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "ece_convention": "top-label, 15 equal-width right-closed bins, L1 weighted; equal-mass also",
        "protocol": "fit on 50%, measure on the other 50%, mean over random splits",
        "synthetic": {},
        "real": {},
    }
    for kind in ("smooth", "coarse_stated"):
        conf, correct = synthetic(kind, args.n, 0)
        report["synthetic"][kind] = held_out(conf, correct, args.seeds)
        print_table(f"synthetic over-confident ({kind}, n={args.n}, {args.seeds} splits):", report["synthetic"][kind])
        half = args.n // 2
        cal = fit_calibrator(conf[:half], correct[:half])
        save_reliability_diagram(reliability_diagram(
            conf[half:], correct[half:],
            calibrated=cal.transform(conf[half:]), title=f"synthetic {kind}, held-out (isotonic)",
        ), RESULTS / f"calibration_report_synthetic_{kind}.png")  # fmt: skip

    paths = args.prelabels
    if paths is None:
        paths = sorted((ROOT / "runs").glob("*/prelabels.parquet")) if (ROOT / "runs").is_dir() else []
    import pandas as pd

    for path in paths:
        df = pd.read_parquet(path)
        if "gold_label" not in df.columns:
            print(f"{path}: no gold_label column, skipped")
            continue
        ok = (df["status"].astype(str) == "ok") & df["gold_label"].notna()
        df = df[ok]
        correct = (df["llm_label"].astype(str) == df["gold_label"].astype(str)).to_numpy()
        entry: dict = {"n_gold": int(len(df)), "llm_accuracy": float(correct.mean()) if len(df) else None}
        for col in CONF_COLUMNS:
            if col not in df.columns:
                continue
            conf = df[col].to_numpy(dtype=np.float64)
            m = np.isfinite(conf)
            if m.sum() < 40 or correct[m].all() or not correct[m].any():
                entry[col] = {"skipped": f"{int(m.sum())} finite values or one-class gold"}
                continue
            c, y = np.clip(conf[m], 0, 1), correct[m]
            half = c.shape[0] // 2  # the fit share of held_out's split
            entry[col] = held_out(c, y, args.seeds)
            floor = entry.setdefault("ece_noise_floor", {})[col] = ece_noise_floor(c, c.shape[0] - half)
            print_table(f"real: {path} [{col}] (n={c.shape[0]}, accuracy {y.mean():.3f}):", entry[col])
            print(f"  ECE of a perfectly calibrated score on {c.shape[0] - half} held-out records: {floor:.4f}")
            perm = np.random.default_rng(1000).permutation(c.shape[0])
            cal = fit_calibrator(c[perm[:half]], y[perm[:half]])
            save_reliability_diagram(reliability_diagram(
                c[perm[half:]], y[perm[half:]],
                calibrated=cal.transform(c[perm[half:]]), title=f"{_run_name(path)} {col}",
            ), RESULTS / f"calibration_report_real_{_run_name(path)}_{col}.png")  # fmt: skip
        report["real"][str(path)] = entry
    if not report["real"]:
        print("real confidences: no prelabels.parquet with gold_label found (pass --prelabels PATH)")
    write_json(RESULTS / "calibration_report.json", report)
    print(f"wrote {RESULTS / 'calibration_report.json'}")


if __name__ == "__main__":
    main()
