"""Pushing part of a large review queue (`push --limit`) and the run's embedding store (pure).

At the source's scale (500,000 records, 15,000 for people) push sends the records that matter
most and embeds only those; later steps embed the rest once. The embedding model is replaced by
a counting stand-in here: what is tested is which texts get embedded and which vector each row
gets back; the real model runs in the stack tier's push and loop tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curation.adapters import argilla_io, embeddings
from curation.adapters.loop import EMBEDDINGS_FILE, run_embeddings


def _queue() -> pd.DataFrame:
    routed = pd.DataFrame(
        {
            "id": ["r1", "r2", "r3", "r4", "s1", "s2"],
            "text": ["a", "b", "c", "d", "e", "f"],
            "route": ["human_review"] * 4 + ["spot_check"] * 2,
            "priority": [0.9, 0.8, 0.7, 0.6, 0.1, 0.05],
            "review_audit": [False, True, False, False, False, False],
        }
    )
    return argilla_io.review_queue(routed)


def test_limit_takes_audits_first_then_priority_and_keeps_audit_copies_with_their_record():
    queue, held_back = argilla_io.first_new(_queue(), pushed=set(), limit=3)
    assert list(queue["id"]) == ["r1", "s1", "s2"]  # the queue's priority order is kept
    assert held_back == 3  # r2 (with its copy), r3, r4
    queue, held_back = argilla_io.first_new(_queue(), pushed=set(), limit=4)
    assert set(queue["id"]) == {"s1", "s2", "r1", "r2", "r2::audit"}
    assert held_back == 2


def test_limit_counts_only_records_never_pushed_and_refreshes_the_others():
    queue, held_back = argilla_io.first_new(_queue(), pushed={"s1", "s2", "r1", "r4"}, limit=1)
    assert set(queue["id"]) == {"s1", "s2", "r1", "r4", "r2", "r2::audit"}
    assert held_back == 1  # r3
    everything, none_held = argilla_io.first_new(_queue(), pushed=set(), limit=100)
    assert len(everything) == len(_queue()) and none_held == 0
    nothing_new, held = argilla_io.first_new(_queue(), pushed={"r1"}, limit=0)
    assert list(nothing_new["id"]) == ["r1"] and held == 5
    with pytest.raises(ValueError, match="limit must be >= 0"):
        argilla_io.first_new(_queue(), pushed=set(), limit=-1)


def test_audits_stay_first_after_auto_accept_stopped():
    queue = _queue()
    # a stop turns the audits into review records, remembered in route_before_stop (labeltriage.trust)
    queue["route_before_stop"] = np.where(queue["route"].eq("spot_check"), "spot_check", None)
    queue.loc[queue["route"].eq("spot_check"), "route"] = "human_review"
    limited, held_back = argilla_io.first_new(queue, pushed=set(), limit=2)
    assert set(limited["id"]) == {"s1", "s2"} and held_back == 4


@pytest.fixture
def counting_model(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []

    def embed(texts: list[str], **_: object) -> np.ndarray:
        calls.append(list(texts))
        # a vector that names its text: row i of the answer must belong to texts[i]
        return np.array([[float(ord(t[0])), float(len(t))] + [0.0] * 382 for t in texts], dtype=np.float32)

    monkeypatch.setattr(embeddings, "embed_texts", embed)
    return calls


def test_each_text_is_embedded_once_per_run_and_rows_come_back_in_order(tmp_path: Path, counting_model):
    first = run_embeddings(tmp_path, ["b", "a"])
    assert counting_model == [["b", "a"]]
    assert first[:, :2].tolist() == [[98.0, 1.0], [97.0, 1.0]]
    again = run_embeddings(tmp_path, ["a", "cc", "b", "a"])  # a repeated text is one vector
    assert counting_model[1:] == [["cc"]]
    assert again[:, :2].tolist() == [[97.0, 1.0], [99.0, 2.0], [98.0, 1.0], [97.0, 1.0]]
    assert run_embeddings(tmp_path, []).shape == (0, 384)
    run_embeddings(tmp_path, ["cc", "b"])
    assert len(counting_model) == 2  # nothing new
    with np.load(tmp_path / EMBEDDINGS_FILE) as saved:
        assert saved["vectors"].shape == (3, 384) and saved["keys"].shape == (3,)


def test_a_file_that_cannot_be_read_is_recomputed(tmp_path: Path, counting_model):
    run_embeddings(tmp_path, ["a", "b"])
    (tmp_path / EMBEDDINGS_FILE).write_bytes(b"PK\x03\x04 cut short")
    vectors = run_embeddings(tmp_path, ["b"])
    assert counting_model[-1] == ["b"] and vectors[0, 0] == 98.0
    with np.load(tmp_path / EMBEDDINGS_FILE) as saved:
        assert saved["vectors"].shape == (1, 384)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
