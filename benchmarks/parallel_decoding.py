"""Local pre-labelling throughput: records decoded one at a time vs several together, same run.

The default model (Qwen2.5-Coder-1.5B Q4_K_M) on the demo's task (`sentiment_3class`), greedy, 30
Rotten Tomatoes snippets + 30 CrowdFlower tweets with their gold labels. Each setting runs in its own
process (a clean peak RSS), one after another, in batches of 4 x the width as `prelabel` does,
after one warm-up record (which evaluates the shared instructions):

* width 1 (today's one-at-a-time jump-forward path) and 4, 8, 16 (`model.parallel`), with OpenMP's
  passive wait policy (the product's);
* beside one busy process (a second program wanting a core, as on a shared machine): width 1 and
  16, each with the passive policy and with OpenMP's default (idle threads spin before sleeping).

Reports records/s and the ratio to width 1 measured in the same run, labels identical to width 1
(of 60), accuracy on gold, peak RSS. Writes benchmarks/results/parallel_decoding.{json,md}.

Why the ceiling is low on a small CPU: ``--forward-passes`` times one llama.cpp forward pass of
1, 2, 4, 8, 16 and 32 tokens (one sequence, after a 200-token context; median of 5) and adds the
tokens/s per batch size to the same files. If a pass of several tokens cost what a pass of one
does (a memory-bound CPU), decoding several records together would multiply records/s; where the
cost grows with the tokens (compute-bound), it cannot.

    .venv/bin/python benchmarks/parallel_decoding.py        # about 20 minutes on 2 cores
    .venv/bin/python benchmarks/parallel_decoding.py --forward-passes   # 1 minute
    .venv/bin/python benchmarks/parallel_decoding.py --reasoning        # about 10 minutes

``--reasoning`` (``model.generation.reasoning``): width 1 and 16 with every reasoning, then width
16 with ``review_only`` at each ``--review-shares`` value: every record answered without its
reasoning, then that share given one by a second model call as `push` does. Default shares: 0.21,
the demo's review queue (105 of its 500 records are neither auto-accepted nor gold, README; its
blind share gets no reasoning, so this is an upper bound), and 0.03, the source's scenario (15,000
of 500,000).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local_decoding import sample_records  # noqa: E402  (the same 30 + 30 records)

from labeltriage.jsonio import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODEL = "qwen2.5-coder-1.5b-instruct-q4_k_m"
IDLE_WIDTHS = (1, 4, 8, 16)
BUSY = [(1, "passive"), (16, "passive"), (1, "spin"), (16, "spin")]


def worker(width: int, n: int, seed: int, reasoning: str = "all", review_share: float = 0.0) -> dict[str, Any]:
    """One setting in this process: answers, seconds per record, peak RSS.

    ``reasoning`` ``review_only``: the answers without their reasoning (jump-forward stopped before
    it), then, as `push` does (labeltriage.reasoning), a second model loaded and asked for the full
    answer of ``ceil(review_share x records)`` of them (every k-th record), both timed."""
    import math

    from labeltriage.config import load_task_config
    from pipelines.llms import LocalLlamaLLM
    from pipelines.models import resolve_model_path
    from pipelines.parsing import InvalidOutput, parse_answer
    from pipelines.prompt import render_messages

    config = load_task_config(ROOT / "datasets_config" / "sentiment_3class.yaml")
    generation = config.model.generation

    def model(stop_before: str | None) -> LocalLlamaLLM:
        llm = LocalLlamaLLM(
            model_path=str(resolve_model_path(MODEL)),
            model_id=MODEL,
            response_schema=config.output_schema(),
            n_ctx=generation.n_ctx,
            parallel=width,
            stop_before=stop_before,
        )
        llm.load()
        return llm

    def answer(llm: LocalLlamaLLM, chats: list) -> list[dict]:
        outputs: list[dict] = []
        for start in range(0, len(chats), 4 * width):
            outputs += llm.generate(chats[start : start + 4 * width], max_tokens=generation.max_tokens)
        return outputs

    llm = model("reasoning" if reasoning == "review_only" else None)
    records = sample_records(n, seed)
    chats = [render_messages(config, text[: generation.max_text_chars]) for _, text, _ in records]
    llm.generate([chats[0]], max_tokens=generation.max_tokens)  # warm-up: the shared instructions
    started = time.perf_counter()
    outputs = answer(llm, chats)
    elapsed = time.perf_counter() - started
    second_pass: dict[str, Any] = {}
    if reasoning == "review_only":
        llm.unload()
        asked = math.ceil(review_share * len(chats))
        step = len(chats) / asked if asked else 0
        chosen = [chats[int(i * step)] for i in range(asked)]
        started = time.perf_counter()
        full = answer(model(None), chosen) if chosen else []  # a new model, as push builds one
        second_pass = {
            "asked": asked,
            "seconds": time.perf_counter() - started,
            "output_tokens": sum(out["statistics"]["output_tokens"][0] or 0 for out in full),
        }
        elapsed += second_pass["seconds"]
    labels: list[str | None] = []
    for out in outputs:
        try:
            labels.append(parse_answer(out["generations"][0], config).label)  # type: ignore[arg-type]
        except (InvalidOutput, TypeError):
            labels.append(None)
    return {
        "width": width,
        "seconds": elapsed,
        "records": len(chats),
        "labels": labels,
        "gold": [gold for _, _, gold in records],
        "output_tokens": sum(out["statistics"]["output_tokens"][0] or 0 for out in outputs)
        + second_pass.get("output_tokens", 0),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "reasoning": reasoning,
        "review_share": review_share if reasoning == "review_only" else None,
        "second_pass": second_pass or None,
    }


def forward_passes() -> list[dict[str, float]]:
    """Seconds of one forward pass of n tokens (one sequence, 200 tokens already in context)."""
    import numpy as np

    from pipelines.llms import _LlamaContextTokens, import_llama
    from pipelines.models import resolve_model_path

    llama = import_llama()(model_path=str(resolve_model_path(MODEL)), n_ctx=512, verbose=False)
    tokens = _LlamaContextTokens(llama)
    text = tokens.tokenize(b"You are a careful annotator of short product reviews and tweets. " * 30)
    tokens.feed(text[:200], 199)
    rows = []
    for size in (1, 2, 4, 8, 16, 32):
        times = []
        for _ in range(5):
            tokens.reuse_prefix(text[:201])  # back to the 200-token context
            started = time.perf_counter()
            tokens.feed(text[200 : 200 + size], size - 1)
            times.append(time.perf_counter() - started)
        seconds = float(np.median(times))
        rows.append({"tokens": size, "seconds": seconds, "tokens_per_second": size / seconds})
        print(f"forward pass of {size:2d} tokens: {seconds * 1000:.0f} ms, {size / seconds:.1f} tokens/s", flush=True)
    llama.close()
    return rows


def run_setting(
    width: int, policy: str, n: int, seed: int, busy: bool, reasoning: str = "all", review_share: float = 0.0
) -> dict[str, Any]:
    # "": libgomp falls back to its own default (spin, then sleep), and the product's setdefault keeps it
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE" if policy == "passive" else "")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        args = [sys.executable, __file__, "--worker", "--width", str(width), "--n", str(n), "--seed", str(seed)]
        args += ["--mode", reasoning, "--review-share", str(review_share)]
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result |= {"policy": policy, "busy": busy}
    rate = result["records"] / result["seconds"]
    what = f"{'busy' if busy else 'idle'}{f' {reasoning} {review_share:.0%}' if reasoning != 'all' else ''}"
    print(f"width {width:2d} {policy:7s} {what}: {1 / rate:.2f} s/record", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="records per corpus")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--forward-passes", action="store_true", help="only time forward passes by batch size")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="all", help=argparse.SUPPRESS)
    parser.add_argument(
        "--reasoning", action="store_true",
        help="model.generation.reasoning: width 1 and 16 with every reasoning vs width 16 review_only at "
        "the --review-shares (records given a reasoning before a push); adds to the same files",
    )  # fmt: skip
    parser.add_argument("--review-shares", default="0.21,0.03", help="comma-separated shares for --reasoning")
    parser.add_argument("--review-share", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.width, args.n, args.seed, args.mode, args.review_share)))
        return
    if args.reasoning:
        shares = [float(share) for share in args.review_shares.split(",")]
        runs = [run_setting(1, "passive", args.n, args.seed, busy=False)]
        runs += [run_setting(16, "passive", args.n, args.seed, busy=False)]
        runs += [run_setting(16, "passive", args.n, args.seed, False, "review_only", share) for share in shares]
        report = json.loads((RESULTS / "parallel_decoding.json").read_text())
        report["reasoning"] = [reasoning_summary(r, runs[0]) for r in runs]
        write_json(RESULTS / "parallel_decoding.json", report)
        write_markdown(report, args.n)
        return
    if args.forward_passes:
        passes = forward_passes()
        report = json.loads((RESULTS / "parallel_decoding.json").read_text())
        report["forward_passes"] = passes
        write_json(RESULTS / "parallel_decoding.json", report)
        write_markdown(report, args.n)
        return

    idle = [run_setting(w, "passive", args.n, args.seed, busy=False) for w in IDLE_WIDTHS]
    busy = [run_setting(w, policy, args.n, args.seed, busy=True) for w, policy in BUSY]
    base = idle[0]

    def summary(r: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
        same = sum(a == b for a, b in zip(r["labels"], base["labels"], strict=True))
        right = sum(a == g for a, g in zip(r["labels"], r["gold"], strict=True))
        return {
            "width": r["width"],
            "policy": r["policy"],
            "busy": r["busy"],
            "seconds_per_record": r["seconds"] / r["records"],
            "records_per_second": r["records"] / r["seconds"],
            "speedup_vs_reference": reference["seconds"] / r["seconds"],
            "same_label_as_width_1": same,
            "valid": sum(label is not None for label in r["labels"]),
            "accuracy": right / r["records"],
            "output_tokens_mean": r["output_tokens"] / r["records"],
            "peak_rss_mb": r["peak_rss_mb"],
        }

    rows = [summary(r, base) for r in idle] + [summary(r, busy[0]) for r in busy]
    report = {
        "model": MODEL,
        "task": "sentiment_3class",
        "records": base["records"],
        "cores": os.cpu_count(),
        "reference": "width 1, passive; for the busy rows: width 1, passive, busy",
        "settings": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "parallel_decoding.json", report)
    write_markdown(report, args.n)


def reasoning_summary(r: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """A ``--reasoning`` row: seconds and output tokens per record (both passes), vs ``base``."""
    return {
        "width": r["width"],
        "reasoning": r["reasoning"],
        "review_share": r["review_share"],
        "second_pass_records": (r["second_pass"] or {}).get("asked", 0),
        "second_pass_seconds": (r["second_pass"] or {}).get("seconds", 0.0),
        "seconds_per_record": r["seconds"] / r["records"],
        "speedup_vs_width_1_all": base["seconds"] / r["seconds"],
        "output_tokens_per_record": r["output_tokens"] / r["records"],
        "same_label_as_width_1_all": sum(a == b for a, b in zip(r["labels"], base["labels"], strict=True)),
        "accuracy": sum(a == g for a, g in zip(r["labels"], r["gold"], strict=True)) / r["records"],
        "peak_rss_mb": r["peak_rss_mb"],
    }


def write_markdown(report: dict[str, Any], n: int) -> None:
    rows, records = report["settings"], report["records"]
    lines = [
        "# Local pre-labelling: records decoded together",
        "",
        f"Command: `.venv/bin/python benchmarks/parallel_decoding.py --n {n}` ({MODEL}, sentiment_3class, "
        f"{records} records, {report['cores']} cores; each setting in its own process; ratios within this run).",
        "",
        "| width | OpenMP wait | machine | s/record | x width 1 | same label as width 1 | accuracy | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['width']} | {row['policy']} | {'one busy process beside' if row['busy'] else 'idle'} | "
            f"{row['seconds_per_record']:.2f} | {row['speedup_vs_reference']:.2f}x | "
            f"{row['same_label_as_width_1']}/{records} | {row['accuracy']:.3f} | {row['peak_rss_mb']:.0f} |"
        )
    if report.get("reasoning"):
        title = f"Reasoning on demand (`--reasoning`; `model.generation.reasoning`; {records} records, one run):"
        lines += ["", title, ""]
        lines += ["| width | reasoning | records given a reasoning before push | s/record (both passes) | "
                  "x width 1 all | output tokens/record | same label as width 1 all | accuracy |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in report["reasoning"]:
            share = f"{row['second_pass_records']} ({row['review_share']:.0%})" if row["reasoning"] != "all" else "-"
            lines.append(
                f"| {row['width']} | {row['reasoning']} | {share} | {row['seconds_per_record']:.2f} | "
                f"{row['speedup_vs_width_1_all']:.2f}x | {row['output_tokens_per_record']:.1f} | "
                f"{row['same_label_as_width_1_all']}/{records} | {row['accuracy']:.3f} |"
            )
    if report.get("forward_passes"):
        lines += ["", "One forward pass by batch size (one sequence; `--forward-passes`):", ""]
        lines += ["| tokens | ms | tokens/s |", "|---|---|---|"]
        for row in report["forward_passes"]:
            lines.append(f"| {row['tokens']} | {row['seconds'] * 1000:.0f} | {row['tokens_per_second']:.1f} |")
    (RESULTS / "parallel_decoding.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
