"""The source's scenario at its own scale: 500,000 short texts through every step of the product.

Section 13.5's "Real-World Scenario" (course text): pre-label a large corpus with an LLM, calibrate
on gold, route, send the highest-priority records to people, retrain, publish. Here each step is
the `labeltriage` CLI in its own process (its peak RSS its own: ``VmHWM``, polled), against:

* a simulated LLM behind a real OpenAI-compatible HTTP server (uvicorn, its own process) that
  answers in ``--latency`` seconds (default 0.2, a hosted API's) with a *known* accuracy: the
  record's true label with probability p, else another label, where p in (0.5, 1] is drawn per
  text from its hash (:func:`simulated_answer`); it states p as the confidence and as the label token's probability (a
  calibrated model by construction, so the guarantee has a truth to be checked against);
* the local Argilla stack (embedded search engine, SQLite), started for the run;
* the test Hub (tests/support/hub_server.py, the Hub's own HTTP protocol) for publish.

The texts are the CrowdFlower tweets (37,243 real texts, 3 crowd labels), each used up to
``ceil(N / 37,243)`` times with a distinct suffix `` (#k)`` so every text is distinct (the product
calls the model once per distinct text). Gold: ``--gold`` random rows carry their true label in
``gold_label``. Reviewers: one simulated annotator answers every pushed record (the true label
with probability 0.95) through Argilla's bulk responses endpoint (``POST /api/v1/me/responses/bulk``).

Per step: wall seconds, peak RSS (MB) of the step's process, records in and out (every record must
be accounted for) and each step's own counts. Prints a table and writes
benchmarks/results/source_scale.{json,md} (``--tag`` names other sizes' files).

    .venv/bin/python benchmarks/source_scale.py --records 20000 --review 600 --tag 20k
    .venv/bin/python benchmarks/source_scale.py                       # 500,000: about 2.5 hours
    .venv/bin/python benchmarks/source_scale.py --keep --steps loop,publish   # resume in the kept work dir

With ``--keep`` the work dir stays (a 500,000-record one holds several GB) and the results keep
the figures of the steps not rerun.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from prelabel_throughput import asgi_json, chat_completion, chat_request, free_port, stop, wait_ready  # noqa: E402
from stack_scale import BENCH_DIR, Engine, say  # noqa: E402

RESULTS = BENCH_DIR / "results"
LABELS = ["positive", "negative", "neutral"]
SUFFIX = re.compile(r" \(#\d+\)$")
REVIEWER_ACCURACY = 0.95
SPOT_CHECK_RATE = 0.002
STEPS = ("prelabel", "calibrate", "route", "push", "review", "pull", "loop", "student", "publish")
_TRUTH: dict[str, str] = {}


# -- the simulated LLM (ASGI app; uvicorn runs it in its own process) -----------------------------
def _unit(text: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def simulated_answer(text: str, truth: str) -> tuple[str, float]:
    """The simulated LLM's (label, p): right with probability p = 1 - u^2 / 2, u uniform by hash
    (accuracy E[p] = 5/6, the source's LLM's 82%; a quarter of the answers have p >= 0.97)."""
    p = 1.0 - 0.5 * _unit(text, "p") ** 2
    if _unit(text, "right") < p:
        return truth, p
    others = [label for label in LABELS if label != truth]
    return others[int(_unit(text, "other") * len(others))], p


def _load_truth() -> None:
    from labeltriage.corpora import crowdflower_tweets

    tweets = crowdflower_tweets()
    _TRUTH.update(zip(tweets["text"].astype(str), tweets["label"].astype(str), strict=True))


def _truth_of(text: str) -> str:
    """The crowd's label of the tweet behind ``text`` (a text the prompt changed, e.g. a redacted
    injection: a label by hash, so the simulation never fails a request)."""
    base = SUFFIX.sub("", text.replace("\u200b", ""))
    return _TRUTH.get(base) or LABELS[int(_unit(base, "unknown") * len(LABELS))]


async def simulated_llm(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    request = await chat_request(scope, receive, send, on_startup=_load_truth)
    if request is None:
        return
    await asyncio.sleep(float(os.environ.get("LT_SIM_LATENCY_S", "0.2")))
    if not request.get("messages"):  # seen 15 times in 95,000 requests: what was sent?
        print(f"simulated LLM: no messages in {scope['path']}: {sorted(request)}", flush=True)
        await asgi_json(send, {"error": {"message": "no messages"}}, status=500)  # retried by the client
        return
    text = request["messages"][-1]["content"].split("<text>", 1)[-1].rsplit("</text>", 1)[0].strip()
    label, p = simulated_answer(text, _truth_of(text))
    content = json.dumps({"label": label, "confidence": round(p, 3), "reasoning": "simulated"})
    logprob = {label: math.log(p)}
    tokens = [{"token": t, "logprob": logprob.get(t, 0.0), "top_logprobs": []} for t in re.findall(r"\w+|\W", content)]
    await asgi_json(send, chat_completion(request, content, tokens, (250, 20)))


# -- inputs ----------------------------------------------------------------------------------------
def make_input(n_records: int, n_gold: int, path: Path, seed: int) -> dict[str, str]:
    """Write ``n_records`` distinct texts (tweets, repeated with a `` (#k)`` suffix) to ``path``
    (parquet: text, gold_label on ``n_gold`` random rows); returns text -> true label."""
    from labeltriage.corpora import crowdflower_tweets

    tweets = crowdflower_tweets()
    base, labels = tweets["text"].astype(str).to_numpy(), tweets["label"].astype(str).to_numpy()
    index = np.arange(n_records)
    texts = [base[i] if i < len(base) else f"{base[i % len(base)]} (#{i // len(base)})" for i in index]
    truth = labels[index % len(base)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_records)
    gold = np.full(n_records, None, dtype=object)
    gold_rows = rng.choice(n_records, size=n_gold, replace=False)
    gold[gold_rows] = truth[gold_rows]
    frame = pd.DataFrame({"text": np.asarray(texts, dtype=object)[order], "gold_label": gold[order]})
    frame.to_parquet(path, index=False)
    return dict(zip(texts, truth, strict=True))


def write_config(path: Path, base_url: str, concurrency: int, dataset: str) -> None:
    import yaml

    config = yaml.safe_load((ROOT / "datasets_config" / "sentiment_3class.yaml").read_text())
    config["model"].update(backend="openai", name="simulated", base_url=base_url, concurrency=concurrency)
    config["argilla"].update(dataset=dataset, min_submitted=1)
    # a few hundred blind audits measure the auto-accepted share; 5% of 250,000 would be 12,500
    config["thresholds"]["spot_check_rate"] = SPOT_CHECK_RATE
    path.write_text(yaml.safe_dump(config, sort_keys=False))


# -- steps -----------------------------------------------------------------------------------------
def run_step(name: str, argv: list[str], env: dict[str, str], logs: Path) -> dict[str, Any]:
    """Run one CLI step in its own process: wall seconds and the process's peak RSS (``VmHWM``, polled)."""
    say(f"{name}: {' '.join(argv[1:])}")
    started = time.perf_counter()
    peak_kb = 0
    with (logs / f"{name}.log").open("w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        while process.poll() is None:  # VmHWM only grows: its last reading is the step's peak (to 0.2 s)
            peak_kb = max(peak_kb, _high_water_kb(process.pid))
            time.sleep(0.2)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        tail = (logs / f"{name}.log").read_text().splitlines()[-15:]
        raise SystemExit(f"step {name} failed (exit {process.returncode}):\n" + "\n".join(tail))
    step = {"step": name, "wall_s": round(wall, 1), "peak_rss_mb": round(peak_kb / 1024, 1)}
    say(f"{name}: {step['wall_s']} s, peak RSS {step['peak_rss_mb']} MB")
    return step


def _high_water_kb(pid: int) -> int:
    """The process's own peak RSS so far (``VmHWM``, kB; 0 once it is gone). Not ``wait4``'s
    ``ru_maxrss``: Linux keeps the high-water mark across ``exec``, so a child's counts the
    harness's RSS when it forked (seen: a step reported the harness's 3.3 GB)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else 0


def simulate_review(engine: Engine, dataset_name: str, truth: dict[str, str], seed: int) -> dict[str, Any]:
    """One annotator answers every record of the dataset (the true label with probability 0.95)
    through the bulk responses endpoint, 100 per request; returns counts and seconds."""
    import httpx

    from labeltriage.demo import records_with_responses

    api_url, api_key = engine.stack.credentials()
    started = time.perf_counter()
    dataset = engine.client.datasets(name=dataset_name, workspace="labeltriage")
    records = records_with_responses(api_url, api_key, str(dataset.id))
    password = engine.stack.add_user("reviewer1", role="annotator")
    token = httpx.post(f"{api_url}/api/v1/token", data={"username": "reviewer1", "password": password}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    rng = np.random.default_rng(seed)
    items, unknown = [], 0
    for record in records:
        true = truth.get(record["fields"]["text"])
        if true is None:
            unknown += 1
            continue
        label = true if rng.random() < REVIEWER_ACCURACY else str(rng.choice([x for x in LABELS if x != true]))
        items.append({"record_id": record["id"], "values": {"sentiment": {"value": label}}, "status": "submitted"})
    errors = 0
    with httpx.Client(headers=headers, timeout=120) as client:
        for start in range(0, len(items), 100):
            answer = client.post(f"{api_url}/api/v1/me/responses/bulk", json={"items": items[start : start + 100]})
            answer.raise_for_status()
            errors += sum(1 for item in answer.json()["items"] if item.get("error"))
    wall = time.perf_counter() - started
    say(f"review: {len(items)} answers, {errors} errors, {wall:.1f} s")
    return {
        "records": len(records),
        "answers": len(items),
        "errors": errors,
        "not_in_corpus": unknown,
        "wall_s": round(wall, 1),
    }


# -- what each step left -----------------------------------------------------------------------------
def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts(dropna=False).items()}


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def fill_embeddings(run: Path, seed: int) -> int:
    """Append a random unit vector for every routed text the run's store lacks (``--fill-embeddings``);
    returns how many."""
    from curation.adapters.embeddings import DIM, STORE_ROW, text_key

    store = run / "embeddings.bin"
    have = set(np.fromfile(store, dtype=STORE_ROW)["key"].tolist()) if store.is_file() else set()
    texts = pd.read_parquet(run / "routed.parquet", columns=["text"])["text"].astype(str)
    keys = {bytes.fromhex(text_key(text)).rstrip(b"\0") for text in texts} - have
    rows = np.empty(len(keys), dtype=STORE_ROW)
    rows["key"] = sorted(keys)
    vectors = np.random.default_rng(seed).standard_normal((len(keys), DIM)).astype(np.float32)
    rows["vector"] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    with open(store, "ab") as out:
        out.write(rows.tobytes())
    say(f"loop: {len(keys)} texts given random vectors (--fill-embeddings)")
    return len(keys)


def step_outputs(name: str, run: Path, truth: dict[str, str], n_records: int) -> dict[str, Any]:
    """Records in and out of step ``name`` and its own counts, read from the run directory."""
    if name == "prelabel":
        frame = pd.read_parquet(run / "prelabels.parquet", columns=["status"])
        return {"records_in": n_records, "records_out": len(frame), "status": _counts(frame["status"])}
    if name == "calibrate":
        report = _json(run / "calibration.json")
        return {"gold": report.get("n_gold") or report.get("n"), "method": report.get("method")}
    if name == "route":
        routed = pd.read_parquet(run / "routed.parquet", columns=["text", "route", "llm_label"])
        auto = routed[routed["route"] == "auto_accept"]
        right = (auto["llm_label"].astype(str).to_numpy() == auto["text"].map(truth).to_numpy()).mean()
        return {
            "records_in": n_records,
            "records_out": len(routed),
            "routes": _counts(routed["route"]),
            "auto_accept_precision_vs_truth": round(float(right), 4) if len(auto) else None,
            "certificate": {
                k: v
                for k, v in (_json(run / "routing.json").get("threshold") or {}).items()
                if k in ("threshold", "target_precision", "n_gold", "precision_gold", "lower_bound", "coverage_pool")
            },
        }
    if name == "push":
        return {k: v for k, v in _json(run / "push.json").items() if isinstance(v, int | float | str | None)}
    if name == "pull":
        return {k: v for k, v in _json(run / "pull.json").items() if isinstance(v, int | float)}
    if name == "loop":
        report = _json(run / "loop.json")
        return {k: report.get(k) for k in ("metadata_updated", "held_back", "student")}
    if name == "student":
        report = _json(run / "student.json")
        labels = pd.read_parquet(run / "student_labels.parquet")
        texts = pd.read_parquet(run / "routed.parquet", columns=["id", "text"]).set_index("id")["text"]
        kept = labels[labels["accepted"]]
        right = kept["student_label"].astype(str).to_numpy() == kept["id"].map(texts).map(truth).to_numpy()
        left = sum((report.get("n_left_for_people") or {}).values())  # queue records the student may not label
        return {
            "records_in": report.get("n_pool", 0) + left,
            "records_out": len(labels) + left,
            "left_for_people": left,
            "accepted": int(labels["accepted"].sum()),
            "accepted_precision_vs_truth": round(float(right.mean()), 4) if len(kept) else None,
            "threshold": (report.get("certificate") or {}).get("threshold"),
            **{k: report.get(k) for k in ("n_train", "n_gold_stratum", "student_accuracy_gold_stratum",
                                          "llm_accuracy_gold_stratum", "target_precision")},
        }  # fmt: skip
    if name == "publish":
        final = pd.read_parquet(run / "final.parquet", columns=["id", "text", "label", "label_source"])
        adjudication = pd.read_parquet(run / "adjudication.parquet", columns=["id"])
        routed = pd.read_parquet(run / "routed.parquet", columns=["id", "route", "status"])
        out = routed[~routed["id"].isin(set(final["id"]) | set(adjudication["id"]))]
        accuracy = {
            source: round(float((group["label"].astype(str) == group["text"].map(truth)).mean()), 4)
            for source, group in final.groupby("label_source")
        }
        return {
            "records_in": n_records,
            "records_out": len(final) + len(adjudication) + len(out),
            "published": len(final),
            "adjudication": len(adjudication),
            "awaiting_review": _counts(out["route"] + "/" + out["status"].astype(str)),
            "label_source": _counts(final["label_source"]),
            "accuracy_vs_truth": accuracy,
        }
    return {}


# -- the run ------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--gold", type=int, default=None, help="gold rows (default: records / 250, at least 400)")
    parser.add_argument("--review", type=int, default=15_000, help="records pushed to people")
    parser.add_argument("--latency", type=float, default=0.2, help="the simulated LLM's seconds per answer")
    parser.add_argument("--concurrency", type=int, default=128, help="model.concurrency of the config")
    parser.add_argument("--tag", default="", help="results file suffix (source_scale_<tag>.json)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-source-scale"))
    parser.add_argument("--port", type=int, default=6930, help="the stack's port (0: any free one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {','.join(STEPS)}")
    parser.add_argument(
        "--keep", action="store_true", help="reuse --work (the prelabel cache, the stack) and keep it afterwards"
    )  # without it the work dir goes at the end: a 500,000-record run leaves several GB
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and markdown go")
    parser.add_argument(
        "--fill-embeddings", action="store_true",
        help="before the loop, complete the run's embedding store with random unit vectors: the round's "
        "memory and the rest of its time without its hour of embedding (its priorities are then meaningless)",
    )  # fmt: skip
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop_once)  # a kill still stops the stack and servers
    n_gold = args.gold if args.gold is not None else max(400, args.records // 250)
    name = f"source_scale_{args.tag}" if args.tag else "source_scale"
    chosen = args.steps.split(",")
    if unknown := set(chosen) - set(STEPS):
        parser.error(f"unknown step(s) {sorted(unknown)}; the steps are {','.join(STEPS)}")
    if args.work.exists() and not args.keep:
        shutil.rmtree(args.work)
    run, logs = args.work / "run", args.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    truth = make_input(args.records, n_gold, args.work / "input.parquet", args.seed)
    say(f"input: {args.records} texts, {n_gold} gold ({time.perf_counter() - started:.1f} s)")

    port = free_port()
    server_env = {**os.environ, "LT_SIM_LATENCY_S": str(args.latency), "PYTHONPATH": f"{ROOT}:{BENCH_DIR}"}
    command = [sys.executable, "-m", "uvicorn", "benchmarks.source_scale:simulated_llm", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", "--backlog", "2048"]
    llm = subprocess.Popen(command, cwd=ROOT, env=server_env)
    base_url = f"http://127.0.0.1:{port}/v1"
    engine = Engine("embedded", args.work / "stack", args.port or free_port(), "argilla_stack.launch")
    from tests.support.hub_server import HubServer

    hub = HubServer(token="hf_scale").start()
    report: dict[str, Any] = {"records": args.records, "gold": n_gold, "review": args.review}
    report |= {"latency_s": args.latency, "concurrency": args.concurrency, "steps": []}
    # a run resumed with --keep for some steps keeps the figures of the others from the same work dir
    earlier = _earlier_steps(args.results / name, report, chosen) if args.keep else []
    try:
        wait_ready(base_url, llm)
        engine.start()
        api_url, api_key = engine.stack.credentials()
        dataset = f"scale-{args.tag or 'full'}"
        config = args.work / "task.yaml"
        write_config(config, base_url, args.concurrency, dataset)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        env |= {"ARGILLA_API_URL": api_url, "ARGILLA_API_KEY": api_key, "OPENAI_API_KEY": "sk-simulated"}
        env |= {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token, "HF_HUB_DISABLE_XET": "1"}
        env |= {
            "HF_HOME": str(args.work / "hf_home"),
            "NO_PROXY": "127.0.0.1,localhost",
            "TOKENIZERS_PARALLELISM": "false",
        }
        cli = str(Path(sys.executable).with_name("labeltriage"))
        steps: list[tuple[str, list[str]]] = [
            ("prelabel", [cli, "prelabel", str(config), str(args.work / "input.parquet"), "-o", str(run), "--quiet"]),
            ("calibrate", [cli, "calibrate", str(run)]),
            ("route", [cli, "route", str(run)]),
            ("push", [cli, "push", str(run), "--limit", str(args.review)]),
            ("review", []),
            ("pull", [cli, "pull", str(run)]),
            ("loop", [cli, "loop", str(run), "--rounds", "1"]),
            ("student", [cli, "student-label", str(run)]),
            ("publish", [cli, "publish", str(run), "--repo-id", f"scale/{dataset}"]),
        ]
        for step_name, argv in steps:
            if step_name not in chosen:
                continue
            if step_name == "review":
                step = {"step": "review", **simulate_review(engine, dataset, truth, args.seed)}
            elif step_name == "loop" and args.fill_embeddings:
                filled = fill_embeddings(run, args.seed)
                step = run_step(step_name, argv, env, logs) | step_outputs(step_name, run, truth, args.records)
                step["random_vectors"] = filled  # texts the round found embedded with random vectors
            else:
                step = run_step(step_name, argv, env, logs) | step_outputs(step_name, run, truth, args.records)
            report["steps"].append(step)
            report["steps"] = sorted(earlier + [s for s in report["steps"] if s not in earlier],
                                     key=lambda s: STEPS.index(s["step"]))  # fmt: skip
            save(report, args.results / name)
    finally:
        hub.stop()
        engine.stop()
        stop(llm)
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    save(report, args.results / name)
    print(markdown(report))


def _earlier_steps(path: Path, report: dict[str, Any], chosen: list[str]) -> list[dict[str, Any]]:
    """The steps not rerun now from ``path``.json, when it describes the same scenario."""
    if not path.with_suffix(".json").is_file():
        return []
    before = json.loads(path.with_suffix(".json").read_text())
    same = all(before.get(k) == report[k] for k in ("records", "gold", "review", "latency_s", "concurrency"))
    return [step for step in before.get("steps", []) if step["step"] not in chosen] if same else []


def _stop_once(*_: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second kill must not cut the clean-up short
    sys.exit(143)


def save(report: dict[str, Any], path: Path) -> None:
    """``path``.json and ``path``.md."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    path.with_suffix(".md").write_text(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# The source's scenario: {report['records']:,} records",
        "",
        f"{report['gold']} gold, simulated LLM at {report['latency_s']} s per answer, concurrency "
        f"{report['concurrency']}; `benchmarks/source_scale.py`.",
        "",
        "| step | wall s | peak RSS MB | records in | records out | counts |",
        "|---|---|---|---|---|---|",
    ]
    for step in report["steps"]:
        rest = {
            k: v for k, v in step.items() if k not in ("step", "wall_s", "peak_rss_mb", "records_in", "records_out")
        }
        lines.append(
            f"| {step['step']} | {step.get('wall_s', '')} | {step.get('peak_rss_mb', '')} | "
            f"{step.get('records_in', '')} | {step.get('records_out', '')} | `{json.dumps(rest, default=str)}` |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
