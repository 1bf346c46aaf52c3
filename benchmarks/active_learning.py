"""Active-learning evaluation harness (protocol of Schröder et al., ACL Findings 2022).

For each dataset: 25 random seed labels, then 20 rounds of 25 queries, 5 seeds; after every round a
logistic regression on all-MiniLM-L6-v2 embeddings is trained on the labelled set and scored on a
fixed test split (accuracy, macro-F1). The area under each learning curve (trapezoid over the
number of labels, divided by the x-range, so it is the curve's mean height, in points) is reported
as mean and std over seeds, for random, entropy (Lewis & Gale, SIGIR 1994), margin (Scheffer et
al., IDA 2001), core-set (greedy k-center, Sener & Savarese, ICLR 2018), the uncertainty/diversity
hybrid of Section 13.5 "LLM-Assisted Labeling & Active Learning" (course text), Code Fragment
13.5.2 (``source_hybrid`` in the results) and our batch-aware hybrid (near-duplicate prefilter as
Zhdanov 2019). Settles (2009), "Active Learning Literature Survey", surveys these strategies.

Datasets (``labeltriage.corpora``): Rotten Tomatoes (fresh/rotten, all snippets) and CrowdFlower
tweets (negative/neutral/positive, a fixed random subset of ``--crowdflower-n``). Texts are
embedded once and cached under ``.cache/embeddings/``; the test split is fixed (seed 0) and the
pool is the rest.

Bar: batch-aware hybrid AUC > random on both datasets, and >= margin - 1 point.

Your own data: ``--input FILE --text-column TEXT --label-column LABEL`` runs the same protocol on
any labelled file ``pipelines.io.read_table`` reads (CSV, TSV, JSONL, JSON, parquet, a saved
``datasets`` dataset); rows without a text or a label are left out and counted. The test split
is then a fifth of the rows (at most 2000) unless ``--test-size`` says otherwise, and the file
must hold the seed set plus every round's queries in its pool (the error says which option to
lower). An unknown ``--datasets`` name is refused (exit code 2).

Usage: ``.venv/bin/python benchmarks/active_learning.py [--seeds 5] [--rounds 20]``
       ``.venv/bin/python benchmarks/active_learning.py --input reviews.csv --text-column review \\
       --label-column rating --rounds 10 --batch 20``
Writes ``benchmarks/results/active_learning.json`` and ``active_learning.png`` (with ``--input``:
``active_learning_<file stem>.json`` and ``.png``, so the published figures stay; ``--output-dir``
moves them).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402

from curation import active_learning as al  # noqa: E402
from labeltriage.jsonio import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / ".cache" / "embeddings"
STRATEGIES = ("random", "entropy", "margin", "core_set", "source_hybrid", "batch_hybrid")
CORPORA = ("rotten_tomatoes", "crowdflower_tweets")
DEFAULT_TEST_SIZE = 2000


class BenchmarkInputError(ValueError):
    """The options or the user's file cannot run the protocol; the message says how to fix it."""


def corpus_frame(name: str, crowdflower_n: int) -> pd.DataFrame:
    """Columns ``text``, ``label`` of a corpus in :data:`CORPORA`; raises BenchmarkInputError otherwise."""
    from labeltriage import corpora

    if name == "rotten_tomatoes":
        return corpora.rotten_tomatoes()
    if name == "crowdflower_tweets":
        df = corpora.crowdflower_tweets()
        return df.sample(n=min(crowdflower_n, len(df)), random_state=0).reset_index(drop=True)
    raise BenchmarkInputError(f"unknown dataset {name!r}: known are {', '.join(CORPORA)}")


def input_frame(path: Path, text_column: str, label_column: str) -> tuple[pd.DataFrame, int]:
    """The user's labelled file as columns ``text``, ``label`` (both str), and the rows left out.

    Read by ``pipelines.io.read_table``; a row whose text is empty or whose label is missing is
    left out (counted in the second value). Raises BenchmarkInputError: unreadable file, missing
    column, a list-valued label (multi-label), fewer than two classes.
    """
    from pipelines.io import InputError, read_table

    try:
        frame = read_table(path)
    except InputError as exc:
        raise BenchmarkInputError(str(exc)) from None
    for option, column in (("--text-column", text_column), ("--label-column", label_column)):
        if column not in frame.columns:
            raise BenchmarkInputError(
                f"{path}: no column {column!r} (columns: {', '.join(map(str, frame.columns))}). Fix: pass {option} NAME"
            )
    text, label = frame[text_column], frame[label_column]
    if label.map(lambda v: isinstance(v, list | tuple | np.ndarray)).any():
        raise BenchmarkInputError(
            f"{path}: column {label_column!r} holds lists; the benchmark is single-label. Fix: one label per row"
        )
    missing = lambda v: v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == ""  # noqa: E731
    keep = ~(text.map(missing) | label.map(missing))
    # a label column of integers with a gap is read as floats: 5.0 is the label "5"
    as_text = lambda v: str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v)  # noqa: E731
    out = pd.DataFrame({"text": text[keep].astype(str), "label": label[keep].map(as_text)}).reset_index(drop=True)
    if out["label"].nunique() < 2:
        raise BenchmarkInputError(
            f"{path}: column {label_column!r} has {out['label'].nunique()} distinct label(s) in its "
            f"{len(out)} usable rows; active learning needs at least 2. Fix: pass the right --label-column"
        )
    return out, int((~keep).sum())


def embed_frame(name: str, df: pd.DataFrame, cache_dir: Path = CACHE) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embeddings ``(n, 384)`` float32, integer labels ``(n,)`` and the class names of ``df``."""
    classes = sorted(df["label"].unique())
    y = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = cache_dir / f"{name}_{len(df)}.npz"
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        if list(data["texts_hash"]) == [hash_texts(df["text"].tolist())]:
            return data["emb"], y, classes
    from curation.adapters.embeddings import embed_texts

    t0 = time.perf_counter()
    emb = embed_texts(df["text"].tolist(), batch_size=128)
    print(f"  embedded {len(df)} {name} texts in {time.perf_counter() - t0:.0f} s", flush=True)
    np.savez(cache, emb=emb, texts_hash=np.array([hash_texts(df["text"].tolist())]))
    return emb, y, classes


def check_budget(name: str, n: int, test_size: int, n_seed: int, rounds: int, batch: int) -> None:
    """Raise BenchmarkInputError unless the pool holds the seed set and every round's queries."""
    pool = n - test_size
    need = n_seed + rounds * batch
    if test_size < 1 or pool < need:
        fits = (pool - n_seed) // batch if pool > n_seed else 0
        fix = f"pass --rounds {fits}" if fits >= 1 else "pass a smaller --test-size, --n-seed or --batch"
        raise BenchmarkInputError(
            f"{name}: {n} labelled rows leave a pool of {pool} after the {test_size}-row test split, but "
            f"--n-seed {n_seed} + --rounds {rounds} x --batch {batch} needs {need}. Fix: {fix}"
        )


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options; refuses (exit code 2) an unknown ``--datasets`` name and ``--datasets`` with ``--input``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--n-seed", type=int, default=25)
    ap.add_argument(
        "--test-size", type=int, default=None,
        help=f"test split rows (default {DEFAULT_TEST_SIZE}; with --input a fifth of the rows, at most that)",
    )  # fmt: skip
    ap.add_argument("--crowdflower-n", type=int, default=12000)
    ap.add_argument("--datasets", default=None, help=f"comma-separated, from {', '.join(CORPORA)} (default: both)")
    ap.add_argument("--input", type=Path, default=None, help="your own labelled file instead of the corpora")
    ap.add_argument("--text-column", default="text", help="with --input: the column holding the text")
    ap.add_argument("--label-column", default="label", help="with --input: the column holding the label")
    ap.add_argument("--output-dir", type=Path, default=RESULTS, help="where the JSON and PNG go")
    ap.add_argument("--cache-dir", type=Path, default=CACHE, help="embedding cache")
    args = ap.parse_args(argv)
    if args.input is not None and args.datasets is not None:
        ap.error("pass --datasets or --input, not both")
    if args.input is None:
        names = [n.strip() for n in (args.datasets or ",".join(CORPORA)).split(",") if n.strip()]
        unknown = [n for n in names if n not in CORPORA]
        if unknown or not names:
            given = ", ".join(map(repr, unknown)) or "(none given)"
            ap.error(
                f"unknown dataset(s) {given}: known are {', '.join(CORPORA)}; "
                "for your own data pass --input FILE --text-column TEXT --label-column LABEL"
            )
        args.datasets = ",".join(names)
    for option in ("seeds", "rounds", "batch", "n_seed"):
        if getattr(args, option) < 1:
            ap.error(f"--{option.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BenchmarkInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """Run the protocol on the corpora or ``args.input``; writes the JSON and PNG; returns 0."""
    out_dir = args.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "active_learning" if args.input is None else f"active_learning_{args.input.stem}"
    sources: list[tuple[str, pd.DataFrame, dict]] = []
    if args.input is None:
        for name in args.datasets.split(","):
            sources.append((name, corpus_frame(name, args.crowdflower_n), {}))
    else:
        df, dropped = input_frame(args.input, args.text_column, args.label_column)
        info = {"source": str(args.input), "text_column": args.text_column, "label_column": args.label_column,
                "rows_used": len(df), "rows_left_out": dropped}  # fmt: skip
        sources.append((args.input.name, df, info))
        if dropped:
            print(f"{args.input}: left out {dropped} row(s) with no text or no label", flush=True)
    plans = []
    for name, df, info in sources:  # check every budget before the slow part
        default_test = DEFAULT_TEST_SIZE if args.input is None else min(DEFAULT_TEST_SIZE, len(df) // 5)
        test_size = args.test_size if args.test_size is not None else default_test
        check_budget(name, len(df), test_size, args.n_seed, args.rounds, args.batch)
        plans.append((name, df, info, test_size))
    report: dict = {"protocol": vars(args), "datasets": {}}  # write_json turns the paths into strings
    curves: dict = {}
    for name, df, info, test_size in plans:
        print(f"{name}:", flush=True)
        cache_name = name if args.input is None else f"input_{Path(name).stem}"
        x, y, classes = embed_frame(cache_name, df, args.cache_dir)
        perm = np.random.default_rng(0).permutation(x.shape[0])
        test_idx, train_idx = perm[:test_size], perm[test_size:]
        if np.unique(y[train_idx]).size < 2:
            raise BenchmarkInputError(f"{name}: the pool left after the test split holds one class only")
        ds: dict = {**info, "classes": classes, "n_pool": int(train_idx.size), "n_test": int(test_idx.size),
                    "strategies": {}}  # fmt: skip
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
    write_json(out_dir / f"{stem}.json", report)
    plot(curves, out_dir / f"{stem}.png")
    print(f"wrote {out_dir / (stem + '.json')} and {stem}.png")
    return 0


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
    sys.exit(main())
