"""The Label Studio ML backend pre-labels a task it has never seen with the real local model
(SmolLM2 from its PyPI package), through the run's cache: asked again, it makes no model call.
No Label Studio needed: the backend is spoken to over its own HTTP protocol, as Label Studio does
(tests/test_label_studio.py connects it to a real Label Studio)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from labeltriage.config import load_task_config
from pipelines.prelabeller import CACHE_FILE

pytestmark = pytest.mark.llm


def _run(tmp_path: Path) -> Path:
    config = yaml.safe_load(load_task_config("sentiment").model_dump_json())
    config["argilla"]["dataset"] = f"lsb-{uuid.uuid4().hex[:8]}"
    config["model"]["name"] = "smollm2"
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame(
        {"id": ["a"], "text": ["fine"], "llm_label": ["positive"], "llm_confidence": [0.9], "reasoning": ["ok"],
         "model": ["m"], "prompt_hash": ["p"], "status": ["ok"], "confidence_kind": ["logprob"]}
    ).to_parquet(run / "prelabels.parquet", index=False)  # fmt: skip
    (run / "run.json").write_text(json.dumps({"config": str(tmp_path / "task.yaml")}))
    return run


def test_backend_prelabels_a_new_task_once(tmp_path):
    from labeltriage.label_studio import serve_backend

    run = _run(tmp_path)
    new = {"id": 7, "data": {"text": "The kettle broke on the second day and leaks everywhere."}}
    empty = {"id": 8, "data": {"text": "   "}}
    known = {"id": 9, "data": {"text": "fine", "record_id": "a"}}
    with serve_backend(run) as backend:
        assert httpx.get(f"{backend.url}/health").json()["status"] == "UP"
        assert httpx.post(f"{backend.url}/setup", json={}).json() == {"model_version": "m/p"}
        body = {"tasks": [new, empty, known], "project": "1.1", "label_config": "<View/>", "params": {}}
        first = httpx.post(f"{backend.url}/predict", json=body, timeout=600).json()["results"]
        cache = run / CACHE_FILE
        lines = cache.read_text().count("\n")
        again = httpx.post(f"{backend.url}/predict", json={"tasks": [new]}, timeout=600).json()["results"]
    made = first[0][0]
    label = made["result"][0]["value"]["choices"][0]
    assert made["result"][0]["from_name"] == "sentiment" and label in {"positive", "negative", "neutral", "mixed"}
    assert (
        made["model_version"].startswith("smollm2/") and "score" not in made
    )  # its own model/prompt; no calibrator yet
    assert first[1] == []  # an empty text: no model call, no prediction, no crash
    assert first[2][0]["result"][0]["value"] == {"choices": ["positive"]} and first[2][0]["model_version"] == "m/p"
    assert again == [first[0]] and cache.read_text().count("\n") == lines == 1  # asked once, cached
