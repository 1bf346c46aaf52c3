"""Throughput: the course text's sequential pre-labeller vs our pipeline, same 500 texts, same prompt.

The baseline is the `llm_prelabel` loop of Section 13.5 "LLM-Assisted Labeling & Active Learning"
(course text), Code Fragment 13.5.1 (one `chat.completions.create` per text, `json.loads`, append),
re-implemented here with the `openai` client. "Same prompt": both send the identical messages (our
rendered prompt for the sentiment task) and the same response_format, temperature and max_tokens,
to the same server. Ours is `pipelines.runner` with the `openai`
backend (concurrency limit, retries, per-record cache in a fresh directory, validation, cost).

(a) an OpenAI-compatible server on 127.0.0.1 that answers valid JSON after a fixed 200 ms (a
    hosted API's latency), in its own process (uvicorn);             target: >= 30x records/s
(b) a real `python -m llama_cpp.server` with SmolLM2-135M on 127.0.0.1: report the ratio;
(c) the `local` backend (llama-cpp-python in process, SmolLM2) records/s and peak RSS, in a
    child process so its RSS is its own.

Prints the figures and writes benchmarks/results/prelabel_throughput.{json,md}.

    .venv/bin/python benchmarks/prelabel_throughput.py            # about 8-10 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "benchmarks" / "results"


# -- the 200 ms OpenAI-compatible server (ASGI, run by uvicorn in its own process) ---------------


async def asgi_body(scope, receive, send, on_startup=None) -> bytes | None:  # type: ignore[no-untyped-def]
    """The HTTP request's body; a lifespan scope is answered here (``on_startup()`` first) and
    gives None."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if on_startup is not None:
                    on_startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return None
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def asgi_json(send, payload: dict, status: int = 200) -> None:  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


MODELS = {"object": "list", "data": [{"id": "fake", "object": "model"}]}


def chat_completion(request: dict, content: str, tokens: list[dict] | None, usage: tuple[int, int]) -> dict:
    """An OpenAI chat.completion answering ``request`` with ``content`` (and ``tokens`` as its
    log-probs when the request asked for them)."""
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    if request.get("logprobs") and tokens is not None:
        choice["logprobs"] = {"content": tokens}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "fake"),
        "choices": [choice],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


async def chat_request(scope, receive, send, on_startup=None) -> dict | None:  # type: ignore[no-untyped-def]
    """A chat request's JSON body; None when it was answered here (lifespan, ``/models``)."""
    body = await asgi_body(scope, receive, send, on_startup)
    if body is None:
        return None
    if scope["path"].endswith("/models"):
        await asgi_json(send, MODELS)
        return None
    return json.loads(body or b"{}")


async def fake_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    request = await chat_request(scope, receive, send)
    if request is None:
        return
    await asyncio.sleep(FAKE_DELAY_S)
    schema = (request.get("response_format") or {}).get("schema") or {}
    labels = schema.get("properties", {}).get("label", {}).get("enum") or ["positive"]
    text = request["messages"][-1]["content"].rsplit('Text: "', 1)[-1].lower()
    label = next((lab for lab in labels if lab in text), labels[0])
    content = json.dumps({"label": label, "confidence": 0.9, "reasoning": "fixed-latency double"})
    tokens = [{"token": content[i : i + 4], "logprob": -0.01, "top_logprobs": []} for i in range(0, len(content), 4)]
    await asgi_json(send, chat_completion(request, content, tokens, (300, 30)))


FAKE_DELAY_S = float(os.environ.get("LT_FAKE_DELAY_S", "0.2"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base_url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server at {base_url} not ready after {timeout} s")


def start_fake_server(delay_s: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "LT_FAKE_DELAY_S": str(delay_s), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "uvicorn", "benchmarks.prelabel_throughput:fake_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--backlog", "2048"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    wait_ready(base_url, process)
    return process, base_url


def start_llama_server(model_path: str, n_threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_ctx", "2048", "--n_threads", str(n_threads), "--model_alias", "smollm2"]
    # OpenMP threads spin-wait by default: on a shared CPU that stalls every token
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    wait_ready(base_url, process)
    return process, base_url


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- the two contenders ---------------------------------------------------------------------------


def source_sequential(texts: list[str], config, base_url: str, model: str) -> dict:  # type: ignore[no-untyped-def]
    """Section 13.5 (course text), Code Fragment 13.5.1: one request per text, in order, json.loads, append."""
    from dataclasses import dataclass

    from openai import OpenAI

    from pipelines.prompt import render_messages

    @dataclass
    class PreLabel:
        text: str
        label: str
        confidence: float
        reasoning: str

    client = OpenAI(base_url=base_url, api_key="sk-local-no-key")
    schema = config.output_schema()
    results = []
    errors = 0
    started = time.perf_counter()
    for text in texts:
        response = client.chat.completions.create(
            model=model,
            messages=render_messages(config, text),
            temperature=config.model.generation.temperature,
            max_tokens=config.model.generation.max_tokens,
            response_format={"type": "json_object", "schema": schema},
        )
        try:  # Code Fragment 13.5.1 stops at the first malformed answer; we count instead, to finish the run
            data = json.loads(response.choices[0].message.content)
            results.append(PreLabel(text, data["label"], data["confidence"], data.get("reasoning", "")))
        except (json.JSONDecodeError, KeyError, TypeError):
            errors += 1
    elapsed = time.perf_counter() - started
    return {
        "records": len(texts),
        "elapsed_s": round(elapsed, 3),
        "records_per_s": round(len(texts) / elapsed, 3),
        "malformed": errors,
    }


def ours(texts: list[str], config, base_url: str, model: str, concurrency: int, batch_size: int) -> dict:  # type: ignore[no-untyped-def]
    import pandas as pd

    from pipelines.io import record_id
    from pipelines.runner import run_prelabel, with_overrides

    task = with_overrides(config, "openai", model)
    task = task.model_copy(
        update={"model": task.model.model_copy(update={"base_url": base_url, "concurrency": concurrency})}
    )
    records = pd.DataFrame({"id": [record_id("bench", t) for t in texts], "text": texts})
    with tempfile.TemporaryDirectory(prefix="lt-bench-") as out:
        started = time.perf_counter()
        result = run_prelabel(task, records, out, batch_size=batch_size, show_progress=False)
        elapsed = time.perf_counter() - started
    frame = result.frame
    return {
        "records": len(frame),
        "elapsed_s": round(elapsed, 3),
        "records_per_s": round(len(frame) / elapsed, 3),
        "ok": int((frame["status"] == "ok").sum()),
        "failed": int((frame["status"] == "failed").sum()),
        "model_calls": result.stats.calls,
        "concurrency": concurrency,
        "batch_size": batch_size,
        "logprob_confidences": int(frame["confidence_logprob"].notna().sum()),
    }


def local_child(texts_file: str, out_file: str, model: str) -> None:
    """Runs in a child process: the local backend over the texts; writes its figures."""
    import pandas as pd

    from labeltriage.config import load_task_config
    from pipelines.io import record_id
    from pipelines.runner import run_prelabel, with_overrides

    texts = json.loads(Path(texts_file).read_text())
    config = with_overrides(load_task_config(ROOT / "datasets_config" / "sentiment.yaml"), "local", model)
    records = pd.DataFrame({"id": [record_id("bench", t) for t in texts], "text": texts})
    with tempfile.TemporaryDirectory(prefix="lt-bench-local-") as out:
        started = time.perf_counter()
        result = run_prelabel(config, records, out, show_progress=False)
        elapsed = time.perf_counter() - started
    frame = result.frame
    figures = {
        "model": model,
        "records": len(frame),
        "elapsed_s": round(elapsed, 3),
        "records_per_s": round(len(frame) / elapsed, 3),
        "ok": int((frame["status"] == "ok").sum()),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    from labeltriage.jsonio import write_json

    write_json(out_file, figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--llama-server-n", type=int, default=None, help="texts for (b); default --n")
    parser.add_argument("--local-n", type=int, default=100, help="texts for (c)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["a", "b", "c"])
    parser.add_argument("--local-child", nargs=3, metavar=("TEXTS", "OUT", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.local_child:
        local_child(*args.local_child)
        return

    from labeltriage import corpora
    from labeltriage.config import load_task_config
    from pipelines.models import resolve_model_path

    config = load_task_config(ROOT / "datasets_config" / "sentiment.yaml")
    texts = corpora.rotten_tomatoes().sample(n=args.n, random_state=args.seed)["text"].tolist()
    report: dict = {
        "n": len(texts),
        "prompt": "datasets_config/sentiment.yaml (rendered), identical for both",
        "cpus": os.cpu_count(),
    }

    if "a" not in args.skip:
        process, base_url = start_fake_server(args.delay)
        try:
            ours(texts[:20], config, base_url, "fake", args.concurrency, args.batch_size)  # warm-up (imports)
            base = source_sequential(texts, config, base_url, "fake")
            mine = ours(texts, config, base_url, "fake", args.concurrency, args.batch_size)
        finally:
            stop(process)
        report["a_fixed_200ms_server"] = {
            "delay_s": args.delay,
            "source_sequential": base,
            "ours": mine,
            "speedup": round(mine["records_per_s"] / base["records_per_s"], 2),
            "target": 30,
        }
        print(json.dumps({"a": report["a_fixed_200ms_server"]}, indent=2), flush=True)
        save(report, partial=bool(args.skip))

    smol = str(resolve_model_path("smollm2-135m-instruct"))
    if "b" not in args.skip:
        n_b = args.llama_server_n or len(texts)
        process, base_url = start_llama_server(smol, n_threads=os.cpu_count() or 2)
        try:
            ours(texts[:3], config, base_url, "smollm2", 4, 4)  # warm-up
            base = source_sequential(texts[:n_b], config, base_url, "smollm2")
            mine = ours(texts[:n_b], config, base_url, "smollm2", 4, 64)
        finally:
            stop(process)
        report["b_llama_cpp_server_smollm2"] = {
            "source_sequential": base,
            "ours": mine,
            "ratio": round(mine["records_per_s"] / base["records_per_s"], 2),
            "note": "llama_cpp.server decodes one request at a time: concurrency cannot beat the model",
        }
        print(json.dumps({"b": report["b_llama_cpp_server_smollm2"]}, indent=2), flush=True)
        save(report, partial=True)

    if "c" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            texts_file, out_file = Path(tmp) / "texts.json", Path(tmp) / "out.json"
            texts_file.write_text(json.dumps(texts[: args.local_n]))
            command = [sys.executable, __file__, "--local-child", str(texts_file), str(out_file), "smollm2"]
            subprocess.run(command, check=True, cwd=ROOT)
            report["c_local_backend"] = json.loads(out_file.read_text())
        print(json.dumps({"c": report["c_local_backend"]}, indent=2), flush=True)

    print(markdown(save(report, partial=True)))


def save(report: dict, partial: bool) -> dict:
    """Write the figures so far; a partial run keeps the other parts of the previous file."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = RESULTS / "prelabel_throughput.json"
    if partial and previous.is_file():
        report = {**json.loads(previous.read_text()), **report}
    from labeltriage.jsonio import write_json

    write_json(previous, report)
    (RESULTS / "prelabel_throughput.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = [
        "# Pre-labelling throughput",
        "",
        f"{report['n']} Rotten Tomatoes texts, {report['prompt']}; {report['cpus']} CPUs.",
        "",
    ]
    lines += ["| setting | source sequential (rec/s) | ours (rec/s) | ratio |", "|---|---|---|---|"]
    if "a_fixed_200ms_server" in report:
        a = report["a_fixed_200ms_server"]
        lines.append(
            f"| (a) OpenAI-compatible server, fixed {a['delay_s'] * 1000:.0f} ms "
            f"| {a['source_sequential']['records_per_s']} "
            f"| {a['ours']['records_per_s']} (concurrency {a['ours']['concurrency']}) "
            f"| **{a['speedup']}x** (target >= 30x) |"
        )
    if "b_llama_cpp_server_smollm2" in report:
        b = report["b_llama_cpp_server_smollm2"]
        lines.append(
            f"| (b) llama_cpp.server, SmolLM2-135M, {b['source_sequential']['records']} texts | "
            f"{b['source_sequential']['records_per_s']} | {b['ours']['records_per_s']} | {b['ratio']}x |"
        )
    if "c_local_backend" in report:
        c = report["c_local_backend"]
        lines += [
            "",
            f"(c) `local` backend in process ({c['model']}, {c['records']} texts): "
            f"{c['records_per_s']} records/s, peak RSS {c['peak_rss_mb']} MB.",
        ]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
