"""Benchmark: push and pull N records through `curation.adapters.argilla_io` vs a loop that logs one record per call.

One run, one fresh local stack (embedded engine): push N records (text, reasoning, suggestion with
score and agent, 6 metadata values, no vectors unless --vectors), pull them back with responses;
then the baseline, the naive loop `for r in records: dataset.records.log([r])`, on a sample (it is
too slow to run on all N). Prints records/s and ratios, writes benchmarks/results/curation_io.json.

    .venv/bin/python benchmarks/curation_io.py --records 50000 --loop-sample 300
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from argilla_stack.stack import Stack
from curation.adapters import argilla_io
from labeltriage.config import load_task_config
from labeltriage.jsonio import write_json

ROOT = Path(__file__).resolve().parent.parent


RESULTS = ROOT / "benchmarks" / "results" / "curation_io.json"


def _routed(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.array(["positive", "negative", "neutral", "mixed"])
    return pd.DataFrame(
        {
            "id": [f"bench-{i}" for i in range(n)],
            "text": [f"review {i}: the battery lasts {i % 17} hours and the screen is fine" for i in range(n)],
            "llm_label": labels[rng.integers(0, 4, n)],
            "calibrated_confidence": rng.uniform(0, 1, n),
            "reasoning": "Mentions of battery life dominate.",
            "model": "bench-model",
            "prompt_hash": "p0",
            "status": "ok",
            "route": "human_review",
            "priority": rng.uniform(0, 1, n),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--loop-sample", type=int, default=300)
    parser.add_argument("--port", type=int, default=6931)
    parser.add_argument("--vectors", action="store_true")
    args = parser.parse_args()

    config = load_task_config("sentiment")
    home = Path(tempfile.mkdtemp(prefix="bench-curation-"))
    stack = Stack(home)
    stack.up(port=args.port)
    import argilla as rg

    api_url, api_key = stack.credentials()
    client = rg.Argilla(api_url=api_url, api_key=api_key, timeout=300)
    results: dict = {
        "benchmark": "curation_io",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "records": args.records,
        "loop_sample": args.loop_sample,
        "vectors": args.vectors,
    }
    try:
        bench_config = config.model_copy(
            update={"argilla": config.argilla.model_copy(update={"dataset": "bench-push", "min_submitted": 1})}
        )
        dataset = argilla_io.ensure_dataset(client, bench_config, vector_dimensions=384 if args.vectors else None)
        routed = _routed(args.records)
        vectors = np.random.default_rng(1).normal(size=(args.records, 384)) if args.vectors else None
        records = argilla_io.build_records(routed, bench_config, vectors=vectors)
        started = time.perf_counter()
        report = argilla_io.push_records(dataset, records)
        push_s = time.perf_counter() - started
        started = time.perf_counter()
        frame, pull_report = argilla_io.pull_responses(
            client, dataset, [label.name for label in config.labels], config.argilla.question
        )
        pull_s = time.perf_counter() - started
        assert pull_report.records == args.records, pull_report
        results["push"] = {"seconds": push_s, "records_per_s": args.records / push_s, "batches": report.batches}
        results["pull"] = {"seconds": pull_s, "records_per_s": args.records / pull_s}

        loop_config = config.model_copy(
            update={"argilla": config.argilla.model_copy(update={"dataset": "bench-loop", "min_submitted": 1})}
        )
        loop_dataset = argilla_io.ensure_dataset(client, loop_config, vector_dimensions=384 if args.vectors else None)
        sample = argilla_io.build_records(
            routed.head(args.loop_sample), loop_config, vectors=None if vectors is None else vectors[: args.loop_sample]
        )
        started = time.perf_counter()
        for record in sample:
            loop_dataset.records.log([record])
        loop_push_s = time.perf_counter() - started
        started = time.perf_counter()
        pulled = 0
        http = client.api.http_client
        for record in loop_dataset.records(with_responses=False):
            # the naive pull: one request per record for its responses
            http.get(f"/api/v1/records/{record._server_id}", params={"include": "responses"}).raise_for_status()
            pulled += 1
        loop_pull_s = time.perf_counter() - started
        results["loop_one_per_call"] = {
            "push_records_per_s": args.loop_sample / loop_push_s,
            "pull_records_per_s": pulled / loop_pull_s,
        }
        results["ratio"] = {
            "push": results["push"]["records_per_s"] / results["loop_one_per_call"]["push_records_per_s"],
            "pull": results["pull"]["records_per_s"] / results["loop_one_per_call"]["pull_records_per_s"],
        }
    finally:
        stack.down()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS, results)
    print(json.dumps({key: results[key] for key in ("push", "pull", "loop_one_per_call", "ratio")}, indent=2))


if __name__ == "__main__":
    main()
