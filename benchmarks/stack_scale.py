"""Benchmark of the local Argilla stack: logging throughput, search latency and store rebuild, on SQLite and PostgreSQL.

One invocation measures, against the real argilla-server 2.8.0 started by `argilla_stack.Stack`:

1. ``dataset.records.log`` (Argilla SDK) of each size in ``--sizes`` (default 10,000 and 100,000
   records: a text field, a label suggestion with score and agent, 4 metadata values -- priority
   float, llm_confidence float, route terms, round integer -- and a 384-d vector, random normal,
   seeded) into up to three stacks, side by side (separate fresh homes, ports 6911/6912/6913):

   - ``embedded``: the **embedded** engine on SQLite, the stack's default database;
   - ``noop``: a **no-op** in-memory engine registered by this benchmark alone
     (`benchmarks/_noop_engine_launcher.py`), on SQLite -- the ceiling of the stock server's own
     bulk path, against which the embedded engine's overhead is measured (sizes ``--noop-sizes``);
   - ``postgresql``: the embedded engine on **PostgreSQL** 15, a throwaway cluster started by the
     benchmark (`tests/support/postgres.py`: Debian's binaries, default settings, a fresh /tmp folder,
     127.0.0.1, a generated password; stopped and removed at the end, on errors, Ctrl-C and SIGTERM
     too), or the empty database of ``--postgres-url`` (or ``$LABELTRIAGE_BENCH_POSTGRES_URL``, which
     keeps the password out of the process list). Without PostgreSQL's binaries and without a URL the
     column is skipped with the reason printed and recorded.

   The same seeded records go to every stack, and the stacks alternate per size (noop, embedded,
   postgresql, then the reverse: ABBA for every pair) so that load from other work on the shared
   machine hits them alike. Besides wall time (records/s) it reports the CPU seconds used by the
   server's and worker's process sessions, which contention on the machine disturbs much less; on
   PostgreSQL also the CPU seconds of the database server (postmaster and backends), which SQLite
   spends inside the server process, and the total (server + worker + database) per record.
2. At the largest size, on each embedded stack: p50/p95 latency of filtered + metadata-sorted
   searches (``POST /api/v1/datasets/{id}/records/search`` with ``filters`` and ``sort``, varied
   parameters) and of vector similarity searches (``query.vector``), each answer checked against a
   brute-force computation on the generated records (totals, sort order, nearest neighbours). Every
   stack answers the same queries, in blocks of 10 with the stacks in ABBA order per block (query by
   query, one server's idle BLAS threads slowed the other's similarity searches); ``comparison``
   gives PostgreSQL/SQLite ratios of p50 and p95 and the median of the per-query ratios.
3. On each embedded stack, the time to rebuild the embedded store from Argilla's database (SQLite
   first, then PostgreSQL): stop the stack, delete ``<home>/argilla/search.sqlite3*``, time
   ``python -m argilla_stack.launch sync`` with the stack's environment; then start the stack again
   and re-check search answers.

Bars (issue 2): embedded/no-op records/s >= 0.8 (overhead <= 20 %, both on SQLite), filtered+sorted
p95 <= 300 ms, similarity p50 <= 500 ms at 100k records (checked on each database). The SQLite vs
PostgreSQL column (issue 16) has no bar: it says what the switch costs or buys, as ratios
PostgreSQL/SQLite (on a shared machine ratios of interleaved runs are steadier than absolute figures).

Run (about an hour at the sizes below; writes results/stack_scale.{json,md})::

    nohup .venv/bin/python benchmarks/stack_scale.py --incremental --sizes 10000 100000 \
        --noop-sizes 10000 > /tmp/bench-argilla.log 2>&1 &

``--databases sqlite`` (or ``postgresql``) runs one database only (the no-op stack runs with
``sqlite``); ``--incremental`` fills one dataset per stack up to each size in turn instead of one
fresh dataset per size, by records.log calls of at most ``--chunk`` (10,000) records with the stacks
taking turns per call (ABBA), so that load drifting during a long step hits every stack. Quick check:
``.venv/bin/python benchmarks/stack_scale.py --sizes 1000 --out /tmp/bench.json``.
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
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

from argilla_stack.stack import WORKSPACE, Stack, StackError, check_database_drivers, masked_url
from labeltriage.jsonio import write_json

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent

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
# Search queries go to the stacks in blocks, not one by one: numpy's OpenBLAS threads in one stack's server
# keep spinning after a similarity search's matrix product and, on 2 cores, slowed the other stack's next
# similarity search (2,000 records: 15 ms back to back on one stack, 35 ms alternating query by query).
SEARCH_BLOCK = 10
SEARCH_PAUSE_S = 1.0


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
def _process_stats() -> list[tuple[int, list[str]]]:
    """(pid, fields from field 3 on) of every live process; fields[0] is the state, fields[1] the parent pid,
    fields[3] the session, fields[11:15] utime/stime/cutime/cstime."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        out.append((int(entry.name), stat.rsplit(")", 1)[1].split()))
    return out


def session_cpu(leader: int) -> float:
    """CPU seconds (user + system) of every live process in the session led by ``leader``."""
    ticks = sum(
        sum(int(value) for value in fields[11:15]) for _, fields in _process_stats() if int(fields[3]) == leader
    )
    return ticks / CLK_TCK


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` (with its reaped children) and of its live children: a PostgreSQL
    postmaster and its backends, each of which is a session of its own."""
    ticks = sum(
        sum(int(value) for value in fields[11:15])
        for pid, fields in _process_stats()
        if pid == root or int(fields[1]) == root
    )
    return ticks / CLK_TCK


class Engine:
    """One stack (one home, one port, one search engine, one database) and its SDK client.

    ``name`` names the stack in the report (``embedded``, ``noop``, ``postgresql``); ``engine`` is
    its search engine and ``database`` its database (``sqlite``, the stack's default, or ``postgresql``
    at ``database_url``). ``postmaster`` is the pid of the PostgreSQL server when the benchmark runs
    it, so that the database's own CPU time is counted (SQLite's runs inside the server process)."""

    def __init__(
        self,
        name: str,
        home: Path,
        port: int,
        launcher: str,
        engine: str | None = None,
        database_url: str | None = None,
        postmaster: int | None = None,
    ):
        self.name, self.home, self.port, self.launcher = name, home, port, launcher
        self.engine = engine or name
        self.database = "postgresql" if database_url else "sqlite"
        self.database_url, self.postmaster = database_url, postmaster
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
            search_engine=self.engine,
            database_url=self.database_url,
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

    def database_cpu(self) -> float | None:
        """CPU seconds of the PostgreSQL server so far; None for SQLite (in the server process) or a
        server the benchmark did not start."""
        return tree_cpu(self.postmaster) if self.postmaster else None

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
    cpu_before, db_before, load_before = engine.cpu(), engine.database_cpu(), os.getloadavg()[0]
    client_cpu = time.process_time()
    started = time.perf_counter()
    dataset.records.log(records, batch_size=batch_size)
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    cpu_after, db_after, load_after = engine.cpu(), engine.database_cpu(), os.getloadavg()[0]
    del records
    gc.collect()
    server_cpu = {key: round(cpu_after[key] - cpu_before.get(key, 0.0), 2) for key in cpu_after}
    database_cpu = round(db_after - db_before, 2) if db_after is not None and db_before is not None else None
    result = {
        "stack": engine.name,
        "engine": engine.engine,
        "database": engine.database,
        "records": stop,
        "logged": count,
        "dataset": dataset.name,
        "dataset_id": str(dataset.id),
        "seconds": round(seconds, 2),
        "records_per_s": round(count / seconds, 1),
        "server_cpu_s": server_cpu,
        "server_cpu_ms_per_record": round(1000 * sum(server_cpu.values()) / count, 3),
        **_database_cpu_fields(engine, [database_cpu], sum(server_cpu.values()), count),
        "client_cpu_s": round(client_cpu, 2),
        "loadavg_1min_before_after": [round(load_before, 2), round(load_after, 2)],
    }
    database_note = (
        f", PostgreSQL server CPU {database_cpu:.1f} s ({result['database_cpu_ms_per_record']} ms/record)"
        if database_cpu is not None
        else ""
    )
    say(
        f"{engine.name}: logged records {start}:{stop} in {seconds:.1f} s = {result['records_per_s']} records/s; "
        f"server+worker CPU {sum(server_cpu.values()):.1f} s ({result['server_cpu_ms_per_record']} ms/record)"
        f"{database_note}, load {load_before:.1f} -> {load_after:.1f}"
    )
    return result


def _database_cpu_fields(engine: Engine, database_cpu: list[float | None], server_cpu: float, count: int) -> dict:
    """``database_cpu_s`` (PostgreSQL's own processes; None when not measured, and for SQLite, which runs in
    the server process) and ``total_cpu_ms_per_record``: server + worker + database, the fair comparison."""
    if engine.database == "sqlite":
        return {"database_cpu_s": None, "total_cpu_ms_per_record": round(1000 * server_cpu / count, 3)}
    if any(value is None for value in database_cpu):
        return {"database_cpu_s": None, "database_cpu_ms_per_record": None, "total_cpu_ms_per_record": None}
    seconds = sum(database_cpu)
    return {
        "database_cpu_s": round(seconds, 2),
        "database_cpu_ms_per_record": round(1000 * seconds / count, 3),
        "total_cpu_ms_per_record": round(1000 * (server_cpu + seconds) / count, 3),
    }


def cumulative(engine: Engine, rows: list[dict]) -> dict:
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
        **_database_cpu_fields(engine, [row["database_cpu_s"] for row in rows], cpu, count),
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


def _in_blocks(names: list[str], count: int, block: int, pause: float, run: Callable[[str, int], None]) -> None:
    """``run(name, index)`` for every stack and query index 0..count-1: blocks of ``block`` queries, the
    stacks in ABBA order per block, ``pause`` seconds whenever the stack changes."""
    previous = None
    for number, first in enumerate(range(0, count, block)):
        for name in names if number % 2 == 0 else names[::-1]:
            if previous not in (None, name):
                time.sleep(pause)
            previous = name
            for index in range(first, min(first + block, count)):
                run(name, index)


def bench_search(
    targets: dict[str, tuple[Engine, str, str]],
    data: Data,
    repetitions: int,
    seed: int,
    limit: int,
    block: int = SEARCH_BLOCK,
    pause: float = SEARCH_PAUSE_S,
) -> dict:
    """Search latency on each stack of ``targets`` (name -> engine, dataset id, dataset name), all holding
    ``data``; returns name -> result. Every stack answers the same queries, in blocks of ``block`` queries
    with the stacks in ABBA order per block (see SEARCH_BLOCK), so that machine load hits them alike."""
    import httpx

    names = list(targets)
    count = repetitions + 2  # the first 2 answers of each stack are warm-ups, checked but not timed
    rng = np.random.default_rng([seed, 7])
    results: dict[str, dict] = {
        name: {
            "records": data.size,
            "limit": limit,
            "repetitions": repetitions,
            "warmup": 2,
            "order": f"blocks of {block} queries, stacks in ABBA order per block, {pause} s pause at each switch",
        }
        for name in names
    }
    filtered = [filtered_query(rng, data) for _ in range(count)]
    similar = []
    for _ in range(count):
        target = int(rng.integers(data.size))
        similar.append((target, data.vectors[target] + 0.5 * rng.standard_normal(DIM).astype(np.float32)))
    unit = data.vectors / np.linalg.norm(data.vectors, axis=1, keepdims=True)
    expected_similar = [
        {data.ids[i] for i in np.argsort(-(unit @ (value / np.linalg.norm(value))), kind="stable")[:limit]}
        for _, value in similar
    ]
    timings = {kind: {name: [0.0] * count for name in names} for kind in ("filtered_sorted", "similarity")}
    mismatches: dict[str, list] = {name: [] for name in names}
    wrong = dict.fromkeys(names, 0)
    with contextlib.ExitStack() as clients:
        http, urls = {}, {}
        for name, (engine, dataset_id, _) in targets.items():
            api_url, api_key = engine.stack.credentials()
            http[name] = clients.enter_context(
                httpx.Client(base_url=api_url, headers={"X-Argilla-Api-Key": api_key}, timeout=120)
            )
            urls[name] = f"/api/v1/datasets/{dataset_id}/records/search"

        def post(name: str, body: dict) -> tuple[float, dict]:
            started = time.perf_counter()
            response = http[name].post(urls[name], params={"limit": limit}, json=body)
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            return elapsed * 1000, response.json()

        # Filtered + metadata-sorted.
        def run_filtered(name: str, index: int) -> None:
            body, mask, sort = filtered[index]
            timings["filtered_sorted"][name][index], answer = post(name, body)
            expected_total = int(mask.sum())
            if answer["total"] != expected_total or not check_sorted(data, mask, sort, answer["items"], limit):
                mismatches[name].append({"body": body, "total": answer["total"], "expected_total": expected_total})

        # Vector similarity: a stored vector plus noise; the top hits must be the brute-force ones.
        def run_similar(name: str, index: int) -> None:
            target, value = similar[index]
            body = {"query": {"vector": {"name": "emb", "value": value.tolist()}}}
            timings["similarity"][name][index], answer = post(name, body)
            got = [item["record"]["external_id"] for item in answer["items"]]
            if got[:1] != [data.ids[target]] or set(got) != expected_similar[index]:
                wrong[name] += 1

        _in_blocks(names, count, block, pause, run_filtered)
        _in_blocks(names, count, block, pause, run_similar)

    totals = [int(mask.sum()) for _, mask, _ in filtered[2:]]
    for name in names:
        timed = timings["filtered_sorted"][name][2:]
        results[name]["filtered_sorted"] = {
            "p50_ms": round(percentile(timed, 50), 1),
            "p95_ms": round(percentile(timed, 95), 1),
            "max_ms": round(max(timed), 1),
            "matches_min_median_max": [min(totals), int(np.median(totals)), max(totals)],
            "answers_checked": count,
            "answers_wrong": len(mismatches[name]),
            "first_wrong": mismatches[name][:2],
        }
        timed = timings["similarity"][name][2:]
        results[name]["similarity"] = {
            "p50_ms": round(percentile(timed, 50), 1),
            "p95_ms": round(percentile(timed, 95), 1),
            "max_ms": round(max(timed), 1),
            "answers_checked": count,
            "answers_wrong": wrong[name],
        }
        for kind in ("filtered_sorted", "similarity"):
            results[name][f"{kind}_ms"] = [round(value, 1) for value in timings[kind][name][2:]]
            say(
                f"{name}: {kind.replace('_', '+')} search at {data.size}: p50 {results[name][kind]['p50_ms']} ms, "
                f"p95 {results[name][kind]['p95_ms']} ms, wrong answers {results[name][kind]['answers_wrong']}"
            )

    # The same similarity search through the SDK (rg.Query(similar=...)), for reference.
    import argilla as rg

    values = [data.vectors[int(rng.integers(data.size))].tolist() for _ in range(10)]
    for number, (name, (engine, _, dataset_name)) in enumerate(targets.items()):
        if number:
            time.sleep(pause)
        try:
            dataset = engine.client.datasets(name=dataset_name, workspace=WORKSPACE)
            sdk_timings = []
            for value in values:
                started = time.perf_counter()
                query = rg.Query(similar=rg.Similar(name="emb", value=value))
                fetched = list(dataset.records(query=query, limit=limit))
                sdk_timings.append((time.perf_counter() - started) * 1000)
            results[name]["similarity_sdk"] = {
                "p50_ms": round(percentile(sdk_timings, 50), 1),
                "repetitions": 10,
                "returned": len(fetched),
            }
            say(f"{name}: similarity search through the SDK: p50 {results[name]['similarity_sdk']['p50_ms']} ms")
        except Exception as exc:  # informational only: never lose the run's other figures
            results[name]["similarity_sdk"] = {"error": repr(exc)[:500]}
            say(f"{name}: similarity search through the SDK failed: {exc!r}")
    return results


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
    say(f"{engine.name}: deleted the embedded store ({size_mb:.0f} MB: {', '.join(p.name for p in files)}); rebuilding")
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
        "database": engine.database,
        "command": "python -m argilla_stack.launch sync (stack stopped, search.sqlite3* deleted)",
        "seconds": round(seconds, 1),
        "records_reindexed": records,
        "datasets_reindexed": len(reindexed),
        "records_per_s": round(records / seconds, 1),
        "store_mb_before": round(size_mb, 1),
        "store_mb_after": round(new_size, 1),
    }
    say(f"{engine.name}: rebuilt the store: {records} records in {seconds:.1f} s = {result['records_per_s']} records/s")
    return result


# -- report ----------------------------------------------------------------------------------------
def versions() -> dict:
    out = {"python": platform.python_version(), "nproc": os.cpu_count(), "platform": platform.platform()}
    for package in ("argilla", "argilla-server", "numpy", "sqlalchemy", "aiosqlite", "asyncpg", "psycopg2-binary"):
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


def _bar(search: dict) -> dict:
    """Issue 2's search bars on one stack's search result."""
    p95, p50 = search["filtered_sorted"]["p95_ms"], search["similarity"]["p50_ms"]
    return {
        "filtered_sorted_p95": {
            "records": search["records"],
            "value_ms": p95,
            "bar_ms": 300,
            "holds": p95 <= 300 and search["records"] >= 100_000,
            "answers_wrong": search["filtered_sorted"]["answers_wrong"],
        },
        "similarity_p50": {
            "records": search["records"],
            "value_ms": p50,
            "bar_ms": 500,
            "holds": p50 <= 500 and search["records"] >= 100_000,
            "answers_wrong": search["similarity"]["answers_wrong"],
        },
    }


def verdict(logging: list[dict], search: dict | None, max_size: int, search_postgresql: dict | None = None) -> dict:
    """Issue 2's bars: embedded/no-op records/s (both on SQLite) and the search bars, on SQLite and, when it
    ran, on PostgreSQL (``verdict["postgresql"]``); ``all_bars_hold`` needs every one of them."""
    by = {(row.get("stack", row["engine"]), row["records"]): row for row in logging}
    out: dict = {"overhead": []}
    for (stack, size), row in sorted(by.items()):
        if stack != "embedded":
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
        out.update(_bar(search))
    if search_postgresql is not None:
        out["postgresql"] = _bar(search_postgresql)
    checks = [row["holds"] for row in out["overhead"]]
    for bars in (out, out.get("postgresql", {})):
        checks += [bars[key]["holds"] for key in ("filtered_sorted_p95", "similarity_p50") if key in bars]
    out["all_bars_hold"] = bool(checks) and all(checks) and max_size >= 100_000
    return out


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator is not None and denominator else None


def compare_databases(report: dict) -> dict:
    """PostgreSQL / SQLite, embedded engine on both: per logged size, search at the largest size, rebuild."""
    rows = {(row["stack"], row["records"]): row for row in report["logging"]}
    logging = []
    for size in sorted({size for stack, size in rows if stack == "postgresql"}):
        sqlite, postgresql = rows.get(("embedded", size)), rows[("postgresql", size)]
        if sqlite is None:
            continue
        keys = ("records_per_s", "server_cpu_ms_per_record", "total_cpu_ms_per_record")
        logging.append(
            {
                "records": size,
                "sqlite": {key: sqlite[key] for key in keys},
                "postgresql": {key: postgresql.get(key) for key in (*keys, "database_cpu_ms_per_record")},
                "ratio_records_per_s": _ratio(postgresql["records_per_s"], sqlite["records_per_s"]),
                "ratio_server_cpu_per_record": _ratio(
                    postgresql["server_cpu_ms_per_record"], sqlite["server_cpu_ms_per_record"]
                ),
                "ratio_total_cpu_per_record": _ratio(
                    postgresql.get("total_cpu_ms_per_record"), sqlite["total_cpu_ms_per_record"]
                ),
            }
        )
    out: dict = {
        "ratios": "PostgreSQL / SQLite. records/s: above 1 means PostgreSQL logs faster; CPU per record and "
        "latency: above 1 means PostgreSQL costs more",
        "logging": logging,
    }
    search, search_pg = report.get("search"), report.get("search_postgresql")
    if search and search_pg:
        out["search"] = {"records": search["records"]}
        for kind in ("filtered_sorted", "similarity"):
            a, b = search[kind], search_pg[kind]
            paired = np.asarray(search_pg[f"{kind}_ms"]) / np.asarray(search[f"{kind}_ms"])
            out["search"][kind] = {
                "sqlite_p50_ms": a["p50_ms"],
                "sqlite_p95_ms": a["p95_ms"],
                "postgresql_p50_ms": b["p50_ms"],
                "postgresql_p95_ms": b["p95_ms"],
                "ratio_p50": _ratio(b["p50_ms"], a["p50_ms"]),
                "ratio_p95": _ratio(b["p95_ms"], a["p95_ms"]),
                "paired_median_ratio": round(float(np.median(paired)), 3),
                "answers_wrong": {"sqlite": a["answers_wrong"], "postgresql": b["answers_wrong"]},
            }
    rebuild, rebuild_pg = report.get("rebuild"), report.get("rebuild_postgresql")
    if rebuild and rebuild_pg:
        out["rebuild"] = {
            "sqlite_seconds": rebuild["seconds"],
            "postgresql_seconds": rebuild_pg["seconds"],
            "ratio_seconds": _ratio(rebuild_pg["seconds"], rebuild["seconds"]),
        }
    return out


def write_markdown(path: Path, report: dict) -> None:
    databases = " and ".join({"sqlite": "SQLite", "postgresql": "PostgreSQL"}[d] for d in report["databases"])
    lines = [
        "# Argilla stack benchmark",
        "",
        f"{report['date']}, {report['machine']['nproc']} cores (shared), Python {report['machine']['python']}, "
        f"argilla {report['machine'].get('argilla')} / argilla-server {report['machine'].get('argilla-server')}, "
        f"{databases} database{'s' if len(report['databases']) > 1 else ''}, batch size "
        f"{report['parameters']['batch_size']}. Rerun: `{report['command']}`.",
    ]
    postgresql = report.get("postgresql") or {}
    if postgresql.get("skipped"):
        lines += ["", f"PostgreSQL column skipped: {postgresql['skipped']}."]
    elif postgresql:
        settings_ = ", ".join(f"{key} {value}" for key, value in postgresql.get("settings", {}).items())
        lines += ["", f"PostgreSQL: {postgresql['server_version']} ({postgresql['source']}); {settings_}."]
    lines += [
        "",
        "## records.log",
        "",
        "| stack | engine | database | records | seconds | records/s | server+worker CPU ms/record | "
        "PostgreSQL CPU ms/record | load 1-min before/after |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in report["logging"]:
        database_cpu = row.get("database_cpu_ms_per_record")
        lines.append(
            f"| {row['stack']} | {row['engine']} | {row['database']} | {row['records']:,} | {row['seconds']} | "
            f"{row['records_per_s']} | {row['server_cpu_ms_per_record']} | "
            f"{'-' if database_cpu is None else database_cpu} | {row['loadavg_1min_before_after']} |"
        )
    if report.get("calls"):
        lines += [
            "",
            "Incremental mode: " + report["parameters"]["incremental_note"] + ". The calls:",
            "",
            "| stack | records | up to | seconds | records/s | server+worker CPU ms/record |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, rows in report["calls"].items():
            for row in rows:
                lines.append(
                    f"| {name} | {row['logged']:,} | {row['records']:,} | {row['seconds']} | {row['records_per_s']} | "
                    f"{row['server_cpu_ms_per_record']} |"
                )
    comparison = report.get("comparison") or {}
    if comparison.get("logging") or comparison.get("search"):
        lines += [
            "",
            "## SQLite vs PostgreSQL (embedded engine on both)",
            "",
            "| figure | SQLite | PostgreSQL | PostgreSQL/SQLite |",
            "|---|---:|---:|---:|",
        ]
        for row in comparison["logging"]:
            a, b, n = row["sqlite"], row["postgresql"], f"{row['records']:,}"
            lines += [
                f"| records/s at {n} | {a['records_per_s']} | {b['records_per_s']} | {row['ratio_records_per_s']} |",
                f"| server+worker CPU ms/record at {n} | {a['server_cpu_ms_per_record']} | "
                f"{b['server_cpu_ms_per_record']} | {row['ratio_server_cpu_per_record']} |",
                f"| + database CPU ms/record at {n} | (in the server) | {b['database_cpu_ms_per_record']} | |",
                f"| total CPU ms/record at {n} | {a['total_cpu_ms_per_record']} | {b['total_cpu_ms_per_record']} | "
                f"{row['ratio_total_cpu_per_record']} |",
            ]
        if comparison.get("search"):
            search, n = comparison["search"], f"{comparison['search']['records']:,}"
            for kind, label in (("filtered_sorted", "filtered+sorted"), ("similarity", "similarity")):
                row = search[kind]
                lines += [
                    f"| {label} search p50 ms at {n} | {row['sqlite_p50_ms']} | {row['postgresql_p50_ms']} | "
                    f"{row['ratio_p50']} (paired median {row['paired_median_ratio']}) |",
                    f"| {label} search p95 ms at {n} | {row['sqlite_p95_ms']} | {row['postgresql_p95_ms']} | "
                    f"{row['ratio_p95']} |",
                    f"| {label} wrong answers | {row['answers_wrong']['sqlite']} | "
                    f"{row['answers_wrong']['postgresql']} | |",
                ]
        if comparison.get("rebuild"):
            row = comparison["rebuild"]
            lines.append(
                f"| store rebuild s | {row['sqlite_seconds']} | {row['postgresql_seconds']} | {row['ratio_seconds']} |"
            )
        lines += ["", comparison["ratios"] + "."]
    lines += ["", "## Verdict", "", "| figure | value | bar | holds |", "|---|---:|---|---|"]
    for row in report["verdict"]["overhead"]:
        lines.append(
            f"| embedded/no-op records/s at {row['records']:,} (SQLite) | {row['ratio_embedded_over_noop']} "
            f"(overhead {row['overhead_pct']}%, CPU ratio {row['server_cpu_per_record_ratio']}) | >= 0.80 | "
            f"{'yes' if row['holds'] else 'NO'} |"
        )
    for database, bars in (("SQLite", report["verdict"]), ("PostgreSQL", report["verdict"].get("postgresql", {}))):
        for key, label in (("filtered_sorted_p95", "filtered+sorted p95"), ("similarity_p50", "similarity p50")):
            if key in bars:
                row = bars[key]
                lines.append(
                    f"| {label} at {row['records']:,} ({database}) | {row['value_ms']} ms ({row['answers_wrong']} "
                    f"wrong answers) | <= {row['bar_ms']} ms | {'yes' if row['holds'] else 'NO'} |"
                )
    for key, database in (("search", "SQLite"), ("search_postgresql", "PostgreSQL")):
        if report.get(key):
            search = report[key]
            lines += [
                "",
                f"Search on {database} at {search['records']:,} records (limit {search['limit']}, "
                f"{search['repetitions']} timed repetitions after {search['warmup']} warm-ups): filtered+sorted p50 "
                f"{search['filtered_sorted']['p50_ms']} / p95 {search['filtered_sorted']['p95_ms']} ms (matches per "
                f"query {search['filtered_sorted']['matches_min_median_max']}); similarity p50 "
                f"{search['similarity']['p50_ms']} / p95 {search['similarity']['p95_ms']} ms; through the SDK p50 "
                f"{search['similarity_sdk'].get('p50_ms')} ms.",
            ]
    for key, database in (("rebuild", "SQLite"), ("rebuild_postgresql", "PostgreSQL")):
        if report.get(key):
            rebuild = report[key]
            lines += [
                "",
                f"Store rebuild from the {database} database: {rebuild['records_reindexed']:,} records "
                f"({rebuild['datasets_reindexed']} datasets) in {rebuild['seconds']} s = "
                f"{rebuild['records_per_s']} records/s; store "
                f"{rebuild['store_mb_after']} MB. Answers wrong after rebuild + restart: "
                f"{rebuild.get('answers_wrong_after_restart')}.",
            ]
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    path.write_text("\n".join(lines) + "\n")


# -- PostgreSQL ------------------------------------------------------------------------------------
POSTGRES_URL_ENV = "LABELTRIAGE_BENCH_POSTGRES_URL"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_info(url: str) -> dict:
    """Server version, the settings that matter for writes, and the user tables of the database at ``url``."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    engine = create_engine(make_url(url).set(drivername="postgresql"), poolclass=NullPool, hide_parameters=True)
    try:
        with engine.connect() as connection:
            show = lambda name: connection.exec_driver_sql(f"SHOW {name}").scalar()  # noqa: E731
            return {
                "server_version": "PostgreSQL " + show("server_version"),
                "settings": {
                    name: show(name) for name in ("shared_buffers", "synchronous_commit", "fsync", "max_connections")
                },
                "tables": inspect(connection).get_table_names(),
            }
    finally:
        engine.dispose()


@contextlib.contextmanager
def postgres_database(url: str | None) -> Iterator[tuple[str, int | None, dict]]:
    """(URL, postmaster pid or None, description) of the PostgreSQL database for the PostgreSQL stack.

    Without ``url``: a throwaway cluster (`tests/support/postgres.py`: Debian's PostgreSQL binaries, a fresh
    /tmp folder, 127.0.0.1, a generated password), stopped and removed on the way out -- errors, Ctrl-C and
    SIGTERM included. With ``url``: that database, which must be reachable and empty (the benchmark adds an
    owner, a workspace and its datasets there and drops nothing)."""
    from argilla_stack.stack import database_unreachable, masked_url, normalized_database_url

    if url:
        url = normalized_database_url(url)
        if not url.startswith("postgresql"):
            raise StackError(f"--postgres-url must be a PostgreSQL URL, not {masked_url(url)}")
        if reason := database_unreachable(url):
            raise StackError(f"PostgreSQL at {masked_url(url)} is unreachable: {reason}")
        info = postgres_info(url)
        if info.pop("tables"):
            raise StackError(
                f"the database at {masked_url(url)} is not empty: the benchmark needs an empty one (it creates "
                "Argilla's tables, an owner and its datasets there)"
            )
        yield url, None, {**info, "source": "--postgres-url", "url": masked_url(url)}
        return
    from tests.support.postgres import postgres_cluster

    with postgres_cluster(_free_port()) as cluster:
        postmaster = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
        info = postgres_info(cluster.url)
        info.pop("tables")
        source = "throwaway cluster started by the benchmark (tests/support/postgres.py), Debian's default settings"
        say(f"PostgreSQL: {info['server_version']} at 127.0.0.1:{cluster.port} (throwaway cluster, pid {postmaster})")
        try:
            yield cluster.url, postmaster, {**info, "source": source, "url": masked_url(cluster.url)}
        finally:
            say("PostgreSQL: stopping and removing the throwaway cluster")


def postgres_missing(url: str | None) -> str | None:
    """Why the PostgreSQL column cannot run, or None."""
    from tests.support.postgres import postgres_bin

    if url is None and postgres_bin() is None:
        return (
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin; `make setup` installs them) and no "
            f"--postgres-url / {POSTGRES_URL_ENV} given"
        )
    try:
        check_database_drivers("postgresql+asyncpg://u@127.0.0.1/db")
    except StackError as exc:
        return str(exc)
    return None


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (``kill``): unwind like Ctrl-C, so the stacks and the PostgreSQL cluster are stopped."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    say("SIGTERM: stopping the stacks (and PostgreSQL) before exiting")
    raise SystemExit(128 + signum)


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="embedded engine sizes")
    parser.add_argument("--noop-sizes", type=int, nargs="+", help="no-op engine sizes (default: --sizes)")
    parser.add_argument(
        "--databases",
        nargs="+",
        choices=["sqlite", "postgresql"],
        default=["sqlite", "postgresql"],
        help="databases of the embedded-engine stacks (the no-op stack runs with sqlite)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL_ENV),
        help=f"an empty PostgreSQL database to use instead of a throwaway cluster (or set {POSTGRES_URL_ENV}, "
        "which keeps the password out of the process list)",
    )
    parser.add_argument("--batch-size", type=int, default=500, help="records.log batch_size (server cap: 500)")
    parser.add_argument("--repetitions", type=int, default=40, help="timed searches of each kind")
    parser.add_argument("--limit", type=int, default=50, help="page size of the searches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--homes",
        type=Path,
        nargs=3,
        metavar=("EMBEDDED", "NOOP", "POSTGRESQL"),
        default=[Path("/tmp/bench-embedded"), Path("/tmp/bench-noop"), Path("/tmp/bench-postgresql")],
    )
    parser.add_argument(
        "--ports", type=int, nargs=3, metavar=("EMBEDDED", "NOOP", "POSTGRESQL"), default=[6911, 6912, 6913]
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "stack_scale.json")
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="one dataset per stack, filled by successive records.log calls up to each size (saves time)",
    )
    parser.add_argument(
        "--chunk",
        type=int,
        default=10_000,
        help="incremental mode: at most this many records per records.log call, the stacks taking turns per call "
        "(ABBA) so that load drifting during a long step hits them alike; 0: one call per step",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the stacks' homes in place at the end (a throwaway PostgreSQL cluster is removed all the same)",
    )
    args = parser.parse_args(argv)
    noop_sizes = args.noop_sizes or args.sizes
    command = "python benchmarks/stack_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.postgres_url:  # the report shows the command: never the password
        command = command.replace(args.postgres_url, masked_url(args.postgres_url) or "")
    databases = [d for d in ("sqlite", "postgresql") if d in args.databases]
    notes: list[str] = []
    postgresql_report: dict = {}
    if "postgresql" in databases and (reason := postgres_missing(args.postgres_url)):
        say(f"PostgreSQL column skipped: {reason}")
        databases.remove("postgresql")
        postgresql_report = {"skipped": reason}
        notes.append(f"PostgreSQL column skipped: {reason}.")
    if not databases:
        say("nothing to run: no database left (see above)")
        return 2

    # The no-op launcher must be importable as `python -m _noop_engine_launcher` by the stack's children.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("TQDM_DISABLE", "1")
    previous_sigterm = signal.signal(signal.SIGTERM, _terminate)
    report: dict = {
        "benchmark": "stack_scale",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": versions(),
        "databases": databases,
        "parameters": {
            "sizes_embedded": args.sizes,
            "sizes_noop": noop_sizes if "sqlite" in databases else [],
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
            "stacks": "embedded: embedded engine on SQLite (the stack's default); noop: no-op engine on SQLite; "
            "postgresql: embedded engine on PostgreSQL",
            "order": "all stacks up side by side; per size the stacks alternate (noop, embedded, postgresql, then "
            "the reverse: ABBA for every pair); every stack answers the same search queries, in blocks of "
            f"{SEARCH_BLOCK} with the stacks in ABBA order per block and a {SEARCH_PAUSE_S} s pause at each switch",
            "incremental": args.incremental,
            "chunk": args.chunk if args.incremental else None,
            "incremental_note": "sizes are cumulative checkpoints of one dataset per stack, each reached by "
            + (
                f"records.log calls of at most {args.chunk:,} records, the stacks taking turns per call (ABBA)"
                if args.chunk > 0
                else "one records.log call of the records since the previous checkpoint"
            )
            + "; records/s at a size is all records over all calls' time"
            if args.incremental
            else "one fresh dataset per size, filled by one records.log call",
        },
        **({"postgresql": postgresql_report} if postgresql_report else {}),
        "notes": notes,
        "logging": [],
    }
    started = time.perf_counter()
    engines: dict[str, Engine] = {}
    try:
        with contextlib.ExitStack() as resources:
            if "sqlite" in databases:
                engines["noop"] = Engine("noop", args.homes[1], args.ports[1], NOOP_LAUNCHER)
                engines["embedded"] = Engine("embedded", args.homes[0], args.ports[0], "argilla_stack.launch")
            if "postgresql" in databases:
                url, postmaster, info = resources.enter_context(postgres_database(args.postgres_url))
                report["postgresql"] = info
                engines["postgresql"] = Engine(
                    "postgresql",
                    args.homes[2],
                    args.ports[2],
                    "argilla_stack.launch",
                    engine="embedded",
                    database_url=url,
                    postmaster=postmaster,
                )
            try:
                _run(args, report, engines, noop_sizes)
            finally:
                for engine in engines.values():  # before the PostgreSQL cluster stops (the ExitStack's exit)
                    try:
                        engine.stop()
                    except Exception as exc:  # stop the others all the same
                        say(f"{engine.name}: stopping failed: {exc!r}")
                    if not args.keep and engine.home.exists():
                        shutil.rmtree(engine.home, ignore_errors=True)
    except StackError as exc:  # a stack or database problem, explained with its fix: no traceback needed
        say(f"error: {exc}")
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    _write(args.out, report, partial=False)
    say(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    print(json.dumps(report["verdict"], indent=2))
    return 0 if report["verdict"]["all_bars_hold"] else 1


def _chunks(start: int, stop: int, chunk: int) -> list[tuple[int, int]]:
    """Record ranges from ``start`` to ``stop``, at most ``chunk`` records each (all in one if ``chunk`` <= 0)."""
    if chunk <= 0:
        return [(start, stop)] if stop > start else []
    return [(first, min(first + chunk, stop)) for first in range(start, stop, chunk)]


def _run(args: argparse.Namespace, report: dict, engines: dict[str, Engine], noop_sizes: list[int]) -> None:
    """Log, search, rebuild; fills ``report`` (written after every step, as partial)."""
    for engine in engines.values():
        engine.fresh()
        seconds = engine.start()
        say(f"{engine.name}: stack up in {seconds:.1f} s at port {engine.port}")
    sizes = sorted(set(args.sizes) | (set(noop_sizes) if "noop" in engines else set()))
    wanted = {"embedded": set(args.sizes), "noop": set(noop_sizes), "postgresql": set(args.sizes)}
    largest: dict[str, tuple[Data, str, str]] = {}
    shared = Data(max(sizes), args.seed) if args.incremental else None
    datasets: dict[str, object] = {}
    calls: dict[str, list[dict]] = {name: [] for name in engines}
    turn = 0  # the stacks' order flips at every turn: ABBA
    for size in sizes:
        data = shared or Data(size, args.seed)
        present = [name for name in engines if size in wanted[name]]
        rows: dict[str, dict] = {}
        if args.incremental:
            for name in present:
                if name not in datasets:
                    datasets[name] = create_dataset(engines[name], f"bench_{name}")
            steps = {
                name: _chunks(calls[name][-1]["records"] if calls[name] else 0, size, args.chunk) for name in present
            }
            for number in range(max(len(chunks) for chunks in steps.values())):
                for name in present if turn % 2 == 0 else present[::-1]:
                    if number < len(steps[name]):
                        start, stop = steps[name][number]
                        calls[name].append(
                            log_records(engines[name], data, datasets[name], start, stop, args.batch_size)
                        )
                        report["calls"] = calls
                        _write(args.out, report, partial=True)
                turn += 1
            rows = {name: cumulative(engines[name], calls[name]) for name in present}
        else:
            for name in present if turn % 2 == 0 else present[::-1]:
                dataset = create_dataset(engines[name], f"bench_{size}_{name}")
                rows[name] = log_records(engines[name], data, dataset, 0, size, args.batch_size)
            turn += 1
        for name in present:
            report["logging"].append(rows[name])
            if engines[name].engine == "embedded" and size == max(args.sizes):
                largest[name] = (data, rows[name]["dataset_id"], rows[name]["dataset"])
        _write(args.out, report, partial=True)
    if "noop" in engines:
        engines["noop"].stop()
    if largest:
        data = next(iter(largest.values()))[0]
        targets = {
            name: (engines[name], dataset_id, dataset_name) for name, (_, dataset_id, dataset_name) in largest.items()
        }
        searches = bench_search(targets, data, args.repetitions, args.seed, args.limit)
        report["search"], report["search_postgresql"] = searches.get("embedded"), searches.get("postgresql")
        _write(args.out, report, partial=True)
        for name, (_, dataset_id, _) in largest.items():
            key = "rebuild" if name == "embedded" else "rebuild_postgresql"
            report[key] = bench_rebuild(engines[name])
            seconds = engines[name].start()
            wrong = recheck_search(engines[name], data, dataset_id, args.seed, args.limit)
            report[key]["up_after_rebuild_s"] = round(seconds, 1)
            report[key]["answers_wrong_after_restart"] = wrong
            say(f"{name}: after rebuild and restart (up in {seconds:.1f} s): {wrong} wrong answers out of 5")
            _write(args.out, report, partial=True)
    report["verdict"] = verdict(
        report["logging"], report.get("search"), max(args.sizes), search_postgresql=report.get("search_postgresql")
    )
    if "postgresql" in engines and "embedded" in engines:
        report["comparison"] = compare_databases(report)
    notes = report["notes"]
    if "noop" in engines and max(noop_sizes) < max(args.sizes):
        notes.append(
            f"The no-op engine was measured up to {max(noop_sizes):,} records only (time budget); the ratio at "
            f"larger sizes compares with that run."
        )
    notes.append(
        "Wall-clock records/s on a shared 2-core machine is noisy; server+worker CPU ms/record (CPU seconds of "
        "the server's and worker's process sessions during the log) is the less contended view of overhead."
    )
    if "postgresql" in engines:
        measured = engines["postgresql"].postmaster is not None
        notes.append(
            "PostgreSQL does its database work in its own processes, SQLite inside Argilla's server: the PostgreSQL "
            "stack's server+worker CPU leaves the database out, "
            + (
                "so its database CPU (the postmaster and its backends, with the reaped ones) is reported beside it "
                "and total CPU per record (server + worker + database) is the like-for-like comparison."
                if measured
                else "and the database's CPU is not measured (--postgres-url: a server the benchmark did not start)."
            )
        )
        notes.append(
            "Both stacks search with the same kind of embedded store; the database's share of a search is Argilla's "
            "own reads (the user, the dataset, its metadata and vector settings) and loading the page's records by "
            "id, so search ratios show those reads on each database. The store rebuild reads every record from the "
            "database; the stacks are rebuilt in turn, SQLite first."
        )
    if len(largest) > 1:
        notes.append(
            f"The stacks answered the same search queries in blocks of {SEARCH_BLOCK}, ABBA, with a "
            f"{SEARCH_PAUSE_S} s pause at each switch: sent query by query, one server's numpy (OpenBLAS) threads, "
            "spinning after a similarity search's matrix product, slowed the other server's similarity searches "
            "(2,000 records: 15 ms back to back, 35 ms alternating)."
        )
    if not args.incremental:
        notes.append(
            "The embedded store holds every dataset of the stack: at the largest size it also holds the smaller "
            "sizes' datasets."
        )


def _write(path: Path, report: dict, partial: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    report["partial"] = partial
    write_json(path, report)
    if not partial:
        write_markdown(path.with_suffix(".md"), report)


if __name__ == "__main__":
    sys.exit(main())
