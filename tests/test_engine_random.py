"""Randomised check of the embedded engine against brute force, through the real server.

Random records (text, metadata, suggestions, responses of three users, vectors) are logged with
the SDK; then, for every search feature Argilla offers, the server's answer (embedded engine) is
compared with an answer computed in Python from the same records.
"""

from __future__ import annotations

import random
import uuid

import httpx
import numpy as np
import pytest

from tests.support.reviewers import reviewer_headers

pytestmark = pytest.mark.stack

WORDS = ["apple", "battery", "camera", "screen", "price", "durable", "broken", "great", "awful", "fine"]
LABELS = ["positive", "negative", "neutral"]
TAGS = ["battery", "screen", "camera", "price"]
ROUTES = ["auto_accept", "human_review", "spot_check"]
N_RECORDS = 240
DIM = 8


@pytest.fixture(scope="module")
def world(argilla_stack, argilla_client):
    import argilla as rg

    rng = random.Random(7)
    nrng = np.random.default_rng(7)
    api_url, api_key = argilla_stack.credentials()
    users = []
    for index in range(3):
        name = f"rand_reviewer_{index}_{uuid.uuid4().hex[:6]}"
        headers = reviewer_headers(argilla_stack, name)
        me = httpx.get(f"{api_url}/api/v1/me", headers=headers).json()
        users.append({"id": me["id"], "name": name, "headers": headers})
    settings = rg.Settings(
        fields=[rg.TextField(name="text"), rg.TextField(name="title", required=False)],
        questions=[
            rg.LabelQuestion(name="label", labels=LABELS),
            rg.MultiLabelQuestion(name="tags", labels=TAGS, required=False),
            rg.RatingQuestion(name="quality", values=[1, 2, 3, 4, 5], required=False),
        ],
        metadata=[
            rg.FloatMetadataProperty(name="priority"),
            rg.IntegerMetadataProperty(name="round"),
            rg.TermsMetadataProperty(name="route"),
        ],
        vectors=[rg.VectorField(name="emb", dimensions=DIM)],
        distribution=rg.TaskDistribution(min_submitted=2),
    )
    dataset = rg.Dataset(
        name=f"random_{uuid.uuid4().hex[:8]}", workspace="labeltriage", settings=settings, client=argilla_client
    ).create()
    records = []
    for index in range(N_RECORDS):
        words = rng.sample(WORDS, rng.randint(2, 5))
        metadata = {}
        if rng.random() < 0.9:
            metadata["priority"] = round(rng.random(), 3)
        if rng.random() < 0.9:
            metadata["round"] = rng.randint(0, 5)
        if rng.random() < 0.9:
            metadata["route"] = rng.choice(ROUTES)
        suggestions = []
        if rng.random() < 0.85:
            suggestions.append(
                rg.Suggestion("label", rng.choice(LABELS), score=round(rng.random(), 3), agent=rng.choice(["m1", "m2"]))
            )
        if rng.random() < 0.5:
            suggestions.append(rg.Suggestion("tags", rng.sample(TAGS, rng.randint(1, 3)), agent="m1"))
        responses = []
        for user in users:
            roll = rng.random()
            if roll < 0.45:
                continue
            status = "submitted" if roll < 0.8 else ("draft" if roll < 0.9 else "discarded")
            if status != "discarded":
                responses.append(rg.Response("label", rng.choice(LABELS), user_id=user["id"], status=status))
                responses.append(rg.Response("quality", rng.randint(1, 5), user_id=user["id"], status=status))
            else:
                responses.append(rg.Response("label", rng.choice(LABELS), user_id=user["id"], status=status))
        fields = {"text": " ".join(words)}
        if rng.random() < 0.3:
            fields["title"] = rng.choice(WORDS)
        records.append(
            rg.Record(
                id=f"rec-{index}",
                fields=fields,
                metadata=metadata,
                suggestions=suggestions,
                responses=responses,
                vectors={"emb": nrng.normal(size=DIM).round(4).tolist()},
            )
        )
    dataset.records.log(records)
    # The truth: what the database holds (listing without a query never touches the engine).
    truth = {}
    for record in dataset.records(with_suggestions=True, with_responses=True, with_vectors=True):
        truth[record.id] = record
    assert len(truth) == N_RECORDS
    id_map = {record.id: str(record._server_id) for record in truth.values()}
    return {
        "dataset": dataset,
        "records": truth,
        "server_ids": id_map,
        "by_server_id": {value: key for key, value in id_map.items()},
        "users": users,
        "api_url": api_url,
        "headers": {"X-Argilla-Api-Key": api_key},
        "rng": random.Random(11),
    }


def _search(world, body: dict, user: dict | None = None, limit: int = 1000) -> tuple[list[str], int, list]:
    prefix = "/api/v1/me" if user else "/api/v1"
    headers = user["headers"] if user else world["headers"]
    response = httpx.post(
        f"{world['api_url']}{prefix}/datasets/{world['dataset'].id}/records/search",
        json=body,
        params={"limit": limit},
        headers=headers,
        timeout=60,
    )
    assert response.status_code == 200, response.text
    payload = response.json()
    ids = [world["by_server_id"][item["record"]["id"]] for item in payload["items"]]
    scores = [item.get("query_score") for item in payload["items"]]
    return ids, payload["total"], scores


def _suggestion(record, question):
    for suggestion in record.suggestions:
        if suggestion.question_name == question:
            return suggestion
    return None


def _responses(record, user_id=None):
    return [r for r in record.responses if user_id is None or str(r.user_id) == str(user_id)]


def _check(world, body, expected: set[str], user=None):
    ids, total, _ = _search(world, body, user=user)
    assert total == len(expected), body
    assert set(ids) == expected, body


def test_text_query_matches_all_words(world):
    rng = world["rng"]
    for _ in range(12):
        words = rng.sample(WORDS, rng.randint(1, 2))
        expected = {rid for rid, r in world["records"].items() if all(w in r.fields["text"].split() for w in words)}
        _check(world, {"query": {"text": {"q": " ".join(words), "field": "text"}}}, expected)
    # Without a field, any field matches; the title field is optional.
    word = "camera"
    expected = {
        rid
        for rid, r in world["records"].items()
        if word in r.fields["text"].split() or word == (r.fields.get("title") or "")
    }
    _check(world, {"query": {"text": {"q": word}}}, expected)


def _metadata_filter(world, rng):
    name = rng.choice(["priority", "round", "route"])
    scope = {"entity": "metadata", "metadata_property": name}
    if name == "route":
        values = rng.sample(ROUTES, rng.randint(1, 2))
        return {"type": "terms", "scope": scope, "values": values}, lambda r: r.metadata.get(name) in values
    low = rng.random() if name == "priority" else rng.randint(0, 3)
    high = low + (rng.random() * 0.5 if name == "priority" else rng.randint(0, 2))
    spec = {"type": "range", "scope": scope, "ge": low, "le": high}

    def match(r):
        value = r.metadata.get(name)
        return value is not None and low <= value <= high

    return spec, match


def _suggestion_filter(world, rng):
    kind = rng.choice(["value", "score", "agent", "tags"])
    if kind == "value":
        values = rng.sample(LABELS, rng.randint(1, 2))
        spec = {"type": "terms", "scope": {"entity": "suggestion", "question": "label", "property": "value"}}
        spec["values"] = values
        return spec, lambda r: (s := _suggestion(r, "label")) is not None and s.value in values
    if kind == "score":
        low = round(rng.random() * 0.7, 2)
        spec = {"type": "range", "scope": {"entity": "suggestion", "question": "label", "property": "score"}}
        spec["ge"] = low
        return spec, lambda r: (s := _suggestion(r, "label")) is not None and s.score is not None and s.score >= low
    if kind == "agent":
        spec = {"type": "terms", "scope": {"entity": "suggestion", "question": "label", "property": "agent"}}
        spec["values"] = ["m2"]
        return spec, lambda r: (s := _suggestion(r, "label")) is not None and s.agent == "m2"
    tag = rng.choice(TAGS)
    spec = {"type": "terms", "scope": {"entity": "suggestion", "question": "tags", "property": "value"}}
    spec["values"] = [tag]
    return spec, lambda r: (s := _suggestion(r, "tags")) is not None and tag in s.value


def _response_filter(world, rng):
    values = rng.sample(LABELS, 1)
    spec = {"type": "terms", "scope": {"entity": "response", "question": "label"}, "values": values}
    # As in Elasticsearch, a response of any status matches.
    return spec, lambda r: any(resp.question_name == "label" and resp.value in values for resp in _responses(r))


def _record_status_filter(world, rng):
    status = rng.choice(["pending", "completed"])
    spec = {"type": "terms", "scope": {"entity": "record", "property": "status"}, "values": [status]}
    return spec, lambda r: r.status == status


def test_every_filter_kind_and_combinations(world):
    rng = world["rng"]
    makers = [_metadata_filter, _suggestion_filter, _response_filter, _record_status_filter]
    for _ in range(40):
        chosen = [rng.choice(makers)(world, rng) for _ in range(rng.randint(1, 3))]
        body = {"filters": {"and": [spec for spec, _ in chosen]}}
        expected = {rid for rid, r in world["records"].items() if all(match(r) for _, match in chosen)}
        _check(world, body, expected)


def test_text_query_with_filter(world):
    rng = world["rng"]
    for _ in range(8):
        word = rng.choice(WORDS)
        spec, match = _metadata_filter(world, rng)
        expected = {rid for rid, r in world["records"].items() if word in r.fields["text"].split() and match(r)}
        _check(world, {"query": {"text": {"q": word, "field": "text"}}, "filters": {"and": [spec]}}, expected)


def test_per_user_response_status(world):
    for user in world["users"]:
        for statuses in (["pending"], ["submitted"], ["draft"], ["discarded"], ["pending", "draft"]):

            def match(r, statuses=statuses, user=user):
                mine = {resp.status for resp in _responses(r, user["id"])}
                return ("pending" in statuses and not mine) or bool(mine & set(statuses))

            spec = {"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": statuses}
            expected = {rid for rid, r in world["records"].items() if match(r)}
            _check(world, {"filters": {"and": [spec]}}, expected, user=user)


def _sort_key(world, scope, record):
    if scope["entity"] == "metadata":
        return record.metadata.get(scope["metadata_property"])
    if scope["entity"] == "suggestion":
        suggestion = _suggestion(record, scope["question"])
        return None if suggestion is None else getattr(suggestion, scope["property"])
    return None


@pytest.mark.parametrize(
    "scope",
    [
        {"entity": "metadata", "metadata_property": "priority"},
        {"entity": "metadata", "metadata_property": "round"},
        {"entity": "metadata", "metadata_property": "route"},
        {"entity": "suggestion", "question": "label", "property": "score"},
    ],
)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sort_matches_brute_force(world, scope, order):
    spec, match = _metadata_filter(world, random.Random(3))
    ids, total, _ = _search(world, {"filters": {"and": [spec]}, "sort": [{"scope": scope, "order": order}]})
    expected_ids = [rid for rid, r in world["records"].items() if match(r)]
    assert total == len(expected_ids) and set(ids) == set(expected_ids)
    keys = [_sort_key(world, scope, world["records"][rid]) for rid in ids]
    present = [key for key in keys if key is not None]
    # Missing values come last, in both directions.
    assert keys == present + [None] * (len(keys) - len(present))
    assert present == sorted(present, reverse=(order == "desc"))
    assert len(present) > 10


def test_sort_by_inserted_at_and_paging(world):
    body = {"sort": [{"scope": {"entity": "record", "property": "inserted_at"}, "order": "asc"}]}
    ids, total, _ = _search(world, body)
    assert total == N_RECORDS
    inserted = [world["records"][rid]._model.inserted_at for rid in ids]
    assert inserted == sorted(inserted)
    pages = []
    for offset in range(0, 60, 20):
        response = httpx.post(
            f"{world['api_url']}/api/v1/datasets/{world['dataset'].id}/records/search",
            json=body,
            params={"limit": 20, "offset": offset},
            headers=world["headers"],
        ).json()
        pages += [world["by_server_id"][item["record"]["id"]] for item in response["items"]]
    assert pages == ids[:60]


def test_metadata_metrics(world):
    from collections import Counter

    headers = world["headers"]
    properties = httpx.get(
        f"{world['api_url']}/api/v1/me/datasets/{world['dataset'].id}/metadata-properties", headers=headers
    ).json()["items"]
    for prop in properties:
        metrics = httpx.get(f"{world['api_url']}/api/v1/metadata-properties/{prop['id']}/metrics", headers=headers)
        metrics = metrics.json()
        values = [r.metadata.get(prop["name"]) for r in world["records"].values()]
        values = [value for value in values if value is not None]
        if prop["settings"]["type"] == "terms":
            counts = Counter(values)
            assert metrics["total"] == len(values)
            assert {item["term"]: item["count"] for item in metrics["values"]} == dict(counts)
        else:
            assert metrics["min"] == pytest.approx(min(values))
            assert metrics["max"] == pytest.approx(max(values))


def test_dataset_and_user_progress(world):
    from collections import Counter

    progress = world["dataset"].progress()
    statuses = Counter(r.status for r in world["records"].values())
    assert progress["total"] == N_RECORDS
    assert progress["completed"] == statuses["completed"]
    assert progress["pending"] == statuses["pending"]
    for user in world["users"]:
        metrics = httpx.get(
            f"{world['api_url']}/api/v1/me/datasets/{world['dataset'].id}/metrics", headers=user["headers"]
        ).json()["responses"]
        mine = Counter()
        for record in world["records"].values():
            statuses_here = {resp.status for resp in _responses(record, user["id"])}
            for status in statuses_here:
                mine[status] += 1
        assert metrics["submitted"] == mine["submitted"]
        assert metrics["draft"] == mine["draft"]
        assert metrics["discarded"] == mine["discarded"]
        assert metrics["pending"] == N_RECORDS - sum(mine.values())


def test_vector_similarity_is_exact_cosine(world):
    rng = np.random.default_rng(5)
    ids = list(world["records"])
    matrix = np.array([world["records"][rid].vectors["emb"] for rid in ids])
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    for _ in range(5):
        query = rng.normal(size=DIM)
        cos = unit @ (query / np.linalg.norm(query))
        expected = [ids[i] for i in np.argsort(-cos, kind="stable")[:20]]
        body = {"query": {"vector": {"name": "emb", "value": query.tolist()}}}
        got, _, scores = _search(world, body, limit=20)
        assert got == expected
        assert scores == pytest.approx(sorted((1 + cos[[ids.index(g) for g in got]]) / 2, reverse=True), abs=1e-5)
    # By record, with a filter: the record itself is excluded, the filter applies.
    target = ids[0]
    spec, match = _metadata_filter(world, random.Random(9))
    body = {
        "query": {"vector": {"name": "emb", "record_id": world["server_ids"][target], "order": "least_similar"}},
        "filters": {"and": [spec]},
    }
    got, _, _ = _search(world, body, limit=15)
    cos = unit @ unit[0]
    allowed = [i for i, rid in enumerate(ids) if rid != target and match(world["records"][rid])]
    expected = [ids[i] for i in sorted(allowed, key=lambda i: (cos[i], i))[:15]]
    assert got == expected
