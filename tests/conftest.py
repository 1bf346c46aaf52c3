"""Shared fixtures: a real local Argilla stack (server, worker, Redis, embedded engine)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


# Tests that start a fake LLM or Hub server, PostgreSQL, a notebook kernel, a benchmark, a
# subprocess or the embedding model without a `stack`, `llm` or `slow` marker: marked `external`
# here, so the fast tier (`make test-fast`, pure tests only, under a minute) leaves them out. A
# new test file is in the fast tier unless it is listed here or marked.
EXTERNAL_FILES = {
    "test_active_learning_bench.py": "runs the benchmark script end to end",
    "test_backends_batch.py": "fake OpenAI batch server",
    "test_backends_faults.py": "fake OpenAI server",
    "test_inputs.py": "fake OpenAI server, the CLI end to end",
    "test_notebooks.py": "a Jupyter kernel per notebook",
    "test_pipeline_distilabel.py": "fake OpenAI server, a distilabel pipeline",
    "test_postgres.py": "a PostgreSQL cluster",
    "test_prelabel_cli.py": "fake OpenAI server, the CLI end to end",
    "test_prompt_safety.py": "fake OpenAI servers",
    "test_retrieval_prelabel.py": "fake OpenAI server, the MiniLM embedding model",
    "test_publish.py": "a local Hugging Face Hub server",
    "test_reasoning_on_demand.py": "fake OpenAI server",
    "test_triage_cli.py": "subprocesses, llama.cpp",
}
EXTERNAL_TESTS = {
    "test_cascade.py::test_second_opinion_asks_the_unsure_once_and_route_certifies_on_it": "fake OpenAI server",
    "test_cascade.py::test_second_opinion_errors_name_the_fix": "fake OpenAI server",
    "test_cascade.py::test_the_score_is_fixed_before_gold_and_route_refuses_one_changed_after": "fake OpenAI server",
    "test_cascade.py::test_the_cli_exit_code_stale_answers_and_mixed_kinds": "fake OpenAI server",
    "test_triage_student.py::test_embed_texts_normalised_and_cached": "the MiniLM embedding model",
    "test_student_labels.py::test_student_label_then_publish": "the MiniLM embedding model",
    "test_student_labels.py::test_student_label_errors_name_the_fix": "the MiniLM embedding model",
    "test_student_labels.py::test_the_finetuned_student_labels_a_run": "fine-tunes the MiniLM embedding model",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        file_name = item.path.name
        test_name = f"{file_name}::{item.name.split('[')[0]}"
        if file_name in EXTERNAL_FILES or test_name in EXTERNAL_TESTS:
            item.add_marker(pytest.mark.external)


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
