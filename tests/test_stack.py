"""The local stack: lifecycle, security defaults, persistence and recovery from faults."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import httpx
import pytest
from click.testing import CliRunner

from argilla_stack.stack import Stack, StackError
from labeltriage.cli import main as cli
from tests.conftest import free_port

pytestmark = pytest.mark.stack


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                lines = handle.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_up_is_secure_by_default(argilla_stack):
    state = argilla_stack.state()
    secrets_file = argilla_stack.secrets_file
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    data = json.loads(secrets_file.read_text())
    assert data["api_key"] != "argilla.apikey" and len(data["api_key"]) > 30
    # Only loopback listens: 127.0.0.1 is 0100007F in /proc/net/tcp.
    assert _listening_addresses(state.port) == {"0100007F"}
    assert _listening_addresses(state.redis_port) == {"0100007F"}
    # No default account.
    token = httpx.post(f"{state.api_url}/api/v1/token", data={"username": "argilla", "password": "1234"})
    assert token.status_code == 401
    good = httpx.post(
        f"{state.api_url}/api/v1/token", data={"username": data["owner_username"], "password": data["owner_password"]}
    )
    assert good.status_code == 201
    # Redis wants its password.
    with socket.create_connection(("127.0.0.1", state.redis_port)) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(100).startswith(b"-NOAUTH")
    # Secrets never reach the logs.
    for log in argilla_stack.logs.glob("*.log"):
        text = log.read_text(errors="replace")
        assert data["api_key"] not in text and data["owner_password"] not in text


def test_second_up_reports_running_and_status_env(argilla_stack):
    messages = []
    before = argilla_stack.state()
    after = argilla_stack.up(port=before.port, log=messages.append)
    assert after.pids == before.pids
    assert "already running" in messages[0]
    runner = CliRunner()
    status = json.loads(runner.invoke(cli, ["stack", "status", "--json", "--home", str(argilla_stack.home)]).output)
    assert status["running"] is True and status["search_engine"] == "embedded"
    assert set(status["processes"]) == {"redis", "server", "worker"}
    assert all(proc["alive"] for proc in status["processes"].values())
    env = runner.invoke(cli, ["stack", "env", "--home", str(argilla_stack.home)]).output.splitlines()
    assert env[0] == f"export ARGILLA_API_URL={before.api_url}"
    assert env[1].startswith("export ARGILLA_API_KEY=lt.")


def test_down_when_nothing_runs_is_a_noop(tmp_path):
    messages = []
    assert Stack(tmp_path).down(log=messages.append) == []
    assert messages == ["stack is not running (nothing to stop)"]
    result = CliRunner().invoke(cli, ["stack", "env", "--home", str(tmp_path)])
    assert result.exit_code != 0 and "not running" in result.output


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = CliRunner().invoke(cli, ["stack", "up", "--home", str(tmp_path), "--port", str(port)])
    assert result.exit_code == 69  # ReviewServerError (labeltriage.errors)
    assert f"port {port} on 127.0.0.1 is already in use" in result.output
    assert not (tmp_path / "stack.json").exists()


def test_missing_redis_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("argilla_stack.stack.shutil.which", lambda name: None)
    with pytest.raises(StackError, match="redis-server is not installed"):
        Stack(tmp_path).up(port=free_port(), log=lambda *_: None)


def test_bad_engine_options(tmp_path):
    with pytest.raises(StackError, match="needs --search-url"):
        Stack(tmp_path).up(search_engine="opensearch")
    with pytest.raises(StackError, match="unknown search engine"):
        Stack(tmp_path).up(search_engine="solr")


def _api(stack: Stack) -> tuple[str, dict]:
    api_url, api_key = stack.credentials()
    return api_url, {"X-Argilla-Api-Key": api_key}


def _counts(stack: Stack, dataset_name: str) -> tuple[int, int]:
    """(records in Argilla's database, records the search engine finds) for one dataset."""
    api_url, headers = _api(stack)
    datasets = httpx.get(f"{api_url}/api/v1/me/datasets", headers=headers).json()["items"]
    dataset_id = next(d["id"] for d in datasets if d["name"] == dataset_name)
    listed = httpx.get(f"{api_url}/api/v1/datasets/{dataset_id}/records", params={"limit": 1}, headers=headers)
    searched = httpx.post(
        f"{api_url}/api/v1/datasets/{dataset_id}/records/search",
        json={
            "filters": {"and": [{"type": "range", "scope": {"entity": "metadata", "metadata_property": "n"}, "ge": 0}]}
        },
        params={"limit": 1},
        headers=headers,
        timeout=60,
    )
    return listed.json()["total"], searched.json()["total"]


def _client(stack: Stack):
    import argilla as rg

    api_url, api_key = stack.credentials()
    return rg.Argilla(api_url=api_url, api_key=api_key, timeout=60, retries=1)


def _records(n: int):
    import argilla as rg

    return [rg.Record(id=f"r-{i}", fields={"text": f"record number {i}"}, metadata={"n": i}) for i in range(n)]


def _create_dataset(stack: Stack, name: str):
    import argilla as rg

    client = _client(stack)  # first: Settings bind to the latest client
    settings = rg.Settings(
        fields=[rg.TextField(name="text")],
        questions=[rg.LabelQuestion(name="label", labels=["a", "b"])],
        metadata=[rg.IntegerMetadataProperty(name="n")],
    )
    return rg.Dataset(name=name, workspace="labeltriage", settings=settings, client=client).create()


def test_persistence_store_rebuild_and_stale_pids(private_stack):
    stack = private_stack
    # A crashed earlier stack left pid files of processes that are gone.
    stack.home.mkdir(parents=True)
    stack.state_file.write_text(
        json.dumps(
            {"port": 1, "redis_port": 2, "search_engine": "embedded", "search_url": None, "database_url": "x",
             "pids": {"server": 999999, "worker": 999998, "redis": 999997}}
        )
    )  # fmt: skip
    port = free_port()
    stack.up(port=port, log=lambda *_: None)
    dataset = _create_dataset(stack, "persist")
    dataset.records.log(_records(300))
    assert _counts(stack, "persist") == (300, 300)

    # Restart: the same records, found by search with the same counts.
    stack.down(log=lambda *_: None)
    stack.up(port=port, log=lambda *_: None)
    assert _counts(stack, "persist") == (300, 300)

    # A deleted store is rebuilt from Argilla's database on the next up.
    stack.down(log=lambda *_: None)
    store = stack.home / "argilla" / "search.sqlite3"
    for path in store.parent.glob("search.sqlite3*"):
        path.unlink()
    stack.up(port=port, log=lambda *_: None)
    assert _counts(stack, "persist") == (300, 300)
    assert "reindexed dataset persist (300 records)" in (stack.logs / "server.log").read_text()

    # A corrupted store too.
    stack.down(log=lambda *_: None)
    for path in store.parent.glob("search.sqlite3-*"):
        path.unlink()  # else SQLite reads page 1 back from the write-ahead log, masking the damage
    store.write_bytes(b"this is not a database" * 1000)
    stack.up(port=port, log=lambda *_: None)
    assert _counts(stack, "persist") == (300, 300)
    assert (
        "is corrupt" in (stack.logs / "server.log").read_text()
        or "unreadable" in (stack.logs / "server.log").read_text()
    )


def test_kill_9_during_log_then_up_recovers_and_rerun_is_idempotent(private_stack):
    stack = private_stack
    port = free_port()
    stack.up(port=port, log=lambda *_: None)
    dataset = _create_dataset(stack, "crash")
    records = _records(1000)
    server_pid = stack.state().pids["server"]
    errors = []

    def log_all():
        try:
            dataset.records.log(records, batch_size=100)
        except Exception as exc:  # the server dies under it
            errors.append(exc)

    worker = threading.Thread(target=log_all)
    worker.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _counts(stack, "crash")[0] < 300:
        time.sleep(0.2)
    os.kill(server_pid, signal.SIGKILL)
    worker.join(timeout=300)
    assert errors, "the log should have failed when the server died"

    stack.up(port=port, log=lambda *_: None)
    in_db, in_search = _counts(stack, "crash")
    assert 300 <= in_db < 1000
    assert in_search == in_db  # every record in the database is found by search

    # The client reruns the same log: upsert by id, no duplicates.
    dataset = _client(stack).datasets("crash", workspace="labeltriage")
    dataset.records.log(records, batch_size=500)
    assert _counts(stack, "crash") == (1000, 1000)
