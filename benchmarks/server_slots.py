"""An OpenAI-compatible llama.cpp server with 1 vs N parallel decode slots, through the `openai` backend.

What concurrency to set for a self-hosted server (vLLM, Ollama, llama.cpp): the server's own
parallelism decides, not the client's. `python -m llama_cpp.server` (llama-cpp-python's server)
holds one model and answers one request at a time, which is why the earlier comparison
(benchmarks/prelabel_throughput.py (b)) found 0.93x. llama.cpp's own `llama-server` has parallel
slots (`-np N`: N sequences decoded together in one batch, continuous batching), so here it runs
with 1, 4 and 16 slots on the same model and records, and the product's pipeline
(`pipelines.prelabeller.Prelabeller`, backend `openai`, `model.concurrency` 16 so the server's
queue never runs dry) pre-labels the same records against each, one after another, in one run.

The server is built from the llama.cpp sources vendored in the installed llama-cpp-python
(scripts/build_llama_server.sh: the same llama.cpp as the local backend; ~12 minutes once). Each
server gets ``-c`` = slots x the config's n_ctx (llama-server divides the context among its
slots), ``-t`` = the machine's cores, on 127.0.0.1. The model and records are those of
benchmarks/parallel_decoding.py (Qwen2.5-Coder-1.5B Q4_K_M, the demo's 3-label task, 30 Rotten
Tomatoes + 30 CrowdFlower tweets), so its width-1 local figure is comparable in kind.

Reports records/s and the ratio to 1 slot in the same run, failed records, labels identical to
the 1-slot run, accuracy on gold, the server's peak RSS. Writes
benchmarks/results/server_slots.{json,md}.

    .venv/bin/python benchmarks/server_slots.py              # ~12 min build (once) + ~15 min
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local_decoding import sample_records  # noqa: E402  (the same 30 + 30 records)

from labeltriage.jsonio import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODEL = "qwen2.5-coder-1.5b-instruct-q4_k_m"
SLOTS = (1, 4, 16)
CONCURRENCY = 16


def build_server() -> Path:
    """The llama-server binary (built once by scripts/build_llama_server.sh)."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build_llama_server.sh")], check=True,
                         capture_output=True, text=True)  # fmt: skip
    return Path(out.stdout.strip().splitlines()[-1])


class PeakRss(threading.Thread):
    """Polls a process's VmHWM (its own high-water mark) until stopped; ``peak_mb``."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_mb, self.stopped = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
            except OSError:
                return


def start_server(binary: Path, model_path: str, slots: int, n_ctx: int, port: int, log: Path) -> subprocess.Popen:
    """llama-server with ``slots`` parallel slots on 127.0.0.1:``port``, ready to answer."""
    command = [
        str(binary), "--model", model_path, "--alias", MODEL, "--host", "127.0.0.1", "--port", str(port),
        "--parallel", str(slots), "--ctx-size", str(slots * n_ctx), "--threads", str(os.cpu_count() or 2),
        "--cont-batching",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama-server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("llama-server not ready after 300 s")


def run_setting(binary: Path, slots: int, records: list[tuple[str, str, str]], work: Path) -> dict[str, Any]:
    """Pre-label ``records`` through the openai backend against a ``slots``-slot server."""
    import pandas as pd

    from labeltriage.config import load_task_config
    from pipelines.models import resolve_model_path
    from pipelines.prelabeller import Prelabeller
    from tests.support.llm_servers import free_port

    config = load_task_config(ROOT / "datasets_config" / "sentiment_3class.yaml")
    os.environ.setdefault("LT_LOCAL_SERVER_KEY", "sk-no-key")  # llama-server runs here without --api-key
    port = free_port()
    model = config.model.model_copy(update={
        "backend": "openai", "name": MODEL, "base_url": f"http://127.0.0.1:{port}/v1",
        "api_key_env": "LT_LOCAL_SERVER_KEY", "concurrency": CONCURRENCY, "timeout_s": 600.0, "max_retries": 1,
    })  # fmt: skip
    config = config.model_copy(update={"model": model})
    server = start_server(binary, str(resolve_model_path(MODEL)), slots, config.model.generation.n_ctx, port,
                          work / f"server-{slots}.log")  # fmt: skip
    peak = PeakRss(server.pid)
    peak.start()
    try:
        frame = pd.DataFrame({"id": [f"r{i}" for i in range(len(records))], "text": [t for _, t, _ in records]})
        # one warm-up record: the server evaluates the shared instructions once, as in parallel_decoding.py
        Prelabeller(config, work / f"warm-{slots}", show_progress=False).run(frame.head(1))
        labeller = Prelabeller(config, work / f"run-{slots}", show_progress=False)
        started = time.perf_counter()
        result = labeller.run(frame).frame
        seconds = time.perf_counter() - started
    finally:
        peak.stopped.set()
        server.terminate()
        server.wait(30)
    labels = [row["llm_label"] if row["status"] == "ok" else None for row in result.to_dict("records")]
    return {
        "slots": slots,
        "concurrency": CONCURRENCY,
        "records": len(records),
        "seconds": seconds,
        "records_per_s": len(records) / seconds,
        "failed": int((result["status"] != "ok").sum()),
        "labels": labels,
        "gold": [gold for _, _, gold in records],
        "server_peak_rss_mb": round(peak.peak_mb, 1),
        "output_tokens": labeller.stats.output_tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="records per corpus")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--slots", type=int, nargs="+", default=list(SLOTS))
    args = parser.parse_args()
    binary = build_server()
    records = sample_records(args.n, args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="server-slots-") as tmp:
        for slots in args.slots:
            row = run_setting(binary, slots, records, Path(tmp))
            rows.append(row)
            print(f"{slots:>2} slots: {row['records_per_s']:.3f} rec/s, failed {row['failed']}, "
                  f"server peak {row['server_peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    base = rows[0]
    for row in rows:
        row["ratio_to_first"] = row["records_per_s"] / base["records_per_s"]
        pairs = zip(row["labels"], base["labels"], strict=True)
        row["same_label_as_first"] = sum(a == b and a is not None for a, b in pairs)
        row["accuracy_on_gold"] = sum(a == g for a, g in zip(row["labels"], row["gold"], strict=True)) / len(records)
    report = {
        "benchmark": "server_slots",
        "date": time.strftime("%Y-%m-%d"),
        "model": MODEL,
        "task": "datasets_config/sentiment_3class.yaml",
        "server": f"llama-server (llama.cpp vendored in llama-cpp-python {_version()}), --parallel N, "
        f"--ctx-size N x n_ctx, --threads {os.cpu_count()}",
        "client": f"pipelines.prelabeller.Prelabeller, backend openai, concurrency {CONCURRENCY}",
        "cpus": os.cpu_count(),
        "baseline": f"{base['slots']} slot(s), same run",
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "server_slots.json", report)
    write_markdown(report)
    print((RESULTS / "server_slots.md").read_text())


def _version() -> str:
    import importlib.metadata

    return importlib.metadata.version("llama_cpp_python")


def write_markdown(report: dict[str, Any]) -> None:
    rows = report["rows"]
    n = rows[0]["records"]
    lines = [
        "# llama-server: 1 vs N parallel slots through the openai backend",
        "",
        f"{report['model']}, {report['task']}, {n} records ({n // 2} Rotten Tomatoes + {n // 2} CrowdFlower tweets); "
        f"server: {report['server']}; client: {report['client']}; {report['cpus']} CPUs; {report['date']}.",
        "",
        "| slots | records/s | vs 1 slot | failed | same label as 1 slot | accuracy on gold | server peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['slots']} | {r['records_per_s']:.3f} | {r['ratio_to_first']:.2f}x | {r['failed']} | "
        f"{r['same_label_as_first']}/{n} | {r['accuracy_on_gold']:.3f} | {r['server_peak_rss_mb']:.0f} |"
        for r in rows
    ]
    lines += [
        "",
        "Regenerate: `.venv/bin/python benchmarks/server_slots.py` (builds llama-server once with "
        "scripts/build_llama_server.sh).",
    ]
    (RESULTS / "server_slots.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
