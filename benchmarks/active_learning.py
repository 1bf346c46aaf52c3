"""Active-learning evaluation harness (protocol of Schröder et al., ACL Findings 2022).

For each dataset: 25 random seed labels, then 20 rounds of 25 queries, 5 seeds; after every round a
logistic regression on all-MiniLM-L6-v2 embeddings is trained on the labelled set and scored on a
fixed test split (accuracy, macro-F1). The area under each learning curve (trapezoid over the
number of labels, divided by the x-range, so it is the curve's mean height, in points) is reported
as mean and std over seeds, for random, entropy, margin, core-set (greedy k-center), the source's
hybrid and our batch-aware hybrid.

Datasets (``labeltriage.corpora``): Rotten Tomatoes (fresh/rotten, all snippets) and CrowdFlower
tweets (negative/neutral/positive, a fixed random subset of ``--crowdflower-n``). Texts are
embedded once and cached under ``.cache/embeddings/``; the test split is fixed (seed 0) and the
pool is the rest.

Bar: batch-aware hybrid AUC > random on both datasets, and >= margin - 1 point.

Usage: ``.venv/bin/python benchmarks/active_learning.py [--seeds 5] [--rounds 20]``
Writes ``benchmarks/results/active_learning.json`` and ``active_learning.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402

from curation import active_learning as al  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / ".cache" / "embeddings"
STRATEGIES = ("random", "entropy", "margin", "core_set", "source_hybrid", "batch_hybrid")


def load_dataset(name: str, crowdflower_n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embeddings ``(n, 384)`` float32, integer labels ``(n,)`` and the class names."""
    from labeltriage import corpora

    if name == "rotten_tomatoes":
        df = corpora.rotten_tomatoes()
    else:
        df = corpora.crowdflower_tweets()
        df = df.sample(n=min(crowdflower_n, len(df)), random_state=0).reset_index(drop=True)
    classes = sorted(df["label"].unique())
    y = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    CACHE.mkdir(parents=True, exist_ok=True)
    cache = CACHE / f"{name}_{len(df)}.npz"
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        if list(data["texts_hash"]) == [hash_texts(df["text"].tolist())]:
            return data["emb"], y, classes
    from curation.embeddings import embed_texts

    t0 = time.perf_counter()
    emb = embed_texts(df["text"].tolist(), batch_size=128)
    print(f"  embedded {len(df)} {name} texts in {time.perf_counter() - t0:.0f} s", flush=True)
    np.savez(cache, emb=emb, texts_hash=np.array([hash_texts(df["text"].tolist())]))
    return emb, y, classes


def hash_texts(texts: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def fit(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int) -> LogisticRegression:
    return LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(x, y)


def full_proba(model: LogisticRegression, x: np.ndarray, n_classes: int) -> np.ndarray:
    # a class absent from the labelled set gets probability 0 (keeps columns aligned)
    p = np.zeros((x.shape[0], n_classes))
    p[:, model.classes_] = model.predict_proba(x)
    return p


def query(strategy: str, model, x_pool: np.ndarray, labelled: np.ndarray, n: int, n_classes: int, rng) -> np.ndarray:
    """Pool positions (into the unlabelled part) of the next ``n`` queries."""
    unl = np.setdiff1d(np.arange(x_pool.shape[0]), labelled)
    if strategy == "random":
        return unl[rng.choice(unl.size, n, replace=False)]
    p = full_proba(model, x_pool[unl], n_classes)
    lab_emb = x_pool[labelled]
    pick: Callable[[], np.ndarray] = {
        "entropy": lambda: al.uncertainty_sampling(p, n),
        "margin": lambda: al.margin_sampling(p, n),
        "core_set": lambda: al.core_set_sampling(x_pool[unl], lab_emb, n),
        "source_hybrid": lambda: al.hybrid_acquisition(p, x_pool[unl], lab_emb, n, 0.6),
        "batch_hybrid": lambda: al.batch_hybrid_acquisition(p, x_pool[unl], lab_emb, n),
    }[strategy]
    return unl[pick()]


def run_curve(strategy: str, x, y, train_idx, test_idx, n_classes, seed, n_seed, n_rounds, batch):
    rng = np.random.default_rng(seed)
    x_pool, y_pool = x[train_idx], y[train_idx]
    while True:  # Schröder et al.: random seed set; redraw until it holds >= 2 classes
        labelled = rng.choice(x_pool.shape[0], n_seed, replace=False)
        if np.unique(y_pool[labelled]).size >= 2:
            break
    xs, acc, f1 = [], [], []
    for r in range(n_rounds + 1):
        model = fit(x_pool[labelled], y_pool[labelled], n_classes, seed)
        pred = model.predict(x[test_idx])
        xs.append(labelled.size)
        acc.append(100 * accuracy_score(y[test_idx], pred))
        f1.append(100 * f1_score(y[test_idx], pred, average="macro", labels=np.arange(n_classes), zero_division=0))
        if r < n_rounds:
            new = query(strategy, model, x_pool, labelled, batch, n_classes, rng)
            labelled = np.concatenate([labelled, new])
    return np.array(xs), np.array(acc), np.array(f1)


def auc(xs: np.ndarray, ys: np.ndarray) -> float:
    return float(np.trapezoid(ys, xs) / (xs[-1] - xs[0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--n-seed", type=int, default=25)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--crowdflower-n", type=int, default=12000)
    ap.add_argument("--datasets", default="rotten_tomatoes,crowdflower_tweets")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict = {"protocol": vars(args), "datasets": {}}
    curves: dict = {}
    for name in args.datasets.split(","):
        print(f"{name}:", flush=True)
        x, y, classes = load_dataset(name, args.crowdflower_n)
        perm = np.random.default_rng(0).permutation(x.shape[0])
        test_idx, train_idx = perm[: args.test_size], perm[args.test_size :]
        ds: dict = {"classes": classes, "n_pool": int(train_idx.size), "n_test": int(test_idx.size), "strategies": {}}
        full = fit(x[train_idx], y[train_idx], len(classes), 0).predict(x[test_idx])
        ds["full_pool_accuracy"] = 100 * accuracy_score(y[test_idx], full)
        curves[name] = {}
        for strategy in STRATEGIES:
            t0 = time.perf_counter()
            runs = [
                run_curve(strategy, x, y, train_idx, test_idx, len(classes), s, args.n_seed, args.rounds, args.batch)
                for s in range(args.seeds)
            ]
            xs = runs[0][0]
            accs = np.array([r[1] for r in runs])
            f1s = np.array([r[2] for r in runs])
            auc_acc = [auc(xs, a) for a in accs]
            auc_f1 = [auc(xs, f) for f in f1s]
            ds["strategies"][strategy] = {
                "auc_accuracy_mean": float(np.mean(auc_acc)),
                "auc_accuracy_std": float(np.std(auc_acc)),
                "auc_macro_f1_mean": float(np.mean(auc_f1)),
                "auc_macro_f1_std": float(np.std(auc_f1)),
                "final_accuracy_mean": float(accs[:, -1].mean()),
                "labels": xs.tolist(),
                "accuracy_mean": accs.mean(0).tolist(),
                "accuracy_std": accs.std(0).tolist(),
                "macro_f1_mean": f1s.mean(0).tolist(),
                "macro_f1_std": f1s.std(0).tolist(),
                "seconds": time.perf_counter() - t0,
            }
            curves[name][strategy] = (xs, accs, f1s)
            s = ds["strategies"][strategy]
            print(
                f"  {strategy:<14} AUC acc {s['auc_accuracy_mean']:6.2f} ± {s['auc_accuracy_std']:4.2f}   "
                f"AUC macro-F1 {s['auc_macro_f1_mean']:6.2f} ± {s['auc_macro_f1_std']:4.2f}   "
                f"final acc {s['final_accuracy_mean']:6.2f}   ({s['seconds']:.0f} s)",
                flush=True,
            )
        st = ds["strategies"]
        bh, rnd, mg = (st[k]["auc_accuracy_mean"] for k in ("batch_hybrid", "random", "margin"))
        ds["bar"] = {
            "batch_hybrid_minus_random": bh - rnd,
            "batch_hybrid_minus_margin": bh - mg,
            "beats_random": bh > rnd,
            "within_1_point_of_margin": bh >= mg - 1.0,
        }
        print(f"  bar: batch_hybrid - random = {bh - rnd:+.2f}, batch_hybrid - margin = {bh - mg:+.2f} (AUC acc)")
        report["datasets"][name] = ds
    (RESULTS / "active_learning.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(curves, RESULTS / "active_learning.png")
    print(f"wrote {RESULTS / 'active_learning.json'} and active_learning.png")


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(curves), 2, figsize=(12, 4.5 * len(curves)), squeeze=False)
    for row, (name, by_strategy) in enumerate(curves.items()):
        for col, (metric, k) in enumerate((("accuracy", 1), ("macro-F1", 2))):
            ax = axes[row][col]
            for strategy, c in by_strategy.items():
                xs, vals = c[0], c[k]
                m, s = vals.mean(0), vals.std(0)
                ax.plot(xs, m, label=strategy, lw=2 if strategy == "batch_hybrid" else 1.2)
                ax.fill_between(xs, m - s, m + s, alpha=0.12)
            ax.set_title(f"{name}: {metric} (mean ± std over seeds)")
            ax.set_xlabel("labelled examples")
            ax.set_ylabel(metric + " (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
