"""A record reviewers saw with the LLM's suggestion never turns blind with that suggestion still on
it (issue 17 review): an Argilla upsert adds or replaces suggestions but never deletes them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import labeltriage as lt

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parent.parent
N = 30


def _run(tmp_path: Path) -> tuple[Path, dict]:
    run = tmp_path / "run"
    run.mkdir()
    config = yaml.safe_load((ROOT / "datasets_config" / "sentiment_3class.yaml").read_text())
    config["argilla"]["dataset"] = f"blind-{uuid.uuid4().hex[:8]}"
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(config))
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "id": [f"r{i:02d}" for i in range(N)],
            "text": [f"review number {i}: it works" for i in range(N)],
            "llm_label": "positive",
            "llm_confidence": rng.uniform(0.5, 1.0, N),
            "calibrated_confidence": rng.uniform(0.5, 1.0, N),
            "reasoning": "Praise dominates.",
            "model": "qwen",
            "prompt_hash": "p0",
            "status": "ok",
            "route": "human_review",
            "priority": rng.uniform(0, 1, N),
        }
    ).to_parquet(run / "routed.parquet", index=False)
    (run / "run.json").write_text(json.dumps({"config": str(tmp_path / "task.yaml")}))
    return run, config


def test_a_record_pushed_with_its_suggestion_loses_it_when_it_turns_blind(argilla_client, tmp_path: Path) -> None:
    run, config = _run(tmp_path)
    first = lt.push(run, client=argilla_client, vectors=False)
    assert first.pushed == N and first.suggestions_removed == 0
    assert json.loads((run / "assisted_shown.json").read_text()) == [f"r{i:02d}" for i in range(N)]
    # a later routing makes some of them audits or blind reviews (a re-route, a blind share)
    routed = pd.read_parquet(run / "routed.parquet")
    routed.loc[:4, "route"] = "spot_check"
    routed["blind"] = False
    routed.loc[5:9, "blind"] = True
    routed.to_parquet(run / "routed.parquet", index=False)
    second = lt.push(run, client=argilla_client, vectors=False)
    assert second.suggestions_removed == 10
    dataset = argilla_client.datasets(config["argilla"]["dataset"], workspace="labeltriage")
    records = {r.id: r for r in dataset.records(with_suggestions=True)}
    for i in range(N):
        record = records[f"r{i:02d}"]
        if i < 10:
            assert not list(record.suggestions), record.id
            assert record.metadata["review_mode"] == "blind" and "llm_label" not in record.metadata
        else:
            assert record.suggestions["sentiment"].value == "positive"
    assert lt.push(run, client=argilla_client, vectors=False).suggestions_removed == 0  # idempotent
    # found in review: `loop` pushes with vectors, and a dataset made without them refused (422)
    assert lt.push(run, client=argilla_client).pushed == 0


def test_a_record_pushed_blind_never_gets_the_suggestion_later(argilla_client, tmp_path: Path) -> None:
    """Found in review: a re-route drew another blind share and the next push added the suggestion
    to records reviewers had answered blind."""
    run, config = _run(tmp_path)
    routed = pd.read_parquet(run / "routed.parquet")
    routed["blind"] = [i < 6 for i in range(N)]
    routed.to_parquet(run / "routed.parquet", index=False)
    lt.push(run, client=argilla_client, vectors=False)
    assert json.loads((run / "blind_shown.json").read_text()) == [f"r{i:02d}" for i in range(6)]
    routed.assign(blind=[6 <= i < 12 for i in range(N)]).to_parquet(run / "routed.parquet", index=False)  # re-drawn
    lt.push(run, client=argilla_client, vectors=False)
    dataset = argilla_client.datasets(config["argilla"]["dataset"], workspace="labeltriage")
    records = {r.id: r for r in dataset.records(with_suggestions=True)}
    for i in range(12):  # the first six stay blind; the next six lose the suggestion they had (earlier test)
        assert not list(records[f"r{i:02d}"].suggestions) and records[f"r{i:02d}"].metadata["review_mode"] == "blind"
    assert all(records[f"r{i:02d}"].suggestions["sentiment"].value == "positive" for i in range(12, N))
