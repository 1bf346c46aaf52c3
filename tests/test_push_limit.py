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


def _saved(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype=embeddings.STORE_ROW)


def test_each_text_is_embedded_once_per_run_and_rows_come_back_in_order(tmp_path: Path, counting_model):
    first = run_embeddings(tmp_path, ["b", "a"])
    assert counting_model == [["b", "a"]]
    assert first[:, :2].tolist() == [[98.0, 1.0], [97.0, 1.0]]
    again = run_embeddings(tmp_path, ["a", "cc", "b", "a"])  # a repeated text is one vector
    assert counting_model[1:] == [["cc"]]
    assert again[:, :2].tolist() == [[97.0, 1.0], [99.0, 2.0], [98.0, 1.0], [97.0, 1.0]]
    assert again.dtype == np.float32 and again.flags["C_CONTIGUOUS"]
    assert run_embeddings(tmp_path, []).shape == (0, 384)
    run_embeddings(tmp_path, ["cc", "b"])
    assert len(counting_model) == 2  # nothing new
    saved = _saved(tmp_path / EMBEDDINGS_FILE)
    assert saved.shape == (3,) and saved["vector"][:, 0].tolist() == [98.0, 97.0, 99.0]
    assert saved["key"][0] == bytes.fromhex(embeddings.text_key("b")).rstrip(b"\0")


def test_reads_span_blocks(tmp_path: Path, counting_model, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(embeddings, "READ_BLOCK", 3)
    texts = [chr(ord("a") + i) * (i + 1) for i in range(10)]
    run_embeddings(tmp_path, texts)
    wanted = [texts[9], texts[0], texts[4], texts[3], texts[9]]  # rows in blocks 3, 0, 1, 1, 3
    got = run_embeddings(tmp_path, wanted)
    assert got[:, 1].tolist() == [10.0, 1.0, 5.0, 4.0, 10.0]


def test_a_key_ending_in_nul_bytes_is_found_again(tmp_path: Path, counting_model):
    # numpy's bytes type drops trailing NULs on reading: ~1 key in 256 ends with one
    text = next(f"t{i}" for i in range(100_000) if embeddings.text_key(f"t{i}").endswith("00"))
    run_embeddings(tmp_path, [text])
    run_embeddings(tmp_path, [text])
    assert counting_model == [[text]] and _saved(tmp_path / EMBEDDINGS_FILE).shape == (1,)


def test_a_killed_round_keeps_its_finished_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls: list[list[str]] = []

    def embed_until_the_third_chunk(texts: list[str], **_: object) -> np.ndarray:
        if len(calls) == 2:
            raise KeyboardInterrupt  # the round is killed while it embeds
        calls.append(list(texts))
        return np.full((len(texts), 384), float(len(calls)), dtype=np.float32)

    monkeypatch.setattr(embeddings, "embed_texts", embed_until_the_third_chunk)
    monkeypatch.setattr(embeddings, "ENCODE_CHUNK", 2)
    texts = ["a", "b", "c", "d", "e"]
    with pytest.raises(KeyboardInterrupt):
        run_embeddings(tmp_path, texts)
    assert _saved(tmp_path / EMBEDDINGS_FILE).shape == (4,)
    calls.clear()
    vectors = run_embeddings(tmp_path, texts)
    assert calls == [["e"]]  # the next call goes on from the last finished chunk
    assert vectors[:, 0].tolist() == [1.0, 1.0, 2.0, 2.0, 1.0]


def test_a_torn_last_row_is_cut_off_and_recomputed(tmp_path: Path, counting_model):
    run_embeddings(tmp_path, ["a", "b"])
    store = tmp_path / EMBEDDINGS_FILE
    with open(store, "ab") as torn:  # a writer killed in the middle of a row
        torn.write(b"\x01" * 100)
    vectors = run_embeddings(tmp_path, ["b", "c"])
    assert counting_model[-1] == ["c"] and vectors[:, 0].tolist() == [98.0, 99.0]
    assert store.stat().st_size == 3 * embeddings.STORE_ROW.itemsize
