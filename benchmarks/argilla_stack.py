"""Benchmark of the local Argilla stack: logging throughput, search latency and store rebuild.

One invocation measures, against the real argilla-server 2.8.0 started by `argilla_stack.Stack`:

1. ``dataset.records.log`` (Argilla SDK) of each size in ``--sizes`` (default 10,000 and 100,000
   records: a text field, a label suggestion with score and agent, 4 metadata values -- priority
   float, llm_confidence float, route terms, round integer -- and a 384-d vector, random normal,
   seeded) with the **embedded** engine, and the same logging with a **no-op** in-memory engine
   registered by this benchmark alone (`benchmarks/_noop_engine_launcher.py`). Both stacks run
   side by side (separate fresh homes, ports 6911/6912) and the engines alternate per size
   (ABBA order) so that load from other work on the shared machine hits both alike. Besides wall
   time (records/s) it reports the CPU seconds used by the server's and worker's process sessions,
   which contention on the machine disturbs much less.
2. At the largest size, on the embedded stack: p50/p95 latency of filtered + metadata-sorted
   searches (``POST /api/v1/datasets/{id}/records/search`` with ``filters`` and ``sort``, varied
   parameters) and of vector similarity searches (``query.vector``), each answer checked against a
   brute-force computation on the generated records (totals, sort order, nearest neighbours).
3. The time to rebuild the embedded store from Argilla's database: stop the stack, delete
   ``<home>/argilla/search.sqlite3*``, time ``python -m argilla_stack.launch sync`` with the
   stack's environment; then start the stack again and re-check search answers.

Bars (issue 2): embedded/no-op records/s >= 0.8 (overhead <= 20 %), filtered+sorted p95 <= 300 ms,
similarity p50 <= 500 ms at 100k records.

Run (about an hour at the default sizes; writes results/argilla_stack.{json,md})::

    nohup .venv/bin/python benchmarks/argilla_stack.py > /tmp/bench-argilla.log 2>&1 &

Quick check: ``.venv/bin/python benchmarks/argilla_stack.py --sizes 1000 --out /tmp/bench.json``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from argilla_stack.stack import WORKSPACE, Stack  # noqa: E402
from labeltriage.jsonio import write_json  # noqa: E402

NOOP_LAUNCHER = "_noop_engine_launcher"
DIM = 384
LABELS = ["positive", "negative", "neutral"]
ROUTES = ["auto_accept", "human_review", "spot_check"]
AGENTS = ["qwen2.5-1.5b", "smollm2-135m"]
SORTS = [
    [("priority", "desc")],
    [("priority", "asc")],
    [("llm_confidence", "desc")],
    [("llm_confidence", "asc")],
    [("round", "asc"), ("priority", "desc")],
]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


# -- data ------------------------------------------------------------------------------------------
class Data:
    """Seeded synthetic records, kept as arrays for brute-force checks of search answers."""

    def __init__(self, size: int, seed: int):
        rng = np.random.default_rng([seed, size])
        self.size = size
        self.ids = [f"bench-{size}-{i:06d}" for i in range(size)]
        vocabulary = np.array([f"w{i:03d}" for i in range(800)])
        lengths = rng.integers(12, 31, size)
        words = rng.integers(0, len(vocabulary), lengths.sum())
        cuts = np.cumsum(lengths)[:-1]
        self.texts = [" ".join(chunk) for chunk in np.split(vocabulary[words], cuts)]
        self.label = rng.integers(0, len(LABELS), size)
        self.score = np.round(rng.uniform(0.0, 1.0, size), 6)
        self.agent = rng.integers(0, len(AGENTS), size)
        self.priority = np.round(rng.uniform(0.0, 1.0, size), 6)
        self.llm_confidence = np.round(rng.beta(5, 2, size), 6)
        self.route = rng.integers(0, len(ROUTES), size)
        self.round = rng.integers(0, 5, size)
        self.vectors = rng.standard_normal((size, DIM)).astype(np.float32)

    def metadata(self, name: str) -> np.ndarray:
        return {
            "priority": self.priority,
            "llm_confidence": self.llm_confidence,
            "round": self.round,
            "route": self.route,
        }[name]

    def records(self, start: int = 0, stop: int | None = None) -> list:
        import argilla as rg

        return [
            rg.Record(
                id=self.ids[i],
                fields={"text": self.texts[i]},
                metadata={
                    "priority": float(self.priority[i]),
                    "llm_confidence": float(self.llm_confidence[i]),
                    "route": ROUTES[self.route[i]],
                    "round": int(self.round[i]),
                },
                suggestions=[
                    rg.Suggestion(
                        question_name="label",
                        value=LABELS[self.label[i]],
                        score=float(self.score[i]),
                        agent=AGENTS[self.agent[i]],
                        type="model",
                    )
                ],
                vectors={"emb": self.vectors[i].tolist()},
            )
            for i in range(start, self.size if stop is None else stop)
        ]


def settings():
    import argilla as rg

    return rg.Settings(
        guidelines="Benchmark dataset.",
        fields=[rg.TextField(name="text")],
        questions=[rg.LabelQuestion(name="label", labels=LABELS)],
        metadata=[
            rg.FloatMetadataProperty(name="priority"),
            rg.FloatMetadataProperty(name="llm_confidence"),
            rg.TermsMetadataProperty(name="route", options=ROUTES),
            rg.IntegerMetadataProperty(name="round"),
        ],
        vectors=[rg.VectorField(name="emb", dimensions=DIM)],
    )


# -- processes -------------------------------------------------------------------------------------
def session_cpu(leader: int) -> float:
    """CPU seconds (user + system) of every live process in the session led by ``leader``."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): session is field 6, utime/stime fields 14/15, cutime/cstime 16/17.
        if int(fields[3]) == leader:
            total += sum(int(value) for value in fields[11:15])
    return total / CLK_TCK


class Engine:
    """One stack (one home, one port, one search engine) and its SDK client."""

    def __init__(self, name: str, home: Path, port: int, launcher: str):
        self.name, self.home, self.port, self.launcher = name, home, port, launcher
        self.stack = Stack(home)
        self.client = None

    def fresh(self) -> None:
        self.stop()
        if self.home.exists():
            shutil.rmtree(self.home)

    def start(self) -> float:
        started = time.perf_counter()
        self.stack.up(
            port=self.port,
            search_engine=self.name,
            launcher=self.launcher,
            log=lambda message: say(f"{self.name}: {message}"),
        )
        elapsed = time.perf_counter() - started
        import argilla as rg

        api_url, api_key = self.stack.credentials()
        self.client = rg.Argilla(api_url=api_url, api_key=api_key, timeout=300)
        return elapsed

    def pids(self) -> dict[str, int]:
        state = self.stack.state()
        return dict(state.pids) if state else {}

    def cpu(self) -> dict[str, float]:
        return {name: session_cpu(pid) for name, pid in self.pids().items() if name in ("server", "worker")}

    def stop(self) -> list[str]:
        """`Stack.down`, then end any of the stack's own pids it left running (see the report)."""
        pids = self.pids()
        self.stack.down(log=lambda message: say(f"{self.name}: {message}"))
        leftovers = []
        for name, pid in pids.items():
            cmdline = _cmdline(pid)
            if self.launcher in cmdline or "redis-server" in cmdline:
                leftovers.append(name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_cmdline(pids[name]) for name in leftovers):
            time.sleep(0.2)
        for name in leftovers:
            if _cmdline(pids[name]):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pids[name], signal.SIGKILL)
        if leftovers:
            say(f"{self.name}: Stack.down left {', '.join(leftovers)} running; stopped them by pid")
        self.client = None
        return leftovers


def _cmdline(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return ""
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# -- logging ---------------------------------------------------------------------------------------
def create_dataset(engine: Engine, name: str):
    import argilla as rg

    return rg.Dataset(name=name, workspace=WORKSPACE, settings=settings(), client=engine.client).create()


def log_records(engine: Engine, data: Data, dataset, start: int, stop: int, batch_size: int) -> dict:
    """Time one ``records.log`` call of records ``start:stop`` of ``data`` into ``dataset``."""
    records = data.records(start, stop)
    count = stop - start
    gc.collect()
    cpu_before, load_before = engine.cpu(), os.getloadavg()[0]
    client_cpu = time.process_time()
    started = time.perf_counter()
    dataset.records.log(records, batch_size=batch_size)
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    cpu_after, load_after = engine.cpu(), os.getloadavg()[0]
    del records
    gc.collect()
    server_cpu = {key: round(cpu_after[key] - cpu_before.get(key, 0.0), 2) for key in cpu_after}
    result = {
        "engine": engine.name,
        "records": stop,
        "logged": count,
        "dataset": dataset.name,
        "dataset_id": str(dataset.id),
        "seconds": round(seconds, 2),
        "records_per_s": round(count / seconds, 1),
        "server_cpu_s": server_cpu,
        "server_cpu_ms_per_record": round(1000 * sum(server_cpu.values()) / count, 3),
        "client_cpu_s": round(client_cpu, 2),
        "loadavg_1min_before_after": [round(load_before, 2), round(load_after, 2)],
    }
    say(
        f"{engine.name}: logged records {start}:{stop} in {seconds:.1f} s = {result['records_per_s']} records/s; "
        f"server+worker CPU {sum(server_cpu.values()):.1f} s ({result['server_cpu_ms_per_record']} ms/record), "
        f"load {load_before:.1f} -> {load_after:.1f}"
    )
    return result


def cumulative(rows: list[dict]) -> dict:
    """Roll up the calls that filled one dataset up to a checkpoint (incremental mode)."""
    seconds = sum(row["seconds"] for row in rows)
    count = sum(row["logged"] for row in rows)
    cpu = sum(sum(row["server_cpu_s"].values()) for row in rows)
    return {
        **rows[-1],
        "logged": count,
        "calls": len(rows),
        "seconds": round(seconds, 2),
        "records_per_s": round(count / seconds, 1),
        "server_cpu_ms_per_record": round(1000 * cpu / count, 3),
        "last_call_records_per_s": rows[-1]["records_per_s"],
        "loadavg_1min_before_after": [
            rows[0]["loadavg_1min_before_after"][0],
            rows[-1]["loadavg_1min_before_after"][1],
        ],
    }


# -- search ----------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _scope(name: str) -> dict:
    return {"entity": "metadata", "metadata_property": name}


def filtered_query(rng: np.random.Generator, data: Data) -> tuple[dict, np.ndarray, list[tuple[str, str]]]:
    """A random filter (route terms, priority range, sometimes a suggestion score floor) and sort."""
    routes = sorted(rng.choice(len(ROUTES), int(rng.integers(1, 3)), replace=False).tolist())
    low = round(float(rng.uniform(0.0, 0.7)), 3)
    high = round(low + float(rng.uniform(0.1, 0.3)), 3)
    filters = [
        {"type": "terms", "scope": _scope("route"), "values": [ROUTES[r] for r in routes]},
        {"type": "range", "scope": _scope("priority"), "ge": low, "le": high},
    ]
    mask = np.isin(data.route, routes) & (data.priority >= low) & (data.priority <= high)
    if rng.random() < 0.5:
        floor = round(float(rng.uniform(0.0, 0.6)), 3)
        filters.append(
            {
                "type": "range",
                "scope": {"entity": "suggestion", "question": "label", "property": "score"},
                "ge": floor,
            }
        )
        mask &= data.score >= floor
    sort = SORTS[int(rng.integers(len(SORTS)))]
    body = {
        "filters": {"and": filters},
        "sort": [{"scope": _scope(key), "order": order} for key, order in sort],
    }
    return body, mask, sort


def check_sorted(data: Data, mask: np.ndarray, sort: list[tuple[str, str]], items: list[dict], limit: int) -> bool:
    """The returned page is the first ``limit`` matches under the sort (compared on sort keys)."""
    keys = []
    for key, order in reversed(sort):
        values = data.metadata(key)[mask].astype(float)
        keys.append(-values if order == "desc" else values)
    expected_order = np.lexsort(keys)[:limit]
    expected = [tuple(data.metadata(key)[mask][i] for key, _ in sort) for i in expected_order]
    got = [tuple(item["record"]["metadata"][key] for key, _ in sort) for item in items]
    return len(got) == len(expected) and all(
        all(abs(float(a) - float(b)) < 1e-9 for a, b in zip(g, e, strict=True))
        for g, e in zip(got, expected, strict=True)
    )


def bench_search(
    engine: Engine, data: Data, dataset_id: str, dataset_name: str, repetitions: int, seed: int, limit: int
) -> dict:
    import httpx

    api_url, api_key = engine.stack.credentials()
    url = f"/api/v1/datasets/{dataset_id}/records/search"
    rng = np.random.default_rng([seed, 7])
    result: dict = {"records": data.size, "limit": limit, "repetitions": repetitions, "warmup": 2}
    with httpx.Client(base_url=api_url, headers={"X-Argilla-Api-Key": api_key}, timeout=120) as http:
        # Filtered + metadata-sorted.
        timings, totals, mismatches = [], [], []
        for index in range(repetitions + 2):
            body, mask, sort = filtered_query(rng, data)
            started = time.perf_counter()
            response = http.post(url, params={"limit": limit}, json=body)
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            answer = response.json()
            expected_total = int(mask.sum())
            if answer["total"] != expected_total or not check_sorted(data, mask, sort, answer["items"], limit):
                mismatches.append({"body": body, "total": answer["total"], "expected_total": expected_total})
            if index >= 2:
                timings.append(elapsed * 1000)
                totals.append(expected_total)
        result["filtered_sorted"] = {
            "p50_ms": round(percentile(timings, 50), 1),
            "p95_ms": round(percentile(timings, 95), 1),
            "max_ms": round(max(timings), 1),
            "matches_min_median_max": [min(totals), int(np.median(totals)), max(totals)],
            "answers_checked": repetitions + 2,
            "answers_wrong": len(mismatches),
            "first_wrong": mismatches[:2],
        }
        say(
            f"filtered+sorted search at {data.size}: p50 {result['filtered_sorted']['p50_ms']} ms, "
            f"p95 {result['filtered_sorted']['p95_ms']} ms, wrong answers {len(mismatches)}"
        )

        # Vector similarity: a stored vector plus noise; the top hits must be the brute-force ones.
        unit = data.vectors / np.linalg.norm(data.vectors, axis=1, keepdims=True)
        timings, wrong = [], 0
        for index in range(repetitions + 2):
            target = int(rng.integers(data.size))
            value = data.vectors[target] + 0.5 * rng.standard_normal(DIM).astype(np.float32)
            body = {"query": {"vector": {"name": "emb", "value": value.tolist()}}}
            started = time.perf_counter()
            response = http.post(url, params={"limit": limit}, json=body)
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            got = [item["record"]["external_id"] for item in response.json()["items"]]
            cosine = unit @ (value / np.linalg.norm(value))
            expected = [data.ids[i] for i in np.argsort(-cosine, kind="stable")[:limit]]
            if got[:1] != [data.ids[target]] or set(got) != set(expected):
                wrong += 1
            if index >= 2:
                timings.append(elapsed * 1000)
        result["similarity"] = {
            "p50_ms": round(percentile(timings, 50), 1),
            "p95_ms": round(percentile(timings, 95), 1),
            "max_ms": round(max(timings), 1),
            "answers_checked": repetitions + 2,
            "answers_wrong": wrong,
        }
        say(
            f"similarity search at {data.size}: p50 {result['similarity']['p50_ms']} ms, "
            f"p95 {result['similarity']['p95_ms']} ms, wrong answers {wrong}"
        )

    # The same similarity search through the SDK (rg.Query(similar=...)), for reference.
    import argilla as rg

    try:
        dataset = engine.client.datasets(name=dataset_name, workspace=WORKSPACE)
        timings = []
        for _ in range(10):
            value = data.vectors[int(rng.integers(data.size))].tolist()
            started = time.perf_counter()
            fetched = list(dataset.records(query=rg.Query(similar=rg.Similar(name="emb", value=value)), limit=limit))
            timings.append((time.perf_counter() - started) * 1000)
        result["similarity_sdk"] = {
            "p50_ms": round(percentile(timings, 50), 1),
            "repetitions": 10,
            "returned": len(fetched),
        }
        say(f"similarity search through the SDK: p50 {result['similarity_sdk']['p50_ms']} ms")
    except Exception as exc:  # informational only: never lose the run's other figures
        result["similarity_sdk"] = {"error": repr(exc)[:500]}
        say(f"similarity search through the SDK failed: {exc!r}")
    return result


def recheck_search(engine: Engine, data: Data, dataset_id: str, seed: int, limit: int, count: int = 5) -> int:
    """Number of wrong answers among ``count`` filtered+sorted searches (after the rebuild)."""
    import httpx

    api_url, api_key = engine.stack.credentials()
    rng = np.random.default_rng([seed, 11])
    wrong = 0
    with httpx.Client(base_url=api_url, headers={"X-Argilla-Api-Key": api_key}, timeout=120) as http:
        for _ in range(count):
            body, mask, sort = filtered_query(rng, data)
            response = http.post(f"/api/v1/datasets/{dataset_id}/records/search", params={"limit": limit}, json=body)
            response.raise_for_status()
            answer = response.json()
            if answer["total"] != int(mask.sum()) or not check_sorted(data, mask, sort, answer["items"], limit):
                wrong += 1
    return wrong


# -- rebuild ---------------------------------------------------------------------------------------
def bench_rebuild(engine: Engine) -> dict:
    state, secrets = engine.stack.state(), engine.stack.secrets()
    env = engine.stack.environment(state, secrets)
    engine.stop()
    store = Path(env["LABELTRIAGE_SEARCH_STORE"])
    files = sorted(store.parent.glob(store.name + "*"))
    size_mb = sum(path.stat().st_size for path in files) / 1e6
    for path in files:
        path.unlink()
    say(f"deleted the embedded store ({size_mb:.0f} MB: {', '.join(p.name for p in files)}); rebuilding")
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "argilla_stack.launch", "sync"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"sync failed ({completed.returncode}): {completed.stderr[-2000:]}")
    reindexed = ast.literal_eval(completed.stdout.strip().splitlines()[-1])
    records = sum(reindexed.values())
    new_size = sum(path.stat().st_size for path in store.parent.glob(store.name + "*")) / 1e6
    result = {
        "command": "python -m argilla_stack.launch sync (stack stopped, search.sqlite3* deleted)",
        "seconds": round(seconds, 1),
        "records_reindexed": records,
        "datasets_reindexed": len(reindexed),
        "records_per_s": round(records / seconds, 1),
        "store_mb_before": round(size_mb, 1),
        "store_mb_after": round(new_size, 1),
    }
    say(f"rebuilt the store: {records} records in {seconds:.1f} s = {result['records_per_s']} records/s")
    return result


# -- report ----------------------------------------------------------------------------------------
def versions() -> dict:
    out = {"python": platform.python_version(), "nproc": os.cpu_count(), "platform": platform.platform()}
    for package in ("argilla", "argilla-server", "numpy", "sqlalchemy", "aiosqlite"):
        with contextlib.suppress(importlib_metadata.PackageNotFoundError):
            out[package] = importlib_metadata.version(package)
    out["sqlite"] = __import__("sqlite3").sqlite_version
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["labeltriage_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    with contextlib.suppress(OSError):
        out["mem_total_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return out


def verdict(logging: list[dict], search: dict | None, max_size: int) -> dict:
    by = {(row["engine"], row["records"]): row for row in logging}
    out: dict = {"overhead": []}
    for (engine, size), row in sorted(by.items()):
        if engine != "embedded":
            continue
        noop = by.get(("noop", size))
        note = None
        if noop is None:
            sizes = [s for e, s in by if e == "noop"]
            if not sizes:
                continue
            noop = by[("noop", max(sizes))]
            note = f"no no-op run at {size}; compared with the no-op run at {noop['records']}"
        ratio = row["records_per_s"] / noop["records_per_s"]
        cpu_ratio = row["server_cpu_ms_per_record"] / noop["server_cpu_ms_per_record"]
        out["overhead"].append(
            {
                "records": size,
                "embedded_records_per_s": row["records_per_s"],
                "noop_records_per_s": noop["records_per_s"],
                "ratio_embedded_over_noop": round(ratio, 3),
                "overhead_pct": round(100 * (1 - ratio), 1),
                "server_cpu_per_record_ratio": round(cpu_ratio, 3),
                "bar": "ratio >= 0.80 (overhead <= 20%)",
                "holds": ratio >= 0.8,
                **({"note": note} if note else {}),
            }
        )
    if search is not None:
        p95 = search["filtered_sorted"]["p95_ms"]
        p50 = search["similarity"]["p50_ms"]
        out["filtered_sorted_p95"] = {
            "records": search["records"],
            "value_ms": p95,
            "bar_ms": 300,
            "holds": p95 <= 300 and search["records"] >= 100_000,
            "answers_wrong": search["filtered_sorted"]["answers_wrong"],
        }
        out["similarity_p50"] = {
            "records": search["records"],
            "value_ms": p50,
            "bar_ms": 500,
            "holds": p50 <= 500 and search["records"] >= 100_000,
            "answers_wrong": search["similarity"]["answers_wrong"],
        }
    checks = [row["holds"] for row in out["overhead"]]
    checks += [out[key]["holds"] for key in ("filtered_sorted_p95", "similarity_p50") if key in out]
    out["all_bars_hold"] = bool(checks) and all(checks) and max_size >= 100_000
    return out


def write_markdown(path: Path, report: dict) -> None:
    lines = [
        "# Argilla stack benchmark",
        "",
        f"{report['date']}, {report['machine']['nproc']} cores (shared), Python {report['machine']['python']}, "
        f"argilla {report['machine'].get('argilla')} / argilla-server {report['machine'].get('argilla-server')}, "
        f"SQLite database, batch size {report['parameters']['batch_size']}. Rerun: `{report['command']}`.",
        "",
        "## records.log",
        "",
        "| engine | records | seconds | records/s | server+worker CPU ms/record | load 1-min before/after |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in report["logging"]:
        lines.append(
            f"| {row['engine']} | {row['records']:,} | {row['seconds']} | {row['records_per_s']} | "
            f"{row['server_cpu_ms_per_record']} | {row['loadavg_1min_before_after']} |"
        )
    if report.get("calls"):
        lines += [
            "",
            "Incremental mode: " + report["parameters"]["incremental_note"] + ". The calls:",
            "",
            "| engine | records | up to | seconds | records/s | server+worker CPU ms/record |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, rows in report["calls"].items():
            for row in rows:
                lines.append(
                    f"| {name} | {row['logged']:,} | {row['records']:,} | {row['seconds']} | {row['records_per_s']} | "
                    f"{row['server_cpu_ms_per_record']} |"
                )
    lines += ["", "## Verdict", "", "| figure | value | bar | holds |", "|---|---:|---|---|"]
    for row in report["verdict"]["overhead"]:
        lines.append(
            f"| embedded/no-op records/s at {row['records']:,} | {row['ratio_embedded_over_noop']} "
            f"(overhead {row['overhead_pct']}%, CPU ratio {row['server_cpu_per_record_ratio']}) | >= 0.80 | "
            f"{'yes' if row['holds'] else 'NO'} |"
        )
    for key, label in (("filtered_sorted_p95", "filtered+sorted p95"), ("similarity_p50", "similarity p50")):
        if key in report["verdict"]:
            row = report["verdict"][key]
            lines.append(
                f"| {label} at {row['records']:,} | {row['value_ms']} ms ({row['answers_wrong']} wrong answers) | "
                f"<= {row['bar_ms']} ms | {'yes' if row['holds'] else 'NO'} |"
            )
    if report.get("search"):
        search = report["search"]
        lines += [
            "",
            f"Search at {search['records']:,} records (limit {search['limit']}, {search['repetitions']} timed "
            f"repetitions after {search['warmup']} warm-ups): filtered+sorted p50 {search['filtered_sorted']['p50_ms']}"
            f" / p95 {search['filtered_sorted']['p95_ms']} ms (matches per query "
            f"{search['filtered_sorted']['matches_min_median_max']}); similarity p50 {search['similarity']['p50_ms']}"
            f" / p95 {search['similarity']['p95_ms']} ms; through the SDK p50 "
            f"{search['similarity_sdk'].get('p50_ms')} ms.",
        ]
    if report.get("rebuild"):
        rebuild = report["rebuild"]
        lines += [
            "",
            f"Store rebuild from the database: {rebuild['records_reindexed']:,} records "
            f"({rebuild['datasets_reindexed']} datasets) in {rebuild['seconds']} s = "
            f"{rebuild['records_per_s']} records/s; store "
            f"{rebuild['store_mb_after']} MB. Answers wrong after rebuild + restart: "
            f"{rebuild.get('answers_wrong_after_restart')}.",
        ]
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    path.write_text("\n".join(lines) + "\n")


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="embedded engine sizes")
    parser.add_argument("--noop-sizes", type=int, nargs="+", help="no-op engine sizes (default: --sizes)")
    parser.add_argument("--batch-size", type=int, default=500, help="records.log batch_size (server cap: 500)")
    parser.add_argument("--repetitions", type=int, default=40, help="timed searches of each kind")
    parser.add_argument("--limit", type=int, default=50, help="page size of the searches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--homes", type=Path, nargs=2, default=[Path("/tmp/bench-embedded"), Path("/tmp/bench-noop")])
    parser.add_argument("--ports", type=int, nargs=2, default=[6911, 6912])
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "argilla_stack.json")
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="one dataset per engine, filled by successive records.log calls up to each size (saves time)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the stacks' homes in place at the end")
    args = parser.parse_args(argv)
    noop_sizes = args.noop_sizes or args.sizes
    command = "python benchmarks/argilla_stack.py " + " ".join(argv if argv is not None else sys.argv[1:])

    # The no-op launcher must be importable as `python -m _noop_engine_launcher` by the stack's children; the
    # repository root comes first so that this file never shadows the `argilla_stack` package.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(BENCH_DIR), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("TQDM_DISABLE", "1")
    embedded = Engine("embedded", args.homes[0], args.ports[0], "argilla_stack.launch")
    noop = Engine("noop", args.homes[1], args.ports[1], NOOP_LAUNCHER)
    engines = {"embedded": embedded, "noop": noop}
    report: dict = {
        "benchmark": "argilla_stack",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": versions(),
        "parameters": {
            "sizes_embedded": args.sizes,
            "sizes_noop": noop_sizes,
            "batch_size": args.batch_size,
            "batch_size_note": "records.log(batch_size=...); the SDK default is 256, the server caps a bulk at 500",
            "record": "text field (12-30 words), label suggestion (value, score, agent, type=model), metadata "
            "priority float, llm_confidence float, route terms, round integer; vector emb 384-d float32 "
            "random normal",
            "seed": args.seed,
            "search_repetitions": args.repetitions,
            "search_limit": args.limit,
            "homes": [str(home) for home in args.homes],
            "ports": args.ports,
            "database": "SQLite (the stack's default)",
            "order": "both stacks up side by side; per size the engines alternate (ABBA)",
            "incremental": args.incremental,
            "incremental_note": "sizes are cumulative checkpoints of one dataset per engine, each reached by one "
            "records.log call of the records since the previous checkpoint; records/s at a size is all records over "
            "all calls' time"
            if args.incremental
            else "one fresh dataset per size, filled by one records.log call",
        },
        "notes": [],
        "logging": [],
    }
    started = time.perf_counter()
    try:
        for engine in engines.values():
            engine.fresh()
            seconds = engine.start()
            say(f"{engine.name}: stack up in {seconds:.1f} s at port {engine.port}")
        sizes = sorted(set(args.sizes) | set(noop_sizes))
        wanted = {"embedded": set(args.sizes), "noop": set(noop_sizes)}
        largest: tuple[Data, str, str] | None = None
        shared = Data(max(sizes), args.seed) if args.incremental else None
        datasets: dict[str, object] = {}
        calls: dict[str, list[dict]] = {"embedded": [], "noop": []}
        for index, size in enumerate(sizes):
            data = shared or Data(size, args.seed)
            order = ["noop", "embedded"] if index % 2 == 0 else ["embedded", "noop"]
            for name in order:
                if size not in wanted[name]:
                    continue
                engine = engines[name]
                if args.incremental:
                    if name not in datasets:
                        datasets[name] = create_dataset(engine, f"bench_{name}")
                    start = calls[name][-1]["records"] if calls[name] else 0
                    calls[name].append(log_records(engine, data, datasets[name], start, size, args.batch_size))
                    report["calls"] = calls
                    row = cumulative(calls[name])
                else:
                    dataset = create_dataset(engine, f"bench_{size}_{name}")
                    row = log_records(engine, data, dataset, 0, size, args.batch_size)
                report["logging"].append(row)
                if name == "embedded" and size == max(args.sizes):
                    largest = (data, row["dataset_id"], row["dataset"])
                _write(args.out, report, partial=True)
        noop.stop()
        search = None
        if largest is not None:
            data, dataset_id, dataset_name = largest
            search = bench_search(embedded, data, dataset_id, dataset_name, args.repetitions, args.seed, args.limit)
            report["search"] = search
            _write(args.out, report, partial=True)
            report["rebuild"] = bench_rebuild(embedded)
            seconds = embedded.start()
            wrong = recheck_search(embedded, data, dataset_id, args.seed, args.limit)
            report["rebuild"]["up_after_rebuild_s"] = round(seconds, 1)
            report["rebuild"]["answers_wrong_after_restart"] = wrong
            say(f"after rebuild and restart (up in {seconds:.1f} s): {wrong} wrong answers out of 5")
        report["verdict"] = verdict(report["logging"], search, max(args.sizes))
        if max(noop_sizes) < max(args.sizes):
            report["notes"].append(
                f"The no-op engine was measured up to {max(noop_sizes):,} records only (time budget); the ratio at "
                f"larger sizes compares with that run."
            )
        report["notes"].append(
            "Wall-clock records/s on a shared 2-core machine is noisy; server+worker CPU ms/record (CPU seconds of "
            "the server's and worker's process sessions during the log) is the less contended view of overhead."
        )
        if not args.incremental:
            report["notes"].append(
                "The embedded store holds every dataset of the stack: at the largest size it also holds the smaller "
                "sizes' datasets."
            )
    finally:
        for engine in engines.values():
            engine.stop()
            if not args.keep and engine.home.exists():
                shutil.rmtree(engine.home, ignore_errors=True)
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    _write(args.out, report, partial=False)
    say(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    print(json.dumps(report["verdict"], indent=2))
    return 0 if report["verdict"]["all_bars_hold"] else 1


def _write(path: Path, report: dict, partial: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    report["partial"] = partial
    write_json(path, report)
    if not partial:
        write_markdown(path.with_suffix(".md"), report)


if __name__ == "__main__":
    sys.exit(main())
