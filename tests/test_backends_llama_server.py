"""The `openai` backend against a real `python -m llama_cpp.server` (SmolLM2) on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from labeltriage.config import load_task_config
from pipelines.io import record_id
from pipelines.models import resolve_model_path
from pipelines.runner import run_prelabel, with_overrides
from tests.support.llm_servers import llama_cpp_server

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def llama_server() -> str:
    with llama_cpp_server(str(resolve_model_path("smollm2"))) as base_url:
        yield base_url


def test_openai_backend_against_real_llama_cpp_server(tmp_path: Path, llama_server: str) -> None:
    config = with_overrides(load_task_config(ROOT / "datasets_config" / "sentiment.yaml"), "openai", "smollm2")
    config = config.model_copy(update={"model": config.model.model_copy(update={"base_url": llama_server})})
    texts = ["I love it, five stars.", "Terrible, it broke on day one.", "It is a phone."]
    records = pd.DataFrame({"id": [record_id("t", t) for t in texts], "text": texts})
    result = run_prelabel(config, records, tmp_path, show_progress=False)
    frame = result.frame
    assert len(frame) == 3
    assert result.stats.calls >= 3
    ok = frame[frame["status"] == "ok"]
    assert len(ok) >= 2  # the grammar keeps a 135M model on the schema
    assert set(ok["llm_label"]) <= {"positive", "negative", "neutral", "mixed"}
    assert (ok["input_tokens"] > 50).all()
    assert (ok["cost_usd"] > 0).all()  # priced with the config's table (a remote backend)
    # asked for `top_logprobs` (the label distribution), llama.cpp's server returns log-probs (with
    # `logprobs` alone it returned null and the confidence fell back to the stated one)
    assert ok["confidence_logprob"].between(0, 1, inclusive="right").all()
    assert (ok["confidence_kind"] == "logprob").all()
    # resume against the server too
    again = run_prelabel(config, records, tmp_path, show_progress=False)
    transient = int(frame["error"].fillna("").str.startswith("backend_error").sum())
    assert again.stats.calls == transient  # 0 unless a call failed at the transport level
