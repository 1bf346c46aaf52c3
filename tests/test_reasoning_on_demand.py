"""`model.generation.reasoning: review_only`: pre-label without the reasoning, ask for it before a
push, only for the records reviewers see with the LLM's suggestion (labeltriage.reasoning).

Against the fake OpenAI-compatible server (real HTTP, the real openai client and pipeline), which
answers as the request's schema says: no ``reasoning`` property, no reasoning. The local backend's
side (jump-forward stopped before the reasoning) is in test_decode_fake_model.py and, with the
real model, in test_prelabel_local.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from labeltriage import api
from labeltriage.reasoning import REASONING_CACHE, add_reasoning, reasoning_for_review
from labeltriage.rundir import REASONING_FILE, RunDir
from tests.support.llm_fake_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["positive vibes", "a negative take", "so neutral", "mixed feelings", "positive again"]


def _config(tmp_path: Path, reasoning: str) -> Path:
    data = yaml.safe_load((ROOT / "datasets_config" / "sentiment.yaml").read_text())
    data["model"]["generation"]["reasoning"] = reasoning
    path = tmp_path / f"sentiment-{reasoning}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _prelabel(tmp_path: Path, server: FakeOpenAIServer, reasoning: str, run: Path) -> pd.DataFrame:
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(source, index=False)
    api.prelabel(_config(tmp_path, reasoning), source, run, backend="openai", model="fake", base_url=server.base_url)
    return pd.read_parquet(run / "prelabels.parquet")


def _schemas(server: FakeOpenAIServer) -> list[list[str]]:
    # a server other than OpenAI's is sent {"type": "json_object", "schema": ...} (llama.cpp, vLLM)
    return [list(body["response_format"]["schema"]["properties"]) for body in server.bodies]


@pytest.fixture()
def server():
    with FakeOpenAIServer() as fake:
        yield fake


def test_review_only_asks_for_the_reasoning_of_the_pushed_records_once(tmp_path: Path, server) -> None:
    run = tmp_path / "run"
    prelabels = _prelabel(tmp_path, server, "review_only", run)
    assert prelabels["status"].eq("ok").all() and prelabels["reasoning"].isna().all()
    assert prelabels["llm_label"].tolist() == ["positive", "negative", "neutral", "mixed", "positive"]
    assert _schemas(server) == [["label", "confidence"]] * 5  # the reasoning is never asked for
    recorded = json.loads((run / "run.json").read_text())["model_settings"]
    assert recorded["base_url"] == server.base_url and recorded["generation"]["reasoning"] == "review_only"

    server.bodies.clear()
    ids = prelabels["id"].tolist()
    report = add_reasoning(RunDir(run), {ids[0], ids[2]})
    assert (report.asked, report.added, report.label_changed, report.failed, report.model_calls) == (2, 2, 0, 0, 2)
    assert _schemas(server) == [["label", "confidence", "reasoning"]] * 2  # the full answer, same prompt
    first = [body["messages"] for body in server.bodies]
    kept = pd.read_parquet(run / REASONING_FILE)
    assert sorted(kept["id"]) == sorted([ids[0], ids[2]]) and kept["reasoning"].eq("fake").all()
    filled = RunDir(run).with_reasoning(prelabels)
    assert filled["reasoning"].tolist() == ["fake", None, "fake", None, None]

    server.bodies.clear()  # a rerun asks nothing: the file has them
    assert add_reasoning(RunDir(run), {ids[0], ids[2]}).asked == 0 and server.requests == 7
    (run / REASONING_FILE).unlink()  # and without the file, the cache answers
    again = add_reasoning(RunDir(run), {ids[0], ids[2]})
    assert (again.asked, again.added, again.model_calls) == (2, 2, 0) and server.requests == 7
    assert (run / REASONING_CACHE).is_file()

    # the second call's prompt is the pre-label's: the same messages as the first run asked with
    server.bodies.clear()
    _prelabel(tmp_path, server, "all", tmp_path / "run_all")
    by_text = {body["messages"][-1]["content"]: body["messages"] for body in server.bodies}
    assert all(messages == by_text[messages[-1]["content"]] for messages in first)


def test_a_second_answer_with_another_label_keeps_no_reasoning(tmp_path: Path, server) -> None:
    run = tmp_path / "run"
    ids = _prelabel(tmp_path, server, "review_only", run)["id"].tolist()
    server.faults.extend(["flip_label"])
    report = add_reasoning(RunDir(run), {ids[1]})
    assert (report.asked, report.added, report.label_changed) == (1, 0, 1)
    assert not (run / REASONING_FILE).exists()  # a reasoning for another label would argue against the suggestion


def test_blind_records_get_no_reasoning_and_other_modes_ask_nothing(tmp_path: Path, server) -> None:
    run = tmp_path / "run"
    prelabels = _prelabel(tmp_path, server, "review_only", run)
    queue = prelabels.assign(route="human_review", priority=0.5, blind=[False, True, False, True, False])
    filled, report = reasoning_for_review(RunDir(run), queue)
    assert report.asked == 3 and filled["reasoning"].notna().tolist() == [True, False, True, False, True]

    for mode in ("all", "none"):
        other = tmp_path / f"run_{mode}"
        frame = _prelabel(tmp_path, server, mode, other)
        assert frame["reasoning"].notna().all() == (mode == "all")
        requests = server.requests
        assert add_reasoning(RunDir(other), set(frame["id"])).asked == 0 and server.requests == requests


def test_a_mode_is_part_of_the_cache_key(tmp_path: Path, server) -> None:
    run = tmp_path / "run"
    _prelabel(tmp_path, server, "review_only", run)
    assert server.requests == 5
    _prelabel(tmp_path, server, "review_only", run)
    assert server.requests == 5  # cached
    again = _prelabel(tmp_path, server, "all", run)
    assert server.requests == 10 and again["reasoning"].eq("fake").all()  # an answer with its reasoning is another
