"""`openai-batch` through distilabel's offline batch route, against an HTTP double of OpenAI's
Files + Batches API: submit, exit pending, rerun to collect, match by custom_id, no resubmission."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml
from click.testing import CliRunner

from labeltriage.cli import main
from tests.support.llm_fake_batch_server import FakeBatchServer

ROOT = Path(__file__).resolve().parents[1]


def test_openai_batch_submit_then_collect(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    texts = ["so positive", "very negative", "neutral stuff", "mixed bag", ""]
    data = tmp_path / "in.csv"
    pd.DataFrame({"text": texts}).to_csv(data, index=False)
    out = tmp_path / "run"
    with FakeBatchServer(polls_before_done=1, bad_custom_ids=("1",)) as server:
        # the endpoint named in the config, so the config's price is this endpoint's price (a local
        # --base-url would not be billed at it: test_honest_figures)
        config = yaml.safe_load((ROOT / "datasets_config" / "sentiment.yaml").read_text())
        config["model"]["base_url"] = server.base_url
        (tmp_path / "batch.yaml").write_text(yaml.safe_dump(config))
        args = ["prelabel", str(tmp_path / "batch.yaml"), str(data), "--output", str(out)]
        args += ["--backend", "openai-batch", "--model", "gpt-4o-mini", "--quiet"]
        first = CliRunner().invoke(main, args, catch_exceptions=False)
        assert first.exit_code == 3, first.output  # submitted, pending
        assert len(server.batches) == 1
        frame = pd.read_parquet(out / "prelabels.parquet")
        assert len(frame) == 5
        assert frame["error"].iloc[:4].str.startswith("pending_batch").all()
        assert json.loads((out / "run.json").read_text())["pending_batch"].startswith("submitted 4 requests")
        second = CliRunner().invoke(main, args, catch_exceptions=False)  # still in progress
        assert second.exit_code == 3, second.output
        third = CliRunner().invoke(main, args, catch_exceptions=False)  # completed: collect
        # collected; 2 records failed (a bad answer, an empty text): exit 4 and one red line says so
        assert third.exit_code == 4, third.output
        assert "2 of 5 records failed (label_not_in_set 1, empty_text 1): see the error column of" in " ".join(
            third.output.split()
        )
        assert len(server.batches) == 1  # never resubmitted
        requests = server.uploaded_requests
        assert len(requests) == 4
        assert requests[0]["body"]["response_format"]["type"] == "json_schema"
    frame = pd.read_parquet(out / "prelabels.parquet")
    assert frame["status"].tolist() == ["ok", "failed", "ok", "ok", "failed"]
    assert frame["llm_label"].tolist()[:1] + frame["llm_label"].tolist()[2:4] == ["positive", "neutral", "mixed"]
    assert "label_not_in_set" in frame["error"].iloc[1] and frame["raw_output"].iloc[1]
    assert frame["error"].iloc[4].startswith("empty_text")
    assert (frame.loc[frame["status"] == "ok", "cost_usd"] > 0).all()
    assert not (out / "batch_jobs.json").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] and run["totals"]["records"] == 5
    assert run["totals"]["failed_errors"] == 2
    assert run["totals"]["failed_by_reason"] == {"label_not_in_set": 1, "empty_text": 1}
