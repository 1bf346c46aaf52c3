"""Reviewers' submits: the embedded search engine vs a no-op engine, same run, same machine.

Two local Argilla stacks side by side (`stack_scale.Engine`: fresh homes, 127.0.0.1, SQLite), one
with the product's **embedded** engine and one with the benchmark's **no-op** engine (every write
dropped: the ceiling of the stock server's own submit path). On each, a dataset like the
product's (text field, label question with a model suggestion, metadata, a 384-d vector) and N
annotator accounts; each reviewer signs in as the UI does (``POST /api/v1/token``) and submits its
own share of the records as fast as the server answers (``POST /api/v1/records/{id}/responses``,
status submitted), all reviewers at once (a barrier), one thread each. Then every response is
looked for in the database: a submit answered 201 whose response is missing is **lost**.

Trials run for 20 and 50 reviewers, ``--rounds`` times each (default 2), the engines alternating
(noop, embedded, then the reverse) so load from other work hits both alike. Reports submits/s
(all submits over the wall time from the barrier to the last answer), server+worker CPU per
submit, p50/p95 latency, errors (non-201 answers and exceptions) and lost, per engine and
reviewer count, and the embedded/no-op ratio of submits/s (bar: >= 0.9).
Writes benchmarks/results/review_submits.{json,md}.

    .venv/bin/python benchmarks/review_submits.py            # about 5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from stack_scale import BENCH_DIR, NOOP_LAUNCHER, Data, Engine, create_dataset, percentile, say

from labeltriage.jsonio import write_json

RESULTS = Path(__file__).resolve().parent / "results"
REVIEWER_COUNTS = (20, 50)


def reviewers(engine: Engine, count: int) -> list[tuple[str, str]]:
    """``count`` annotator accounts (name, password) in the stack's workspace, created once per stack."""
    return [(name, engine.stack.add_user(name, role="annotator")) for name in (f"rev{i:02d}" for i in range(count))]


def trial(engine: Engine, accounts: list[tuple[str, str]], per_reviewer: int, seed: int) -> dict[str, Any]:
    """One dataset, every reviewer submitting ``per_reviewer`` records of its own at once."""
    import httpx

    count = len(accounts) * per_reviewer
    dataset = create_dataset(engine, f"submits-{len(accounts)}-{uuid.uuid4().hex[:6]}")
    dataset.records.log(Data(count, seed).records(0, count), batch_size=500)
    server_ids = [record._server_id for record in dataset.records]
    assert len(server_ids) == count, f"{len(server_ids)} records listed, {count} logged"
    api_url = engine.stack.credentials()[0]
    tokens = [
        httpx.post(f"{api_url}/api/v1/token", data={"username": name, "password": password}).json()["access_token"]
        for name, password in accounts
    ]
    latencies: list[float] = []
    errors: list[str] = []
    accepted: list[tuple[str, str]] = []  # (record id, reviewer) answered 201
    barrier = threading.Barrier(len(accounts) + 1)
    lock = threading.Lock()

    def review(index: int) -> None:
        mine = server_ids[index * per_reviewer : (index + 1) * per_reviewer]
        headers = {"Authorization": f"Bearer {tokens[index]}"}
        with httpx.Client(headers=headers, timeout=120) as client:
            barrier.wait()
            for record_id in mine:
                started = time.perf_counter()
                try:
                    response = client.post(
                        f"{api_url}/api/v1/records/{record_id}/responses",
                        json={"values": {"label": {"value": "positive"}}, "status": "submitted"},
                    )
                    outcome = "" if response.status_code == 201 else f"HTTP {response.status_code}"
                except httpx.HTTPError as error:
                    outcome = f"{type(error).__name__}: {error}"
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if outcome:
                        errors.append(outcome)
                    else:
                        accepted.append((record_id, accounts[index][0]))

    threads = [threading.Thread(target=review, args=(i,)) for i in range(len(accounts))]
    for thread in threads:
        thread.start()
    cpu_before = sum(engine.cpu().values())
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cpu = sum(engine.cpu().values()) - cpu_before
    stored = {
        (str(record._server_id), str(response.user_id))
        for record in dataset.records(with_responses=True)
        for response in record.responses
        if response.status == "submitted"
    }
    users = {user.username: str(user.id) for user in engine.client.users}
    lost = sum((str(record_id), users[name]) not in stored for record_id, name in accepted)
    result = {
        "engine": engine.name,
        "reviewers": len(accounts),
        "submits": count,
        "wall_s": wall,
        "submits_per_s": count / wall,
        "server_cpu_ms_per_submit": cpu * 1000 / count,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "lost": lost,
        "stored": len(stored),
    }
    say(
        f"{engine.name} {len(accounts)} reviewers: {result['submits_per_s']:.1f} submits/s, server+worker CPU "
        f"{result['server_cpu_ms_per_submit']:.0f} ms/submit, p50 {result['p50_ms']:.0f} ms, "
        f"p95 {result['p95_ms']:.0f} ms, errors {len(errors)}, lost {lost}"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-reviewer", type=int, default=10, help="records each reviewer submits per trial")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ports", type=int, nargs=2, default=[6931, 6932])
    args = parser.parse_args()
    # the no-op launcher must be importable by the stack's children
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))
    engines = {
        "noop": Engine("noop", Path("/tmp/bench-submits-noop"), args.ports[1], NOOP_LAUNCHER),
        "embedded": Engine("embedded", Path("/tmp/bench-submits-embedded"), args.ports[0], "argilla_stack.launch"),
    }
    trials: list[dict[str, Any]] = []
    try:
        for engine in engines.values():
            engine.fresh()
            engine.start()
        accounts = {name: reviewers(engine, max(REVIEWER_COUNTS)) for name, engine in engines.items()}
        for round_ in range(args.rounds):
            for count in REVIEWER_COUNTS:
                order = (
                    ["noop", "embedded"] if (round_ + REVIEWER_COUNTS.index(count)) % 2 == 0 else ["embedded", "noop"]
                )
                for name in order:
                    result = trial(engines[name], accounts[name][:count], args.per_reviewer, args.seed + round_)
                    trials.append(result | {"round": round_})
    finally:
        for engine in engines.values():
            engine.stop()

    summary = []
    for count in REVIEWER_COUNTS:
        row: dict[str, Any] = {"reviewers": count}
        for name in engines:
            runs = [t for t in trials if t["engine"] == name and t["reviewers"] == count]
            row[name] = {
                "submits_per_s": sum(t["submits"] for t in runs) / sum(t["wall_s"] for t in runs),
                "server_cpu_ms_per_submit": float(np.mean([t["server_cpu_ms_per_submit"] for t in runs])),
                "p50_ms": float(np.median([t["p50_ms"] for t in runs])),
                "p95_ms": float(max(t["p95_ms"] for t in runs)),
                "errors": sum(t["errors"] for t in runs),
                "lost": sum(t["lost"] for t in runs),
            }
        row["ratio_embedded_over_noop"] = row["embedded"]["submits_per_s"] / row["noop"]["submits_per_s"]
        # CPU per submit is the less contended view of the engine's cost on a shared machine
        row["cpu_ratio_embedded_over_noop"] = (
            row["embedded"]["server_cpu_ms_per_submit"] / row["noop"]["server_cpu_ms_per_submit"]
        )
        summary.append(row)
    report = {
        "benchmark": "review_submits",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "per_reviewer": args.per_reviewer,
        "rounds": args.rounds,
        "summary": summary,
        "trials": trials,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "review_submits.json", report)
    lines = [
        "# Reviewers' submits: embedded vs no-op search engine",
        "",
        f"Command: `.venv/bin/python benchmarks/review_submits.py --per-reviewer {args.per_reviewer} --rounds "
        f"{args.rounds}` (argilla-server 2.8.0 on SQLite, {os.cpu_count()} cores, both stacks up side by side, "
        "engines alternating; p95 is the worst trial's).",
        "",
        "| reviewers | engine | submits/s | server+worker CPU ms/submit | p50 ms | p95 ms | errors | lost "
        "| embedded / no-op submits/s (CPU/submit) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        for name in engines:
            cell = row[name]
            ratio = (
                f"{row['ratio_embedded_over_noop']:.2f} ({row['cpu_ratio_embedded_over_noop']:.2f})"
                if name == "embedded"
                else ""
            )
            lines.append(
                f"| {row['reviewers']} | {name} | {cell['submits_per_s']:.1f} | "
                f"{cell['server_cpu_ms_per_submit']:.0f} | {cell['p50_ms']:.0f} | "
                f"{cell['p95_ms']:.0f} | {cell['errors']} | {cell['lost']} | {ratio} |"
            )
    (RESULTS / "review_submits.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
