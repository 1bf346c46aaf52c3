"""Argilla on a real PostgreSQL (issue 16): the stack starts on it, records survive a restart,
search agrees with the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.support.postgres import postgres_bin, postgres_cluster

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL not installed: run `make setup`"),
]


def test_stack_on_postgresql_starts_and_keeps_records_across_a_restart(tmp_path: Path) -> None:
    """`stack up --database-url postgresql+asyncpg://...` failed: no psycopg2 (migrate), then the
    server died at start ('attached to a different loop') after the launcher's store sync."""
    from argilla_stack.stack import Stack, StackError
    from tests.test_stack import _counts, _create_dataset, _records

    with postgres_cluster(free_port()) as url:
        stack = Stack(tmp_path / "home")
        port = free_port()
        try:
            stack.up(port=port, database_url=url, log=lambda *_: None)
            dataset = _create_dataset(stack, "on-postgres")
            dataset.records.log(_records(120))
            assert _counts(stack, "on-postgres") == (120, 120)
            stack.down(log=lambda *_: None)
            # a plain `up` opened an empty SQLite database: the home remembers its database
            stack.up(port=port, log=lambda *_: None)
            assert _counts(stack, "on-postgres") == (120, 120)
            password = url.split(":")[2].split("@")[0]
            for path in stack.home.rglob("*"):  # the password is in the 0600 secrets file only
                if path.is_file() and path.name != "secrets.json":
                    assert password.encode() not in path.read_bytes(), path
            stack.down(log=lambda *_: None)
            with pytest.raises(StackError, match="switching would leave its datasets and reviewers behind"):
                stack.up(port=port, database_url=url.replace("/argilla", "/other"), log=lambda *_: None)
        finally:
            stack.down(log=lambda *_: None)


def test_status_masks_the_database_password() -> None:
    from argilla_stack.stack import masked_url

    shown = masked_url("postgresql+asyncpg://argilla:s3cr3t-pw@127.0.0.1:5433/argilla")
    assert shown == "postgresql+asyncpg://argilla:***@127.0.0.1:5433/argilla"
    assert masked_url("sqlite+aiosqlite:////tmp/x/argilla.db?check_same_thread=False").startswith("sqlite")
