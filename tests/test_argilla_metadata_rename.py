"""A dataset pushed by an earlier release holds the calibrated confidence as ``llm_confidence``
metadata. The next push (`ensure_dataset`) moves every record's value to ``calibrated_confidence``
and deletes the old property; reviewers' responses are untouched, and new records, metadata
updates (the loop) and a second `ensure_dataset` all work on the renamed dataset."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest

from curation.adapters import argilla_io
from labeltriage.config import load_task_config
from tests.support.reviewers import reviewer_headers

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parent.parent
OLD = {"o-0": 0.91, "o-1": 0.42, "o-2": 0.66}


def _config(name: str):
    config = load_task_config(ROOT / "datasets_config" / "sentiment.yaml")
    return config.model_copy(update={"argilla": config.argilla.model_copy(update={"dataset": name})})


def _old_dataset(client, config, monkeypatch):
    """The dataset and records as the earlier release made them (metadata ``llm_confidence``)."""
    import argilla as rg

    with monkeypatch.context() as patch:
        patch.setattr(argilla_io, "METADATA_FLOATS", ("priority", "llm_confidence"))
        dataset = argilla_io.ensure_dataset(client, config, vector_dimensions=None)
    assert "llm_confidence" in [prop.name for prop in dataset.settings.metadata]
    records = [
        rg.Record(
            id=rid,
            fields={"text": f"old review {rid}"},
            metadata={"priority": 1 - value, "llm_confidence": value, "route": "human_review", "round": 0},
            suggestions=[rg.Suggestion(question_name="sentiment", value="positive", score=value, agent="m/p")],
        )
        for rid, value in OLD.items()
    ]
    dataset.records.log(records)
    return dataset


def _submit(stack, dataset, rid: str, label: str) -> str:
    api_url, api_key = stack.credentials()
    items = httpx.get(f"{api_url}/api/v1/datasets/{dataset.id}/records", headers={"X-Argilla-Api-Key": api_key}).json()[
        "items"
    ]
    server_id = next(item["id"] for item in items if item["external_id"] == rid)
    name = f"rename_{uuid.uuid4().hex[:6]}"
    headers = reviewer_headers(stack, name)
    body = {"values": {"sentiment": {"value": label}}, "status": "submitted"}
    answer = httpx.post(
        f"{api_url}/api/v1/records/{server_id}/responses",
        json=body,
        headers=headers,
    )
    assert answer.is_success, answer.text
    return name


def test_a_second_push_renames_llm_confidence_metadata(argilla_stack, argilla_client, monkeypatch):
    config = _config(f"rename-{uuid.uuid4().hex[:6]}")
    _old_dataset(argilla_client, config, monkeypatch)
    reviewer = _submit(argilla_stack, argilla_client.datasets(config.argilla.dataset, "labeltriage"), "o-0", "negative")

    dataset = argilla_io.ensure_dataset(argilla_client, config, vector_dimensions=None)  # the next push
    dataset = argilla_client.datasets(name=config.argilla.dataset, workspace=config.argilla.workspace)
    names = {prop.name for prop in dataset.settings.metadata}
    assert names == {
        "priority", "review_rank", "calibrated_confidence", "route", "llm_label", "source", "round", "review_mode"
    }  # fmt: skip
    # the old dataset showed every property to annotators: the LLM's are hidden now (issue 17)
    hidden = {prop.name for prop in dataset.settings.metadata if not prop.visible_for_annotators}
    assert hidden == argilla_io.HIDDEN_FROM_ANNOTATORS
    assert "How the records reach you" in dataset.settings.guidelines
    records = {r.id: r for r in dataset.records(with_responses=True, with_suggestions=True)}
    for rid, value in OLD.items():
        assert "llm_confidence" not in records[rid].metadata
        assert records[rid].metadata["calibrated_confidence"] == pytest.approx(value)
        assert records[rid].metadata["priority"] == pytest.approx(1 - value)  # other metadata kept
        assert records[rid].suggestions["sentiment"].score == pytest.approx(value)
    responses = list(records["o-0"].responses)
    assert [(r.value, str(getattr(r.status, "value", r.status))) for r in responses] == [("negative", "submitted")]
    usernames = {str(user.id): user.username for user in argilla_client.users}
    assert usernames[str(responses[0].user_id)] == reviewer

    # new records, the loop's metadata-only updates and a second ensure_dataset all work
    routed = pd.DataFrame(
        {
            "id": ["n-0"],
            "text": ["new review"],
            "llm_label": ["mixed"],
            "calibrated_confidence": [0.55],
            "status": "ok",
            "route": "human_review",
            "priority": [0.45],
        }
    )
    report = argilla_io.push_records(dataset, argilla_io.build_records(routed, config))
    assert report.pushed == 1
    assert argilla_io.update_metadata(argilla_client, dataset, {"o-1": {"priority": 0.99, "round": 1}}) == 1
    again = argilla_io.ensure_dataset(argilla_client, config, vector_dimensions=None)
    assert {prop.name for prop in again.settings.metadata} == names
    records = {r.id: r for r in again.records(with_responses=False)}
    assert records["o-1"].metadata == {
        "priority": 0.99,
        "calibrated_confidence": OLD["o-1"],
        "route": "human_review",
        "round": 1,
    }
    assert records["n-0"].metadata["calibrated_confidence"] == 0.55
