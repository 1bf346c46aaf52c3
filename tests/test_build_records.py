"""`curation.adapters.argilla_io.build_records`: routed rows -> Argilla SDK records (pure: no server).

Every value a reviewer sees comes from here: the text (or the empty-text note), the reasoning, the
suggestion and its score, the metadata the queue sorts and filters on, the vector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from curation.adapters import argilla_io
from labeltriage.config import load_task_config

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT = load_task_config(ROOT / "datasets_config" / "sentiment.yaml")
ASPECTS = load_task_config(ROOT / "datasets_config" / "aspects.yaml")


def _routed() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a1", "a2", "a3", "a4"],
            "text": ["Loved it.", "Broke in a day.", "", "Fine, I guess."],
            "llm_label": ["positive", "negative", None, "great"],  # "great" is not a label of the task
            "llm_confidence": [0.99, 0.7, np.nan, 0.8],
            "calibrated_confidence": [0.93, 0.61, np.nan, 0.5],
            "reasoning": ["Praise.", "  A defect.  ", None, "Unsure."],
            "model": "qwen2.5-1.5b",
            "prompt_hash": "ab12+cd",
            "status": ["ok", "ok", "failed", "ok"],
            "route": ["auto_accept", "human_review", "human_review", "human_review"],
            "priority": [0.07, 0.39, 1.0, 0.5],
            "source": ["shop", "shop", None, "forum"],
        }
    )


def _suggestion(record):
    found = list(record.suggestions)
    assert len(found) <= 1
    return found[0] if found else None


def test_records_carry_the_calibrated_confidence_under_its_own_name() -> None:
    records = argilla_io.build_records(_routed(), SENTIMENT, round_number=2)
    assert [r.id for r in records] == ["a1", "a2", "a3", "a4"]
    first = records[0]
    assert dict(first.metadata) == {
        "priority": 0.07,
        "review_rank": 4,  # the lowest of the four priorities
        "calibrated_confidence": 0.93,  # not the raw 0.99, and not named llm_confidence
        "route": "auto_accept",
        "llm_label": "positive",
        "round": 2,
        "source": "shop",
        "review_mode": "assisted",
    }
    suggestion = _suggestion(first)
    assert (suggestion.question_name, suggestion.value, suggestion.score) == ("sentiment", "positive", 0.93)
    assert suggestion.agent == "qwen2.5-1.5b/ab12-cd" and suggestion.type == "model"  # '+' is not allowed
    assert first.fields.to_dict() == {"text": "Loved it.", "llm_reasoning": "Praise."}
    assert records[1].fields.to_dict()["llm_reasoning"] == "A defect."
    assert all("llm_confidence" not in r.metadata for r in records)


def test_failed_and_out_of_set_labels_get_no_suggestion_and_an_empty_text_says_so() -> None:
    records = argilla_io.build_records(_routed(), SENTIMENT)
    failed, outside = records[2], records[3]
    assert _suggestion(failed) is None and _suggestion(outside) is None
    # NaN and None left out
    assert dict(failed.metadata) == {
        "priority": 1.0, "review_rank": 1, "route": "human_review", "round": 0, "review_mode": "assisted"
    }  # fmt: skip
    assert failed.fields.to_dict() == {
        "text": argilla_io.EMPTY_TEXT_NOTE,
        "llm_reasoning": "No model call: the input row's text is empty.",
    }
    assert outside.metadata["llm_label"] == "great"  # still shown to the reviewer as what the LLM said


def test_vectors_source_and_a_frame_without_calibration() -> None:
    vectors = np.arange(8, dtype=np.float32).reshape(4, 2)
    records = argilla_io.build_records(_routed(), SENTIMENT, vectors=vectors, source="batch-7")
    assert [dict(r.vectors)["embedding"] for r in records] == vectors.tolist()
    assert {r.metadata["source"] for r in records} == {"batch-7"}
    raw = _routed().drop(columns=["calibrated_confidence"])
    record = argilla_io.build_records(raw, SENTIMENT)[0]
    assert _suggestion(record).score == 0.99  # the suggestion shows the raw score it has
    assert "calibrated_confidence" not in record.metadata  # but never under the calibrated name


def test_multi_label_rows() -> None:
    frame = pd.DataFrame(
        {
            "id": ["m1", "m2"],
            "text": ["Battery and screen both bad.", "Nothing to say."],
            "llm_label": [np.array(["battery", "screen"]), np.array([], dtype=object)],
            "calibrated_confidence": [0.8, 0.4],
            "status": "ok",
            "route": "human_review",
            "priority": [0.2, 0.6],
        }
    )
    first, second = argilla_io.build_records(frame, ASPECTS)
    suggestion = _suggestion(first)
    assert (suggestion.value, suggestion.score) == (["battery", "screen"], [0.8, 0.8])
    assert first.metadata["llm_label"] == "battery,screen"
    assert _suggestion(second).value == [] and "llm_label" not in second.metadata


def test_the_metadata_written_is_the_metadata_the_dataset_declares() -> None:
    # dataset_settings declares exactly these (building its question needs a client, so not here)
    declared = {*argilla_io.METADATA_FLOATS, *argilla_io.METADATA_TERMS, *argilla_io.METADATA_INTEGERS}
    assert declared == {
        "priority", "review_rank", "calibrated_confidence", "route", "llm_label", "source", "round", "review_mode"
    }  # fmt: skip
    written = set().union(*(r.metadata.keys() for r in argilla_io.build_records(_routed(), SENTIMENT)))
    assert written <= declared
    assert argilla_io.RENAMED_METADATA == {"llm_confidence": "calibrated_confidence"}


def test_one_record_per_row_in_the_frames_order() -> None:
    frame = _routed().iloc[::-1].reset_index(drop=True)
    assert [r.id for r in argilla_io.build_records(frame, SENTIMENT)] == frame["id"].tolist()


def test_audit_records_are_blind() -> None:
    """Spot-check (audit) records carried the LLM's label pre-selected, its score and reasoning:
    reviewers adopt suggestions, so the audit overstated the LLM (issue 17 point 3)."""
    frame = _routed()
    frame.loc[0, "route"] = "spot_check"
    frame["blind"] = [False, False, False, True]  # a share of the review queue shown blind too
    records = argilla_io.build_records(frame, SENTIMENT, round_number=1)
    for record in (records[0], records[3]):
        assert _suggestion(record) is None
        assert set(record.fields.to_dict()) == {"text"}  # no reasoning
        assert set(record.metadata) == {"priority", "review_rank", "round", "source", "review_mode"}
        assert record.metadata["review_mode"] == "blind"
        # its priority is one of the assisted records' (nothing about the model's confidence)
        assert record.metadata["priority"] in {0.39, 1.0}
        assert record.metadata["review_rank"] == (1 if record.metadata["priority"] == 1.0 else 2)
    assert records[1].metadata["review_mode"] == "assisted" and _suggestion(records[1]) is not None
    assert {"calibrated_confidence", "route", "llm_label", "review_mode"} == argilla_io.HIDDEN_FROM_ANNOTATORS


def test_reviewers_see_a_rank_and_blind_records_never_their_own_priority() -> None:
    frame = _routed()
    frame["blind"] = [False, True, False, False]  # a2's own priority (0.39) must not show
    shown = argilla_io.shown_priorities(frame)
    assert shown[0] == 0.07 and shown[2] == 1.0 and shown[3] == 0.5 and shown[1] in {0.07, 1.0, 0.5}
    assert argilla_io.shown_priorities(frame)[1] == shown[1]  # the same draw every time (id-seeded)
    assert argilla_io.review_ranks(np.array([0.2, 0.9, 0.2, 0.5])).tolist() == [3, 1, 3, 2]
    link = argilla_io.review_link("http://127.0.0.1:6900/", "d-1")
    assert link == "http://127.0.0.1:6900/dataset/d-1/annotation-mode?sort=metadata.priority.desc"
