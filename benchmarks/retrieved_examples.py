"""Retrieved examples: does showing the model the k most similar human-labelled texts help?

Issue 18, point 2. The records are the 300 per corpus of ``benchmarks/prelabel_accuracy.py``
(same sample, seed 13) on the 3-label task (``datasets_config/sentiment_3class.yaml``). The
*example pool* stands in for the gold and reviewed records of a run: ``--pool`` other records of the
same corpus (never one of the 300, never the same text) with their human label. Each record's
prompt carries its ``--k`` nearest pool texts (cosine on the bundled MiniLM embeddings) as chat
turns after the shipped few-shot examples (:func:`pipelines.prompt.render_messages` ``examples``),
nearest last.

Accuracy and confidences of the retrieved-example answers are compared with the plain answers of
``prelabels_qwen_sentiment_3class_<corpus>.parquet`` (same model, config and greedy decoding). The
time cost is measured in this run: every ``--baseline-every``-th record is also answered without
examples by a second model instance, alternating which goes first, so load hits both alike (ratios,
not seconds, on a shared machine). Also reported: the accuracy of a plain kNN vote of the k
examples' labels (what retrieval alone knows), and the exact McNemar test of the paired accuracy
difference (scipy's binomial test on the discordant pairs). Writes
benchmarks/results/retrieved_examples.{json,md} and the answers as
benchmarks/results/prelabels_qwen_sentiment_3class_retrieved_<corpus>.parquet (for
``benchmarks/certified_coverage.py``).

    .venv/bin/python benchmarks/retrieved_examples.py        # ~35-45 min on 2 cores
    .venv/bin/python benchmarks/retrieved_examples.py --n 20 --model smollm2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from curation.adapters.embeddings import embed_texts
from labeltriage import corpora
from labeltriage.config import load_task_config
from labeltriage.jsonio import write_json
from pipelines.io import record_id
from pipelines.llms import LocalLlamaLLM
from pipelines.models import resolve_model_path
from pipelines.parsing import (
    InvalidOutput,
    distribution_columns,
    label_token_probability,
    parse_answer,
    token_positions,
)
from pipelines.prompt import render_messages
from pipelines.retrieval import nearest_examples

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def corpus(name: str) -> pd.DataFrame:
    """The whole corpus with ``id, text, gold_label`` (labels in the task's names)."""
    if name == "rotten_tomatoes":
        frame = corpora.rotten_tomatoes()
        frame = frame.assign(gold_label=frame["label"].map({"fresh": "positive", "rotten": "negative"}))
    else:
        frame = corpora.crowdflower_tweets()
        frame = frame.assign(gold_label=frame["label"])
    return frame


def answer(llm: LocalLlamaLLM, messages: list[dict[str, str]], config: Any, max_tokens: int) -> dict[str, Any]:
    started = time.perf_counter()
    out = llm.generate([messages], temperature=0.0, max_tokens=max_tokens)[0]
    seconds = time.perf_counter() - started
    raw = out["generations"][0] or ""
    positions = token_positions(out["logprobs"][0])
    row: dict[str, Any] = {"seconds": seconds, "input_tokens": out["statistics"]["input_tokens"][0], "raw_output": raw}
    try:
        parsed = parse_answer(raw, config)
    except InvalidOutput as error:
        return row | {"status": "failed", "error": str(error), "llm_label": None}
    return row | {
        "status": "ok",
        "llm_label": parsed.label,
        "confidence_stated": parsed.confidence,
        "reasoning": parsed.reasoning,
        "confidence_logprob": label_token_probability(raw, [p[0] for p in positions], config),
        **distribution_columns(raw, positions, parsed.label, config),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="records per corpus (the prelabel_accuracy sample)")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--pool", type=int, default=1000)
    parser.add_argument("--baseline-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--model", default=None)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = args.results
    results.mkdir(parents=True, exist_ok=True)

    config = load_task_config("sentiment_3class")
    model = args.model or config.model.name
    generation = config.model.generation
    path = str(resolve_model_path(model))
    llms = {
        mode: LocalLlamaLLM(
            model_path=path,
            model_id=model,
            response_schema=config.output_schema(),
            n_ctx=generation.n_ctx,
            decoding="jump_forward",
        )  # fmt: skip
        for mode in ("retrieved", "plain")
    }
    for llm in llms.values():
        llm.load()
    report: dict[str, Any] = {"model": model, "k": args.k, "pool": args.pool, "n": args.n, "corpora": {}}
    started_all = time.perf_counter()
    for name in ("rotten_tomatoes", "crowdflower_tweets"):
        whole = corpus(name)
        sample = whole.sample(n=300, random_state=args.seed).head(args.n)
        rest = whole[~whole["text"].isin(set(sample["text"]))]
        pool = rest.sample(n=min(args.pool, len(rest)), random_state=args.seed + 1).reset_index(drop=True)
        cache = ROOT / "runs" / "embedding-cache"
        pool_vectors = embed_texts(pool["text"].tolist(), cache_dir=cache)
        vectors = embed_texts(sample["text"].tolist(), cache_dir=cache)
        nearest = nearest_examples(vectors, pool_vectors, args.k)  # the product's retrieval; nearest last
        rows, timing = [], []
        for i, (text, gold) in enumerate(zip(sample["text"], sample["gold_label"], strict=True)):
            examples = [(pool.at[j, "text"][: generation.max_text_chars], pool.at[j, "gold_label"]) for j in nearest[i]]
            text = text[: generation.max_text_chars]
            with_examples = render_messages(config, text, examples)
            if i % args.baseline_every == 0:  # the time cost, measured side by side
                order = ("retrieved", "plain") if (i // args.baseline_every) % 2 == 0 else ("plain", "retrieved")
                got = {}
                for mode in order:
                    messages = with_examples if mode == "retrieved" else render_messages(config, text)
                    got[mode] = answer(llms[mode], messages, config, generation.max_tokens)
                timing.append({m: (got[m]["seconds"], got[m]["input_tokens"], got[m]["llm_label"]) for m in got}
                              | {"id": (record_id(name, text),)})  # fmt: skip
                result = got["retrieved"]
            else:
                result = answer(llms["retrieved"], with_examples, config, generation.max_tokens)
            votes = pd.Series([label for _, label in examples]).value_counts()
            rows.append({"id": record_id(name, text), "text": text, "gold_label": gold, "source": name,
                         "knn_vote": votes.index[0], **result})  # fmt: skip
            if (i + 1) % 20 == 0:
                print(f"{name}: {i + 1}/{len(sample)} ({time.perf_counter() - started_all:.0f} s)", flush=True)
        frame = pd.DataFrame(rows)
        frame.drop(columns=["seconds"]).to_parquet(
            results / f"prelabels_qwen_sentiment_3class_retrieved_{name}.parquet", index=False
        )
        report["corpora"][name] = summarise(name, frame, timing)
        write_json(results / "retrieved_examples.json", report)
    report["run_time_s"] = round(time.perf_counter() - started_all, 1)
    write_json(results / "retrieved_examples.json", report)
    (results / "retrieved_examples.md").write_text(markdown(report))
    print(markdown(report))


def summarise(name: str, frame: pd.DataFrame, timing: list[dict[str, tuple]]) -> dict[str, Any]:
    plain_path = RESULTS / f"prelabels_qwen_sentiment_3class_{name}.parquet"
    plain = pd.read_parquet(plain_path).set_index("id") if plain_path.is_file() else None
    right = (frame["llm_label"] == frame["gold_label"]).to_numpy()
    out: dict[str, Any] = {
        "n": len(frame),
        "failed": int(frame["status"].ne("ok").sum()),
        "accuracy_retrieved": float(right.mean()),
        "accuracy_knn_vote": float((frame["knn_vote"] == frame["gold_label"]).mean()),
    }
    ok = frame["status"].eq("ok").to_numpy()
    for kind in ("logprob", "distribution"):
        column = frame.get(f"confidence_{kind}")
        if column is not None and column[ok].notna().all() and 0 < right[ok].mean() < 1:
            out[f"auroc_{kind}_retrieved"] = float(roc_auc_score(right[ok], column[ok]))
    if plain is not None and frame["id"].isin(plain.index).all():
        base = plain.loc[frame["id"]]
        plain_right = base["llm_label"].to_numpy() == frame["gold_label"].to_numpy()
        only_retrieved, only_plain = int((right & ~plain_right).sum()), int((~right & plain_right).sum())
        out |= {
            "accuracy_plain": float(plain_right.mean()),
            "difference": float(right.mean() - plain_right.mean()),
            "discordant": {"right_only_with_examples": only_retrieved, "right_only_plain": only_plain},
            "mcnemar_exact_p": float(binomtest(only_retrieved, only_retrieved + only_plain).pvalue)
            if only_retrieved + only_plain
            else 1.0,
        }
        base_ok = base["status"].eq("ok").to_numpy()
        if 0 < plain_right[base_ok].mean() < 1:
            out["auroc_logprob_plain"] = float(roc_auc_score(plain_right[base_ok], base["confidence_logprob"][base_ok]))
    if timing:
        retrieved_s = np.array([t["retrieved"][0] for t in timing])
        plain_s = np.array([t["plain"][0] for t in timing])
        out["timing"] = {
            "pairs": len(timing),
            "seconds_per_record_retrieved": float(retrieved_s.mean()),
            "seconds_per_record_plain": float(plain_s.mean()),
            "time_ratio": float(retrieved_s.mean() / plain_s.mean()),
            "prompt_tokens_retrieved": float(np.mean([t["retrieved"][1] for t in timing])),
            "prompt_tokens_plain": float(np.mean([t["plain"][1] for t in timing])),
            # greedy decoding is deterministic: the plain answers here are those of the parquet
            "plain_same_label_as_parquet": None
            if plain is None
            else int(
                sum(t["plain"][2] == plain.at[t["id"][0], "llm_label"] for t in timing if t["id"][0] in plain.index)
            ),
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Retrieved examples in the prompt",
        "",
        f"Model `{report['model']}`, task sentiment_3class, k = {report['k']} nearest of a pool of {report['pool']} "
        f"human-labelled records per corpus (MiniLM cosine), {report['n']} records per corpus. Run time "
        f"{report.get('run_time_s')} s. Produced by `benchmarks/retrieved_examples.py`.",
        "",
        "| corpus | accuracy plain | accuracy with examples | difference (McNemar p) | kNN vote alone | AUROC logprob "
        "plain / with | time ratio (prompt tokens) |",
        "| --- | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for name, r in report["corpora"].items():
        t = r.get("timing") or {}
        lines.append(
            f"| {name} | {r.get('accuracy_plain', float('nan')):.3f} | {r['accuracy_retrieved']:.3f} | "
            f"{r.get('difference', float('nan')):+.3f} (p = {r.get('mcnemar_exact_p', float('nan')):.3g}) | "
            f"{r['accuracy_knn_vote']:.3f} | {r.get('auroc_logprob_plain', float('nan')):.3f} / "
            f"{r.get('auroc_logprob_retrieved', float('nan')):.3f} | {t.get('time_ratio', float('nan')):.2f}x "
            f"({t.get('prompt_tokens_plain', float('nan')):.0f} -> "
            f"{t.get('prompt_tokens_retrieved', float('nan')):.0f}) |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
