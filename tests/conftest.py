"""Shared fixtures: a real local Argilla stack (server, worker, Redis, embedded engine)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def argilla_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One running stack for the whole session: yields the `argilla_stack.stack.Stack`."""
    from argilla_stack.stack import Stack

    stack = Stack(tmp_path_factory.mktemp("stack-home"))
    stack.up(port=free_port(), log=lambda *_: None)
    yield stack
    stack.down(log=lambda *_: None)


@pytest.fixture(scope="session")
def argilla_client(argilla_stack):
    import argilla as rg

    api_url, api_key = argilla_stack.credentials()
    return rg.Argilla(api_url=api_url, api_key=api_key, timeout=120)


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator:
    """A stack of the test's own, for tests that kill, restart or corrupt it."""
    from argilla_stack.stack import Stack

    stack = Stack(tmp_path / "home")
    yield stack
    stack.down(log=lambda *_: None)
