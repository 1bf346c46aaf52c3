"""Retrieved examples round by round: the LLM's accuracy as the pool of human labels grows.

Issue 18, point 2 ("measure accuracy per round"). In a run the example pool is the gold plus every
record reviewed so far (``labeltriage loop`` refreshes it each round), so each loop round is a
bigger pool. This benchmark answers the same records with pools of growing size and reports the
accuracy per size; the sizes stand for: 0 (no examples: the plain prompt), 30 (a small gold set),
120 (the gold of a run before its first review round), 400 (after one round of ~280 reviews),
1,000 (after three).

Records: the first ``--n`` of the 300 per corpus of ``benchmarks/prelabel_accuracy.py`` (seed 13).
Pools: nested prefixes of the 1,000-record pool of ``benchmarks/retrieved_examples.py`` (other
records of the same corpus with their human label, same seed), so pool 1,000 is that benchmark's
and its answers (``prelabels_qwen_sentiment_3class_retrieved_<corpus>.parquet``) are reused, as
are the plain answers (pool 0, ``prelabels_qwen_sentiment_3class_<corpus>.parquet``); the other
sizes are answered here with the same model, prompt, k nearest (MiniLM cosine, the product's
:func:`pipelines.retrieval.nearest_examples`) and greedy decoding. Stated limitation: a real
loop's reviewed records are the queue's most doubtful first, not a random sample.

Per size: accuracy, the difference with the plain prompt on the same records with the exact
McNemar p (scipy's binomial test on the discordant pairs), the kNN vote of the k examples alone,
AUROC of the label's log-probability, prompt tokens. Writes benchmarks/results/
retrieval_rounds.{json,md}.

    .venv/bin/python benchmarks/retrieval_rounds.py --corpora crowdflower_tweets   # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from retrieved_examples import answer, corpus  # noqa: E402

from curation.adapters.embeddings import embed_texts  # noqa: E402
from labeltriage.config import load_task_config  # noqa: E402
from labeltriage.jsonio import write_json  # noqa: E402
from pipelines.io import record_id  # noqa: E402
from pipelines.llms import LocalLlamaLLM  # noqa: E402
from pipelines.models import resolve_model_path  # noqa: E402
from pipelines.prompt import render_messages  # noqa: E402
from pipelines.retrieval import nearest_examples  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FULL_POOL = 1000  # retrieved_examples.py's pool


def summary(frame: pd.DataFrame, plain_right: np.ndarray) -> dict[str, Any]:
    """Accuracy and friends of one pool size's answers (``frame``: gold_label, llm_label, status,
    confidence_logprob, knn_vote, input_tokens) against the plain answers' correctness."""
    right = (frame["llm_label"] == frame["gold_label"]).to_numpy()
    ok = frame["status"].eq("ok").to_numpy()
    gained, lost = int((right & ~plain_right).sum()), int((~right & plain_right).sum())
    conf = pd.to_numeric(frame["confidence_logprob"], errors="coerce").to_numpy()
    usable = ok & np.isfinite(conf)
    return {
        "n": len(frame),
        "failed": int((~ok).sum()),
        "accuracy": float(right.mean()),
        "difference_vs_plain": float(right.mean() - plain_right.mean()),
        "discordant": {"right_only_with_examples": gained, "right_only_plain": lost},
        "mcnemar_exact_p": float(binomtest(gained, gained + lost).pvalue) if gained + lost else 1.0,
        "accuracy_knn_vote": float((frame["knn_vote"] == frame["gold_label"]).mean())
        if "knn_vote" in frame and frame["knn_vote"].notna().all()
        else None,
        "auroc_logprob": float(roc_auc_score(right[usable], conf[usable])) if 0 < right[usable].mean() < 1 else None,
        "prompt_tokens": float(frame["input_tokens"].mean()) if "input_tokens" in frame else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="records per corpus (first of the 300)")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--pools", type=int, nargs="+", default=[30, 120, 400], help="sizes answered here")
    parser.add_argument("--corpora", nargs="+", default=["crowdflower_tweets", "rotten_tomatoes"])
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not all(0 < size < FULL_POOL for size in args.pools):
        parser.error(f"--pools: sizes between 1 and {FULL_POOL - 1} (0 and {FULL_POOL} are read from results)")
    config = load_task_config("sentiment_3class")
    generation = config.model.generation
    llm = LocalLlamaLLM(model_path=str(resolve_model_path(config.model.name)), model_id=config.model.name,
                        response_schema=config.output_schema(), n_ctx=generation.n_ctx,
                        decoding="jump_forward")  # fmt: skip
    llm.load()
    report: dict[str, Any] = {"model": config.model.name, "k": args.k, "n": args.n, "seed": args.seed, "corpora": {}}
    started = time.perf_counter()
    cache = ROOT / "runs" / "embedding-cache"
    for name in args.corpora:
        plain_path = RESULTS / f"prelabels_qwen_sentiment_3class_{name}.parquet"
        full_path = RESULTS / f"prelabels_qwen_sentiment_3class_retrieved_{name}.parquet"
        if not (plain_path.is_file() and full_path.is_file()):
            sys.exit(f"{name}: run benchmarks/prelabel_accuracy.py --config sentiment_3class and "
                     "benchmarks/retrieved_examples.py first (pool 0 and 1000 come from them)")  # fmt: skip
        whole = corpus(name)
        drawn = whole.sample(n=300, random_state=args.seed)  # as retrieved_examples.py: its pool excludes all 300
        rest = whole[~whole["text"].isin(set(drawn["text"]))]
        sample = drawn.head(args.n).reset_index(drop=True)
        full = rest.sample(n=FULL_POOL, random_state=args.seed + 1).reset_index(drop=True)
        texts = [t[: generation.max_text_chars] for t in sample["text"]]
        ids = [record_id(name, t) for t in texts]
        plain = pd.read_parquet(plain_path).set_index("id").loc[ids].reset_index()
        plain_right = (plain["llm_label"] == plain["gold_label"]).to_numpy()
        vectors = embed_texts(sample["text"].tolist(), cache_dir=cache)
        pool_vectors = embed_texts(full["text"].tolist(), cache_dir=cache)
        sizes: dict[str, Any] = {"0": summary(plain, plain_right)}
        for size in args.pools:
            nearest = nearest_examples(vectors, pool_vectors[:size], min(args.k, size))
            rows = []
            for i, text in enumerate(texts):
                examples = [(full.at[j, "text"][: generation.max_text_chars], full.at[j, "gold_label"])
                            for j in nearest[i] if j >= 0]  # fmt: skip
                votes = pd.Series([label for _, label in examples]).value_counts()
                result = answer(llm, render_messages(config, text, examples), config, generation.max_tokens)
                rows.append({"id": ids[i], "gold_label": sample.at[i, "gold_label"], "knn_vote": votes.index[0],
                             **result})  # fmt: skip
            sizes[str(size)] = summary(pd.DataFrame(rows), plain_right)
            print(f"{name} pool {size}: accuracy {sizes[str(size)]['accuracy']:.3f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
        retrieved = pd.read_parquet(full_path).set_index("id").loc[ids].reset_index()
        sizes[str(FULL_POOL)] = summary(retrieved, plain_right)
        report["corpora"][name] = {"pools": sizes}
        write_json(args.results / "retrieval_rounds.json", report)
    report["run_time_s"] = round(time.perf_counter() - started, 1)
    write_json(args.results / "retrieval_rounds.json", report)
    (args.results / "retrieval_rounds.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Retrieved examples by pool size (loop rounds)",
        "",
        f"Model `{report['model']}`, task sentiment_3class, k = {report['k']}, the first {report['n']} records "
        f"per corpus; pools nested, random human-labelled records. Run time {report.get('run_time_s')} s. "
        "Produced by `benchmarks/retrieval_rounds.py` (pool 0 and 1000: the answers of "
        "`benchmarks/prelabel_accuracy.py` and `benchmarks/retrieved_examples.py`).",
        "",
        "| corpus | pool | accuracy | vs plain (McNemar p) | kNN vote alone | AUROC logprob | prompt tokens |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]

    def fmt(value: float | None, spec: str = ".3f") -> str:
        return "n/a" if value is None else format(value, spec)

    for name, entry in report["corpora"].items():
        for size, r in sorted(entry["pools"].items(), key=lambda item: int(item[0])):
            lines.append(
                f"| {name} | {size} | {r['accuracy']:.3f} | {r['difference_vs_plain']:+.3f} "
                f"(p = {r['mcnemar_exact_p']:.3g}) | {fmt(r['accuracy_knn_vote'])} | {fmt(r['auroc_logprob'])} | "
                f"{fmt(r['prompt_tokens'], '.0f')} |"
            )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
