"""Argilla on a real PostgreSQL (issue 16): the stack starts on it, survives a database restart
without a failed request, names a database outage as such, remembers its database, and keeps
the password and the owner's API key out of every file and output."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from labeltriage.cli import main as cli
from tests.conftest import free_port
from tests.support.postgres import postgres_bin, postgres_cluster

ROOT = Path(__file__).resolve().parent.parent
needs_postgres = pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL not installed: run `make setup`")


def _leaks(stack, secrets_: list[str], outputs: list[str]) -> list[str]:
    """Where any of ``secrets_`` appears: files of the stack home (but secrets.json) and outputs."""
    found = []
    for path in stack.home.rglob("*"):
        if path.is_file() and path.name != "secrets.json":
            found += [f"{path}: {i}" for i, secret in enumerate(secrets_) if secret.encode() in path.read_bytes()]
    for n, text in enumerate(outputs):
        found += [f"output {n}: {i}" for i, secret in enumerate(secrets_) if secret in text]
    return found


@pytest.mark.stack
@needs_postgres
def test_stack_on_postgresql_survives_restarts_names_outages_and_leaks_nothing(tmp_path: Path) -> None:
    """`stack up --database-url postgresql+asyncpg://...` failed (no psycopg2), then the server died
    at start ('attached to a different loop'); the first request after a PostgreSQL restart
    answered 500 with the API key in its body; a stopped PostgreSQL read "cannot reach Argilla"
    and `stack status` said running; a plain `up` opened an empty SQLite database."""
    from argilla_stack.stack import Stack, StackError
    from tests.test_stack import _client, _counts, _create_dataset, _records

    runner = CliRunner()
    outputs: list[str] = []

    def run_cli(args: list[str], env: dict | None = None, code: int = 0) -> str:
        result = runner.invoke(cli, args, env=env)
        outputs.append(result.output)
        assert result.exit_code == code, result.output
        return result.output

    with postgres_cluster(free_port()) as cluster:
        stack = Stack(tmp_path / "home")
        port = free_port()
        try:
            stack.up(port=port, database_url=cluster.url, log=outputs.append)
            api_url, api_key = stack.credentials()
            dataset = _create_dataset(stack, "on-postgres")
            dataset.records.log(_records(120))
            assert _counts(stack, "on-postgres") == (120, 120)
            status = run_cli(["stack", "status", "--home", str(stack.home)])
            masked = f"postgresql+asyncpg://argilla:***@127.0.0.1:{cluster.port}/argilla"
            assert status.startswith("running") and f"database {masked}: reachable" in status

            # PostgreSQL restarts under a running server: the next write succeeds first time
            cluster.restart()
            dataset = _client(stack).datasets("on-postgres", workspace="labeltriage")
            dataset.records.log(_records(150))  # the SDK does not retry a 500
            assert _counts(stack, "on-postgres") == (150, 150)

            # PostgreSQL stopped: the API, the CLI and status name the database
            cluster.stop()
            me = httpx.get(f"{api_url}/api/v1/me", headers={"X-Argilla-Api-Key": api_key}, timeout=30)
            assert me.status_code == 503 and me.json()["detail"].startswith("Argilla's database is unreachable")
            status = run_cli(["stack", "status", "--home", str(stack.home)], code=1)  # scripts can test it
            assert status.startswith("NOT HEALTHY") and ": unreachable: connection to server" in status
            run_dir = tmp_path / "run"
            run_dir.mkdir()
            pulled = run_cli(
                ["pull", str(run_dir), "--config", str(ROOT / "datasets_config" / "sentiment.yaml")],
                env={"ARGILLA_API_URL": api_url, "ARGILLA_API_KEY": api_key},
                code=69,  # ReviewServerError (labeltriage.errors)
            )
            assert "Argilla's database is unreachable" in pulled and "cannot reach" not in pulled
            cluster.start()

            # a plain `up` reopens the home's PostgreSQL (it opened an empty SQLite database)
            stack.down(log=outputs.append)
            stack.up(port=port, log=outputs.append)
            assert _counts(stack, "on-postgres") == (150, 150)
            assert not _leaks(stack, [cluster.password, api_key], outputs)
            stack.down(log=outputs.append)
            with pytest.raises(StackError, match="switching would leave its datasets and reviewers behind"):
                stack.up(port=port, database_url=cluster.url.replace("/argilla", "/other"), log=lambda *_: None)
        finally:
            stack.down(log=lambda *_: None)


def test_up_refuses_an_unreachable_database_and_does_not_remember_it(tmp_path: Path) -> None:
    from argilla_stack.stack import Stack, StackError

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        url = f"postgresql://argilla:pw-{'x' * 12}@127.0.0.1:{closed.getsockname()[1]}/argilla"
        stack = Stack(tmp_path / "home")
        with pytest.raises(StackError) as raised:
            stack.up(port=free_port(), database_url=url, log=lambda *_: None)
    message = str(raised.value)
    assert message.startswith("Argilla's database is unreachable at postgresql+asyncpg://argilla:***@127.0.0.1:")
    assert "Fix: start PostgreSQL" in message and "x" * 12 not in message
    # a mistyped URL is not kept as the home's database (the corrected one would be refused)
    assert "database_url" not in stack.secrets()
    assert not _leaks(stack, ["x" * 12], [message])


@pytest.mark.parametrize(("module", "package"), [("asyncpg", "asyncpg"), ("psycopg2", "psycopg2-binary")])
def test_up_names_a_missing_database_driver(module: str, package: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without psycopg2, `up` failed in `migrate` with "see migrate.log"; now the package is named."""
    from argilla_stack.stack import StackError, check_database_drivers

    monkeypatch.setitem(sys.modules, module, None)  # import fails as if it were not installed
    with pytest.raises(StackError, match=rf"needs the Python package {package} .*pip install {package}"):
        check_database_drivers("postgresql+asyncpg://argilla:pw@127.0.0.1:5432/argilla")


def test_database_urls_are_normalised_or_refused() -> None:
    from argilla_stack.stack import StackError, masked_url, normalized_database_url

    assert normalized_database_url("postgresql://u:p@h:5/d") == "postgresql+asyncpg://u:p@h:5/d"
    assert normalized_database_url("postgresql+psycopg2://u:p@h:5/d") == "postgresql+asyncpg://u:p@h:5/d"
    assert normalized_database_url("sqlite:////tmp/a.db") == "sqlite+aiosqlite:////tmp/a.db"
    for bad in ("mysql+aiomysql://u:p@h/d", "postgresql+pg8000://u:p@h/d", "not a url"):
        with pytest.raises(StackError, match="postgresql\\+asyncpg://user:password@"):
            normalized_database_url(bad)
    shown = masked_url("postgresql+asyncpg://argilla:s3cr3t-pw@127.0.0.1:5433/argilla")
    assert shown == "postgresql+asyncpg://argilla:***@127.0.0.1:5433/argilla"


def test_a_failed_migration_does_not_write_the_password(tmp_path: Path) -> None:
    """argilla-server's CLI (typer) printed local variables in tracebacks: 8 copies of the password."""
    from argilla_stack.stack import Stack, StackError, StackState

    stack = Stack(tmp_path / "home")
    stack.logs.mkdir(parents=True)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"postgresql+asyncpg://argilla:SeCrEt-{'y' * 10}@127.0.0.1:{closed.getsockname()[1]}/argilla"
        state = StackState(port=1, redis_port=2, search_engine="embedded", search_url=None, database_url="")
        env = stack.environment(state, {"database_url": url, "redis_password": "r", "auth_secret_key": "k"})
        with pytest.raises(StackError, match="`prepare` failed"):
            stack._run([sys.executable, "-m", "argilla_stack.launch", "prepare"], env, "prepare")  # as `up` runs it
    log = (stack.logs / "prepare.log").read_text()
    assert "Connection refused" in log  # it did fail at connecting, with a traceback
    assert "y" * 10 not in log


@pytest.mark.llm
@pytest.mark.stack
@pytest.mark.timeout(1500)
@needs_postgres
def test_the_demo_loop_runs_on_postgresql_and_a_restart_costs_no_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole loop (prelabel with the tiny model, route, push, answers, pull, agreement, publish)
    on PostgreSQL; then PostgreSQL restarts and the next push succeeds first time."""
    import pandas as pd
    from sqlalchemy import create_engine, text

    from argilla_stack.stack import Stack

    home = tmp_path / "stack"
    monkeypatch.setenv("LABELTRIAGE_STACK_HOME", str(home))
    for name in ("ARGILLA_API_URL", "ARGILLA_API_KEY"):  # the demo must use its own stack
        monkeypatch.delenv(name, raising=False)
    outputs: list[str] = []

    def run_cli(args: list[str]) -> str:
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        outputs.append(result.output)
        assert result.exit_code == 0, result.output
        return result.output

    with postgres_cluster(free_port()) as cluster:
        stack = Stack(home)
        port = free_port()
        try:
            stack.up(port=port, database_url=cluster.url, log=outputs.append)
            run = tmp_path / "run"
            demo = run_cli(["demo", "--model", "smollm2", "--records", "30", "--gold", "15", "--run-dir", str(run),
                            "--port", str(port)])  # fmt: skip
            assert "[9/9]" in demo
            routed = pd.read_parquet(run / "routed.parquet")
            published = pd.read_parquet(run / "published" / "final.parquet")
            adjudication_file = run / "published" / "adjudication.parquet"
            waiting = len(pd.read_parquet(adjudication_file)) if adjudication_file.exists() else 0
            assert len(routed) == 30 and len(published) + waiting == 30
            queued = int(routed["route"].isin(["human_review", "spot_check"]).sum())
            assert json.loads((run / "agreement.json").read_text())["n_records"] == queued

            cluster.restart()
            run_cli(["push", str(run), "--include-auto", "--round", "2"])
            push = json.loads((run / "push.json").read_text())
            # every distinct record but the gold ones (labelled already, never pushed), and the
            # review audits' blind copies (<id>::audit)
            unique = int((routed["duplicate_of"].isna() & routed["route"].ne("gold")).sum())
            unique += int(routed["review_audit"].sum())
            assert push["retries"] == 0 and push["pushed"] + push["skipped_already_pushed"] == unique
            assert "pulled" in run_cli(["pull", str(run)])
            # the records are in PostgreSQL, not in a SQLite file of the home
            engine = create_engine(cluster.url.replace("+asyncpg", ""))
            with engine.connect() as connection:
                assert connection.execute(text("SELECT count(*) FROM records")).scalar() == unique
            engine.dispose()
            assert not list(home.rglob("argilla.db"))
            _, api_key = stack.credentials()
            assert not _leaks(stack, [cluster.password, api_key], outputs)
        finally:
            stack.down(log=lambda *_: None)


def test_a_rotated_password_is_the_same_database(tmp_path: Path) -> None:
    """After ALTER ROLE ... PASSWORD, `up --database-url` with the new password was refused as a switch
    (two identical masked URLs) and the home could only be repaired by editing secrets.json."""
    from argilla_stack.stack import Stack, StackError

    stack = Stack(tmp_path / "home")
    old = {"database_url": "postgresql+asyncpg://argilla:old-pw@127.0.0.1:5432/argilla"}
    assert stack._database(old, "postgresql://argilla:new-pw@127.0.0.1:5432/argilla") == (
        "postgresql+asyncpg://argilla:new-pw@127.0.0.1:5432/argilla"
    )
    with pytest.raises(StackError, match="switching would leave"):
        stack._database(old, "postgresql://argilla:old-pw@127.0.0.1:5432/other")


def test_a_driver_that_fails_to_load_a_library_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ImportError without a module name (a shared library missing) named the library file as a package."""
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    from argilla_stack.stack import StackError, check_database_drivers

    def broken() -> None:
        raise ImportError("libfoo.so.5: cannot open shared object file")

    monkeypatch.setattr(PGDialect_asyncpg, "import_dbapi", classmethod(lambda cls: broken()))
    with pytest.raises(StackError, match=r"needs the Python package asyncpg \(libfoo"):
        check_database_drivers("postgresql+asyncpg://argilla:pw@127.0.0.1:5432/argilla")
