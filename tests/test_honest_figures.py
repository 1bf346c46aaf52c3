"""Figures that say what they are (issue 17 point 8): the confidence kind each record carries, no
calibration on a mixture of kinds, and no cost borrowed from another endpoint's price."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import labeltriage as lt
from labeltriage.api import _priced_for_endpoint
from tests.support.llm_fake_server import FakeOpenAIServer

TEXTS = ["a positive review", "a negative review", "neutral, really", "mixed feelings", "positive again"]


def _input(tmp_path: Path, n: int = 12) -> Path:
    path = tmp_path / "in.csv"
    texts = [f"{TEXTS[i % len(TEXTS)]} number {i}" for i in range(n)]
    pd.DataFrame({"text": texts, "label": ["positive" if i % 3 else "negative" for i in range(n)]}).to_csv(
        path, index=False
    )
    return path


def test_a_server_without_log_probs_is_said_and_a_mixture_is_not_calibrated(tmp_path: Path) -> None:
    """The server ignored the log-probs request: every record fell back to the stated confidence
    while run.json still said logprob, and nothing said so."""
    source = _input(tmp_path)
    with FakeOpenAIServer(logprobs=False) as server:
        run = lt.prelabel("sentiment", source, tmp_path / "run", backend="openai", model="fake",
                          base_url=server.base_url)  # fmt: skip
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["confidence_routing"] == "logprob"
    assert summary["totals"]["confidence_kinds"] == {"stated": 12}
    assert set(run.frame["confidence_kind"]) == {"stated"}
    # asking for the kind the run does not have is refused, with the fix
    with pytest.raises(lt.InputError, match="confidence_logprob is missing on 12 ok record"):
        lt.calibrate(tmp_path / "run", confidence_column="confidence_logprob")
    # a mixture of kinds in llm_confidence is refused too
    frame = pd.read_parquet(tmp_path / "run" / "prelabels.parquet")
    frame.loc[:5, "confidence_kind"] = "logprob"
    frame.to_parquet(tmp_path / "run" / "prelabels.parquet", index=False)
    with pytest.raises(
        lt.InputError,
        match=r"llm_confidence mixes kinds \(logprob 6, stated 6\): the backend gave no logprob confidence for some",
    ):
        lt.calibrate(tmp_path / "run")


def test_a_local_endpoint_is_not_billed_at_the_hosted_price(tmp_path: Path) -> None:
    """`--backend openai --base-url http://127.0.0.1...` with the shipped config (gpt-4o-mini's
    price) reported a cost for a local server."""
    with FakeOpenAIServer() as server:
        lt.prelabel("sentiment", _input(tmp_path, 3), tmp_path / "run", backend="openai", model="fake",
                    base_url=server.base_url)  # fmt: skip
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["cost_basis"].startswith("not billed: a local endpoint")
    assert summary["totals"]["cost_usd"] == 0.0 and summary["totals"]["input_tokens"] > 0


def test_another_endpoint_has_no_borrowed_price() -> None:
    task = lt.load_task_config("sentiment")
    task = task.model_copy(update={"model": task.model.model_copy(update={"backend": "openai"})})
    priced, basis = _priced_for_endpoint(task, "https://llm.example.com/v1")
    assert basis.startswith("unknown: model.price is for the OpenAI API, not https://llm.example.com/v1")
    assert priced.model.price.input == 0 and priced.model.base_url == "https://llm.example.com/v1"
    kept, basis = _priced_for_endpoint(task, None)
    assert kept.model.price.input == 0.15 and basis.startswith("model.price of the task config: $0.15")
    assert _priced_for_endpoint(task, "http://10.0.0.7:8000/v1")[1].startswith("not billed: a local endpoint")


def test_a_server_that_refuses_log_probs_is_asked_again_without_them(tmp_path: Path) -> None:
    """A 400 to the logprobs option: the request is repeated once without it and the run goes on on
    stated confidence (said per record); a 400 for another reason is not retried forever."""
    with FakeOpenAIServer(logprobs="refuse") as server:
        run = lt.prelabel("sentiment", _input(tmp_path, 4), tmp_path / "run", backend="openai", model="fake",
                          base_url=server.base_url)  # fmt: skip
        asked = [bool(body.get("logprobs")) for body in server.bodies]
    assert set(run.frame["status"]) == {"ok"}
    assert set(run.frame["confidence_kind"]) == {"stated"}
    # each request sent with log-probs (those in flight before the first refusal came back) was
    # refused and sent once more without; one answered request per record
    assert asked[0] and asked.count(False) == 4 and len(asked) == 4 + asked.count(True)
