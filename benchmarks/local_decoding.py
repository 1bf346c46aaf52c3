"""Local decoding speed: jump-forward JSON decoding vs llama.cpp's grammar, same records, same run.

The baseline is what the `local` backend did before: `create_chat_completion` with the answer
schema as a llama.cpp grammar (one forward pass per output token, the grammar applied to the
whole vocabulary every step). The candidate is `pipelines.json_decoding` (the fixed JSON scaffold
fed in one batch, only the values sampled). Both are LocalLlamaLLM instances of the default model
(Qwen2.5-Coder-1.5B Q4_K_M) on the shipped sentiment task, greedy, each with its own llama.cpp
context; records alternate between them so machine noise hits both alike.

Reports seconds per record for each and their ratio, and whether the answers agree: same label,
same stated confidence, same whole output, the label's token probability (|difference|), and
accuracy against the gold labels. Writes benchmarks/results/local_decoding.{json,md}.

    .venv/bin/python benchmarks/local_decoding.py            # 30 + 30 records, ~8 min on 2 cores
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from labeltriage import corpora  # noqa: E402
from labeltriage.config import load_task_config  # noqa: E402
from labeltriage.jsonio import write_json  # noqa: E402
from pipelines.llms import LocalLlamaLLM  # noqa: E402
from pipelines.models import resolve_model_path  # noqa: E402
from pipelines.parsing import InvalidOutput, label_token_probability, parse_answer  # noqa: E402
from pipelines.prompt import render_messages  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODES = ("grammar", "jump_forward")


def sample_records(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(corpus, text, gold label) for n Rotten Tomatoes snippets and n CrowdFlower tweets."""
    rt = corpora.rotten_tomatoes().sample(n=n, random_state=seed)
    tw = corpora.crowdflower_tweets().sample(n=n, random_state=seed)
    fresh = {"fresh": "positive", "rotten": "negative"}
    rows = [("rotten_tomatoes", t, fresh[g]) for t, g in zip(rt["text"], rt["label"], strict=True)]
    rows += [("crowdflower_tweets", t, g) for t, g in zip(tw["text"], tw["label"], strict=True)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="records per corpus")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct-q4_k_m")
    args = parser.parse_args()

    config = load_task_config(ROOT / "datasets_config" / "sentiment.yaml")
    generation = config.model.generation
    path = str(resolve_model_path(args.model))
    llms = {
        mode: LocalLlamaLLM(
            model_path=path,
            model_id=args.model,
            response_schema=config.output_schema(),
            n_ctx=generation.n_ctx,
            decoding=mode,
        )
        for mode in MODES
    }
    for llm in llms.values():
        llm.load()
    assert llms["jump_forward"]._template is not None, "the sentiment schema must take the jump-forward path"

    records = sample_records(args.n, args.seed)
    seconds = {mode: [] for mode in MODES}
    answers: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for i, (_, text, _) in enumerate(records):
        messages = render_messages(config, text[: generation.max_text_chars])
        # alternate which decoder goes first, so a slow moment is shared
        for mode in MODES if i % 2 == 0 else MODES[::-1]:
            started = time.perf_counter()
            out = llms[mode].generate([messages], temperature=0.0, max_tokens=generation.max_tokens)[0]
            seconds[mode].append(time.perf_counter() - started)
            raw = out["generations"][0]
            tokens = [(p[0]["token"], p[0]["logprob"]) for p in out["logprobs"][0] if p]
            try:
                answer = parse_answer(raw, config)
                parsed = {"label": answer.label, "stated": answer.confidence, "reasoning": answer.reasoning}
            except InvalidOutput as error:
                parsed = {"label": None, "stated": None, "error": error.reason}
            parsed["raw"] = raw
            parsed["p_label"] = label_token_probability(raw or "", tokens, config)
            parsed["output_tokens"] = out["statistics"]["output_tokens"][0]
            answers[mode].append(parsed)
        last = {mode: seconds[mode][-1] for mode in MODES}
        print(f"{i + 1}/{len(records)} grammar {last['grammar']:.2f}s jump-forward {last['jump_forward']:.2f}s")

    # The first record of each mode evaluates the whole prompt (no cached prefix yet): left out of the mean.
    per_record = {mode: float(np.mean(seconds[mode][1:])) for mode in MODES}
    grammar, fast = answers["grammar"], answers["jump_forward"]
    pairs = list(zip(grammar, fast, strict=True))
    p_diffs = [
        abs(a["p_label"] - b["p_label"]) for a, b in pairs if a["p_label"] is not None and b["p_label"] is not None
    ]
    gold = [g for _, _, g in records]
    summary = {
        "model": args.model,
        "records": len(records),
        "seconds_per_record": per_record,
        "speedup_grammar_over_jump_forward": per_record["grammar"] / per_record["jump_forward"],
        "valid_answers": {mode: sum(a["label"] is not None for a in answers[mode]) for mode in MODES},
        "same_label": sum(a["label"] == b["label"] for a, b in pairs),
        "same_stated_confidence": sum(a["stated"] == b["stated"] for a, b in pairs),
        "same_output": sum(a["raw"] == b["raw"] for a, b in pairs),
        "label_probability_abs_diff_max": max(p_diffs) if p_diffs else None,
        "accuracy": {
            mode: float(np.mean([a["label"] == g for a, g in zip(answers[mode], gold, strict=True)])) for mode in MODES
        },
        "output_tokens_mean": {mode: float(np.mean([a["output_tokens"] for a in answers[mode]])) for mode in MODES},
        "seconds_all": seconds,
        "different_outputs": [
            {"text": text, "grammar": a["raw"], "jump_forward": b["raw"]}
            for (_, text, _), (a, b) in zip(records, pairs, strict=True)
            if a["raw"] != b["raw"]
        ],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "local_decoding.json", summary)
    n = len(records)

    def row(name: str, values: dict[str, float], fmt: str) -> str:
        return f"| {name} | " + " | ".join(format(values[mode], fmt) for mode in MODES) + " |"

    lines = [
        "# Local decoding: jump-forward vs llama.cpp grammar",
        "",
        f"Command: `.venv/bin/python benchmarks/local_decoding.py --n {args.n}` ({args.model}, {n} records,"
        " alternating, greedy; mean over records 2..n).",
        "",
        "| | grammar (before) | jump-forward |",
        "|---|---|---|",
        row("seconds per record", per_record, ".2f"),
        row(f"valid answers (of {n})", summary["valid_answers"], "d"),
        row("accuracy vs gold", summary["accuracy"], ".3f"),
        row("output tokens (mean)", summary["output_tokens_mean"], ".1f"),
        "",
        f"Speed-up: **{summary['speedup_grammar_over_jump_forward']:.2f}x**. Agreement over {n} records:"
        f" same label {summary['same_label']}, same stated confidence {summary['same_stated_confidence']},"
        f" identical output {summary['same_output']}; label token probability max |difference|"
        f" {summary['label_probability_abs_diff_max']:.2g}.",
    ]
    (RESULTS / "local_decoding.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
