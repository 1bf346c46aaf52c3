"""Bad input and faults around Argilla: settings edited by hand, labels outside the question, a
deleted reviewer, the server restarted during a push. Each is a clear error or a correct recovery,
and no record is lost or duplicated."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from curation.adapters import argilla_io
from labeltriage.config import load_task_config
from tests.conftest import free_port
from tests.support.reviewers import reviewer_headers

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parent.parent


def _config(name: str):
    config = load_task_config(ROOT / "datasets_config" / "sentiment.yaml")
    return config.model_copy(update={"argilla": config.argilla.model_copy(update={"dataset": name})})


def _routed(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": [f"f-{i}" for i in range(n)],
            "text": [f"fault test review {i}" for i in range(n)],
            "llm_label": rng.choice(["positive", "negative"], n),
            "calibrated_confidence": rng.uniform(0, 1, n),
            "reasoning": "short",
            "model": "m",
            "prompt_hash": "h",
            "status": "ok",
            "route": "human_review",
            "priority": rng.uniform(0, 1, n),
        }
    )


def test_settings_edited_by_hand(argilla_client):
    config = _config(f"drift-{uuid.uuid4().hex[:6]}")
    dataset = argilla_io.ensure_dataset(argilla_client, config, vector_dimensions=None)
    argilla_io.push_records(dataset, argilla_io.build_records(_routed(20), config))
    # A metadata property deleted in the UI is re-created; records and their values stay.
    dataset.settings.metadata["priority"].delete()
    dataset = argilla_io.ensure_dataset(argilla_client, config, vector_dimensions=None)
    assert "priority" in [prop.name for prop in dataset.settings.metadata]
    report = argilla_io.push_records(dataset, argilla_io.build_records(_routed(20), config))
    assert report.pushed == 20
    records = list(dataset.records)
    assert len(records) == 20 and all("priority" in r.metadata for r in records)
    # A label set that no longer matches the config is refused with what to do.
    other = config.model_copy(update={"labels": config.labels[:3]})
    with pytest.raises(argilla_io.SettingsDriftError, match="restore the labels in Argilla or set argilla.dataset"):
        argilla_io.ensure_dataset(argilla_client, other, vector_dimensions=None)


def test_invalid_label_and_deleted_reviewer_are_accounted_for(argilla_stack, argilla_client):
    config = _config(f"pull-{uuid.uuid4().hex[:6]}")
    dataset = argilla_io.ensure_dataset(argilla_client, config, vector_dimensions=None)
    argilla_io.push_records(dataset, argilla_io.build_records(_routed(6), config))
    api_url, api_key = argilla_stack.credentials()
    server_ids = {
        r["external_id"]: r["id"]
        for r in httpx.get(
            f"{api_url}/api/v1/datasets/{dataset.id}/records", headers={"X-Argilla-Api-Key": api_key}
        ).json()["items"]
    }
    names = [f"fault_{i}_{uuid.uuid4().hex[:4]}" for i in range(2)]
    for name in names:
        headers = reviewer_headers(argilla_stack, name)
        for rid in ("f-0", "f-1"):
            body = {"values": {"sentiment": {"value": "negative"}}, "status": "submitted"}
            assert httpx.post(
                f"{api_url}/api/v1/records/{server_ids[rid]}/responses", json=body, headers=headers
            ).is_success
    # The question's labels are then edited by hand: "negative" disappears from the label set.
    labels = [label.name for label in config.labels]
    narrowed = [label for label in labels if label != "negative"]
    frame, report = argilla_io.pull_responses(argilla_client, dataset, narrowed, "sentiment")
    assert report.invalid_label == 4 and report.submitted == 0
    assert set(frame["status"]) == {"invalid_label"} and len(frame) == 4
    assert report.invalid_examples[0]["label"] == "negative"
    # A reviewer deleted after answering: their answers are either kept under a placeholder
    # name or gone with the account; every record is still there.
    argilla_client.users(names[0]).delete()
    frame, report = argilla_io.pull_responses(argilla_client, dataset, labels, "sentiment")
    assert report.records == 6
    users = set(frame["user"])
    assert names[1] in users and names[0] not in users
    assert report.submitted in (2, 4)


def test_server_restarted_during_push(private_stack):
    import argilla as rg

    stack = private_stack
    port = free_port()
    stack.up(port=port, log=lambda *_: None)
    api_url, api_key = stack.credentials()
    client = rg.Argilla(api_url=api_url, api_key=api_key, timeout=60, retries=1)
    config = _config("restart")
    dataset = argilla_io.ensure_dataset(client, config, vector_dimensions=None)
    routed = _routed(1000)
    records = argilla_io.build_records(routed, config)
    outcome = {}

    def push():
        try:
            outcome["report"] = argilla_io.push_records(dataset, records, batch_size=100, retries=8, wait_s=1.0)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=push)
    thread.start()
    headers = {"X-Argilla-Api-Key": api_key}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        total = httpx.get(f"{api_url}/api/v1/datasets/{dataset.id}/records", params={"limit": 1}, headers=headers)
        if total.json()["total"] >= 300:
            break
        time.sleep(0.3)
    os.kill(stack.state().pids["server"], signal.SIGKILL)
    stack.up(port=port, log=lambda *_: None)  # restart while the push waits and retries
    thread.join(timeout=600)
    assert "error" not in outcome, outcome.get("error")
    report = outcome["report"]
    assert report.retries >= 1
    assert report.pushed == 1000
    listed = httpx.get(f"{api_url}/api/v1/datasets/{dataset.id}/records", params={"limit": 1}, headers=headers)
    assert listed.json()["total"] == 1000  # none lost, none duplicated
    state = json.loads(stack.state_file.read_text())
    assert state["port"] == port
