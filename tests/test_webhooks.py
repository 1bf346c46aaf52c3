"""Event-driven loop: Argilla's worker delivers signed response webhooks; forged ones are refused."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from labeltriage.cli import main as cli
from tests.support.reviewers import reviewer_headers
from tests.test_review_e2e import ROOT

pytestmark = pytest.mark.stack


def _answer(api_url: str, headers: dict, server_id: str, label: str) -> None:
    body = {"values": {"sentiment": {"value": label}}, "status": "submitted"}
    response = httpx.post(f"{api_url}/api/v1/records/{server_id}/responses", json=body, headers=headers)
    assert response.status_code == 201, response.text


def test_watch_runs_a_round_every_n_responses(argilla_stack, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = yaml.safe_load((ROOT / "datasets_config" / "sentiment.yaml").read_text())
    config["argilla"]["dataset"] = f"watch-{uuid.uuid4().hex[:6]}"
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(config))
    rng = np.random.default_rng(0)
    n = 12
    pd.DataFrame(
        {
            "id": [f"w-{i}" for i in range(n)],
            "text": [f"watch test review {i}: battery {'good' if i % 2 else 'bad'}" for i in range(n)],
            "llm_label": ["positive" if i % 2 else "negative" for i in range(n)],
            "calibrated_confidence": rng.uniform(0, 1, n),
            "reasoning": "r",
            "model": "m",
            "prompt_hash": "h",
            "status": "ok",
            "route": "human_review",
            "priority": rng.uniform(0, 1, n),
        }
    ).to_parquet(run / "routed.parquet", index=False)
    (run / "run.json").write_text(json.dumps({"config": str(tmp_path / "task.yaml")}))
    api_url, api_key = argilla_stack.credentials()
    env = {"ARGILLA_API_URL": api_url, "ARGILLA_API_KEY": api_key}
    runner = CliRunner()
    assert runner.invoke(cli, ["push", str(run)], env=env).exit_code == 0

    outcome = {}
    thread = threading.Thread(
        target=lambda: outcome.setdefault(
            "result", runner.invoke(cli, ["loop", str(run), "--watch", "--every", "3", "--rounds", "1"], env=env)
        )
    )
    thread.start()
    owner = {"X-Argilla-Api-Key": api_key}
    deadline = time.monotonic() + 60
    webhooks = []
    while time.monotonic() < deadline and not webhooks:
        webhooks = httpx.get(f"{api_url}/api/v1/webhooks", headers=owner).json()["items"]
        time.sleep(0.3)
    assert len(webhooks) == 1
    hook_url = webhooks[0]["url"]

    # A forged event (no valid signature) is refused.
    forged = httpx.post(hook_url, json={"type": "response.created", "data": {}}, headers={"webhook-id": "x"})
    assert forged.status_code == 401

    datasets = httpx.get(f"{api_url}/api/v1/me/datasets", headers=owner).json()["items"]
    dataset_id = next(d["id"] for d in datasets if d["name"] == config["argilla"]["dataset"])
    items = httpx.get(f"{api_url}/api/v1/datasets/{dataset_id}/records", headers=owner).json()["items"]
    name = f"watcher_{uuid.uuid4().hex[:4]}"
    headers = reviewer_headers(argilla_stack, name)
    for item in items[:3]:
        _answer(api_url, headers, item["id"], "positive")
    thread.join(timeout=240)
    assert not thread.is_alive(), "the watch loop did not run its round"
    result = outcome["result"]
    assert result.exit_code == 0, result.output
    assert "3 new submitted response(s)" in result.output
    assert "round 1: 3 submitted" in result.output
    loop = json.loads((run / "loop.json").read_text())
    assert loop["round"] == 1 and loop["pulled"]["submitted"] == 3
    # The webhook is removed when the loop stops.
    assert httpx.get(f"{api_url}/api/v1/webhooks", headers=owner).json()["items"] == []
