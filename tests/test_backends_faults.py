"""The `openai` backend against a fault-injecting OpenAI-compatible HTTP server (real HTTP, real
`openai` client): retries on 429/5xx, bad answers retried then failed with raw output kept,
timeouts, concurrency limit, budget stop, resume and cache invalidation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from labeltriage.config import TaskConfig, load_task_config
from pipelines.io import record_id
from pipelines.runner import run_prelabel, with_overrides
from pipelines.steps import TRUNCATION_MARK
from tests.support.llm_fake_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]


def openai_config(base_url: str, *, concurrency: int = 1, max_retries: int = 2, **model: object) -> TaskConfig:
    config = with_overrides(load_task_config(ROOT / "datasets_config" / "sentiment.yaml"), "openai", "fake")
    update = {"base_url": base_url, "concurrency": concurrency, "max_retries": max_retries, **model}
    return config.model_copy(update={"model": config.model.model_copy(update=update)})


def records(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": [record_id("test", t) for t in texts], "text": texts, "source": "test"})


TEXTS = ["a positive review", "a negative review", "neutral, really", "mixed feelings", "positive again"]


def test_http_429_and_500_are_retried_with_backoff(tmp_path: Path) -> None:
    with FakeOpenAIServer(faults=["429", "500"]) as server:
        result = run_prelabel(openai_config(server.base_url), records(TEXTS[:2]), tmp_path, show_progress=False)
    frame = result.frame
    assert frame["status"].tolist() == ["ok", "ok"]
    assert frame["llm_label"].tolist() == ["positive", "negative"]
    assert server.requests == 4  # 2 refused + 2 answered: the HTTP client retried, not our task
    assert frame["attempts"].tolist() == [1, 1]


def test_http_retries_exhausted_then_the_task_retries(tmp_path: Path) -> None:
    # max_retries=2: the client makes 3 HTTP attempts, then our task asks once more
    with FakeOpenAIServer(faults=["429", "500", "429"]) as server:
        result = run_prelabel(openai_config(server.base_url), records(TEXTS[:1]), tmp_path, show_progress=False)
    assert result.frame["status"].tolist() == ["ok"]
    assert result.frame["attempts"].tolist() == [2]
    assert server.requests == 4


@pytest.mark.parametrize("fault", ["garbage_json", "bad_label", "bad_confidence", "no_confidence"])
def test_bad_answer_is_retried_then_ok(tmp_path: Path, fault: str) -> None:
    with FakeOpenAIServer(faults=[fault]) as server:
        result = run_prelabel(openai_config(server.base_url), records(TEXTS[:1]), tmp_path, show_progress=False)
    row = result.frame.iloc[0]
    assert row["status"] == "ok"
    assert row["attempts"] == 2
    assert server.completions == 2


def test_persistent_bad_answers_fail_with_raw_output_kept(tmp_path: Path) -> None:
    faults = ["garbage_json", "bad_label", "bad_confidence"]  # max_retries=2: three attempts
    with FakeOpenAIServer(faults=faults) as server:
        config = openai_config(server.base_url)
        result = run_prelabel(config, records(TEXTS[:1]), tmp_path, show_progress=False)
        failed = result.frame.iloc[0]
        assert failed["status"] == "failed"
        assert failed["attempts"] == 3
        assert "confidence_out_of_range" in failed["error"] and "after 3 attempts" in failed["error"]
        assert '"confidence": 7' in failed["raw_output"]
        assert failed["llm_label"] is None and pd.isna(failed["llm_confidence"])
        # a record that failed on its answers is finished: a rerun does not ask again
        before = server.requests
        rerun = run_prelabel(config, records(TEXTS[:2]), tmp_path, show_progress=False)
        assert server.requests == before + 1  # only the new record
        assert rerun.frame["status"].tolist() == ["failed", "ok"]


def test_non_json_http_body_and_timeouts_fail_and_are_retried_next_run(tmp_path: Path) -> None:
    with FakeOpenAIServer(faults=["http_garbage", "hang"], hang_s=1.5) as server:
        config = openai_config(server.base_url, max_retries=0, timeout_s=0.5)
        result = run_prelabel(config, records(TEXTS[:3]), tmp_path, show_progress=False)
        frame = result.frame
        assert len(frame) == 3
        assert frame["status"].tolist() == ["failed", "failed", "ok"]
        assert frame["error"].iloc[0].startswith("backend_error")
        assert frame["error"].iloc[1].startswith("backend_error") and "Timeout" in frame["error"].iloc[1]
        # transport failures are not cached: the rerun asks for exactly those two again
        before = server.completions
        rerun = run_prelabel(config, records(TEXTS[:3]), tmp_path, show_progress=False)
        assert server.completions - before == 2
        assert rerun.frame["status"].tolist() == ["ok", "ok", "ok"]


def test_empty_and_too_long_texts(tmp_path: Path) -> None:
    long_text = "Opening line. " + "positive " * 500 + "Verdict: keep it."
    with FakeOpenAIServer() as server:
        config = openai_config(server.base_url)
        result = run_prelabel(config, records(["", "   ", long_text, "negative"]), tmp_path, show_progress=False)
    frame = result.frame
    assert frame["status"].tolist() == ["failed", "failed", "ok", "ok"]
    assert frame["error"].iloc[0].startswith("empty_text")
    assert frame["truncated"].tolist() == [False, False, True, False]
    assert "truncated to 2000 characters" in frame["error"].iloc[2]
    assert server.completions == 2  # no call for empty texts
    sent = server.bodies[0]["messages"][-1]["content"]
    # head and tail kept (1000 characters each side of the mark), the middle cut
    assert "<text>\nOpening line. positive" in sent and "positive Verdict: keep it.\n</text>" in sent
    assert TRUNCATION_MARK in sent and long_text not in sent
    assert len(sent) == len("<text>\n\n</text>") + 2000
    assert result.summary["totals"]["truncated"] == 1


def test_concurrency_limit_is_respected(tmp_path: Path) -> None:
    texts = [f"review number {i} positive" for i in range(24)]
    with FakeOpenAIServer(delay_s=0.05) as server:
        config = openai_config(server.base_url, concurrency=4)
        result = run_prelabel(config, records(texts), tmp_path, batch_size=24, show_progress=False)
    assert (result.frame["status"] == "ok").all()
    assert 1 < server.max_in_flight <= 4


def test_max_cost_stops_before_budget_and_keeps_finished_work(tmp_path: Path) -> None:
    texts = [f"review {i} positive" for i in range(12)]
    # $10 per 1M tokens both ways; a call reserves prompt/3 + 32 tokens in and 128 out.
    price = {"input": 10.0, "output": 10.0}
    with FakeOpenAIServer() as server:
        config = openai_config(server.base_url, concurrency=2)
        config = config.model_copy(
            update={"model": config.model.model_copy(update={"price": config.model.price.model_copy(update=price)})}
        )
        result = run_prelabel(config, records(texts), tmp_path, max_cost=0.02, batch_size=2, show_progress=False)
        summary, frame = result.summary, result.frame
        assert len(frame) == 12  # rows in = rows out, also when stopped
        assert summary["stopped"] == "max_cost" and not summary["complete"]
        assert summary["totals"]["cost_usd_this_run"] <= 0.02
        done = frame[frame["status"] == "ok"]
        assert 0 < len(done) < 12
        assert done["cost_usd"].sum() == pytest.approx(len(done) * 120 * 10 / 1e6)
        not_run = frame[frame["status"] == "failed"]
        assert not_run["error"].str.startswith("not_run").all()
        # the finished work is kept: a rerun with a larger budget only pays for the rest
        before = server.completions
        rerun = run_prelabel(config, records(texts), tmp_path, max_cost=1.0, show_progress=False)
        assert server.completions - before == len(not_run)
        assert (rerun.frame["status"] == "ok").all()


def test_resume_and_invalidation(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        config = openai_config(server.base_url, concurrency=4)
        first = run_prelabel(config, records(TEXTS), tmp_path, show_progress=False)
        assert first.stats.calls == 5
        again = run_prelabel(config, records(TEXTS), tmp_path, show_progress=False)
        assert again.stats.calls == 0
        pd.testing.assert_frame_equal(first.frame, again.frame)
        # one new text costs one call
        grown = run_prelabel(config, records([*TEXTS, "brand new positive"]), tmp_path, show_progress=False)
        assert grown.stats.calls == 1
        # self-consistency switched on: only the k samples run, the main answers stay cached
        sampled = config.model_copy(
            update={"confidence": config.confidence.model_copy(update={"consistency_samples": 3})}
        )
        with_k = run_prelabel(sampled, records(TEXTS), tmp_path, show_progress=False)
        assert with_k.stats.calls == 5 * 3
        assert with_k.frame["confidence_consistency"].tolist() == [1.0] * 5
        # a changed prompt invalidates every answer
        changed = config.model_copy(update={"guidelines": config.guidelines + "\nBe strict."})
        assert run_prelabel(changed, records(TEXTS), tmp_path, show_progress=False).stats.calls == 5
        # and a changed model too
        other = config.model_copy(update={"model": config.model.model_copy(update={"name": "other"})})
        assert run_prelabel(other, records(TEXTS), tmp_path, show_progress=False).stats.calls == 5


def test_logprob_confidence_from_the_openai_response(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        result = run_prelabel(openai_config(server.base_url), records(TEXTS[:1]), tmp_path, show_progress=False)
    row = result.frame.iloc[0]
    assert server.bodies[0]["logprobs"] is True
    assert server.bodies[0]["response_format"]["schema"]["properties"]["label"]["enum"][0] == "positive"
    assert row["confidence_logprob"] == pytest.approx(0.9003245, rel=1e-5)  # one token at -0.105
    assert row["llm_confidence"] == row["confidence_logprob"]
    assert row["confidence_kind"] == "logprob"
