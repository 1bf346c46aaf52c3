"""Issue 12, the review side under faults, on the real stack: each test fails without its fix."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.stack


def test_get_record_with_a_vector_answers(argilla_stack, argilla_client) -> None:
    """GET /api/v1/records/{id} answered 500 (MissingGreenlet) for every record with a vector."""
    import argilla as rg

    settings = rg.Settings(
        fields=[rg.TextField("text")],
        questions=[rg.LabelQuestion("sentiment", labels=["positive", "negative"])],
        vectors=[rg.VectorField("embedding", dimensions=3)],
    )
    dataset = rg.Dataset(
        f"vec-{uuid.uuid4().hex[:6]}", settings=settings, workspace="labeltriage", client=argilla_client
    ).create()
    dataset.records.log(
        [
            rg.Record(id="with-vector", fields={"text": "hi"}, vectors={"embedding": [0.1, 0.2, 0.3]}),
            rg.Record(id="without", fields={"text": "no vector"}),
        ]
    )
    api_url, api_key = argilla_stack.credentials()
    for record in dataset.records(with_vectors=True):
        response = httpx.get(f"{api_url}/api/v1/records/{record._server_id}", headers={"X-Argilla-Api-Key": api_key})
        assert response.status_code == 200, response.text
        expected = {"embedding": [0.1, 0.2, 0.3]} if record.id == "with-vector" else {}
        assert response.json()["vectors"] == expected
