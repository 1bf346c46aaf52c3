"""`labeltriage prelabel` wiring: input formats, --text-column, --limit, --help, clear errors.
Runs the real pipeline against the fault-injection HTTP server (fast; no model)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pandas as pd
import pytest
from click.testing import CliRunner

from labeltriage.cli import main
from pipelines.io import record_id
from tests.support.llm_fake_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "datasets_config" / "sentiment.yaml")
TEXTS = ["positive vibes", "a negative take", "so neutral"]


def _invoke(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture()
def server():
    with FakeOpenAIServer() as fake:
        yield fake


def _inputs(tmp_path: Path) -> dict[str, Path]:
    frame = pd.DataFrame({"review": TEXTS, "label": ["positive", "negative", "neutral"]})
    paths = {
        "jsonl": tmp_path / "in.jsonl",
        "csv": tmp_path / "in.csv",
        "parquet": tmp_path / "in.parquet",
        "dataset": tmp_path / "saved",
    }
    frame.to_json(paths["jsonl"], orient="records", lines=True)
    frame.to_csv(paths["csv"], index=False)
    frame.to_parquet(paths["parquet"], index=False)
    datasets.Dataset.from_pandas(frame).save_to_disk(str(paths["dataset"]))
    return paths


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "dataset"])
def test_input_formats(tmp_path: Path, server: FakeOpenAIServer, kind: str) -> None:
    source = _inputs(tmp_path)[kind]
    out = tmp_path / f"run-{kind}"
    args = ["prelabel", CONFIG, str(source), "-o", str(out), "--text-column", "review", "--quiet"]
    result = _invoke([*args, "--backend", "openai", "--model", "fake", "--base-url", server.base_url])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out / "prelabels.parquet")
    assert frame["text"].tolist() == TEXTS
    assert frame["llm_label"].tolist() == ["positive", "negative", "neutral"]
    assert frame["gold_label"].tolist() == ["positive", "negative", "neutral"]
    assert frame["id"].tolist() == [record_id(source.name, t) for t in TEXTS]
    run = json.loads((out / "run.json").read_text())
    assert run["totals"]["records"] == 3 and run["totals"]["ok"] == 3
    assert run["config"] == CONFIG and run["backend"] == "openai"


def test_limit_and_summary(tmp_path: Path, server: FakeOpenAIServer) -> None:
    source = _inputs(tmp_path)["csv"]
    args = ["prelabel", CONFIG, str(source), "-o", str(tmp_path / "r"), "--text-column", "review", "--limit", "2"]
    result = _invoke([*args, "--backend", "openai", "--model", "fake", "--base-url", server.base_url])
    assert result.exit_code == 0
    assert len(pd.read_parquet(tmp_path / "r" / "prelabels.parquet")) == 2
    assert "cache hits / model calls" in result.output and "0 / 2" in result.output


def test_help_has_examples() -> None:
    result = _invoke(["prelabel", "--help"])
    assert result.exit_code == 0
    for word in ("Examples:", "--max-cost", "--text-column", "openai-batch", "resumes"):
        assert word in result.output


def test_errors_say_what_to_do(tmp_path: Path, monkeypatch) -> None:
    source = _inputs(tmp_path)["csv"]
    missing = _invoke(["prelabel", CONFIG, str(source), "-o", str(tmp_path / "x"), "--model", "smollm2"])
    assert missing.exit_code == 65  # InputError (labeltriage.errors)
    assert "no column 'text'" in missing.output and "--text-column" in missing.output
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    args = ["prelabel", CONFIG, str(source), "-o", str(tmp_path / "y"), "--text-column", "review"]
    no_key = _invoke([*args, "--backend", "openai", "--base-url", "https://api.example.com/v1"])
    assert no_key.exit_code == 69 and "export OPENAI_API_KEY" in no_key.output
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text(
        (ROOT / "datasets_config" / "sentiment.yaml").read_text().replace("backend: local", "backend: olama")
    )
    bad = _invoke(["prelabel", str(bad_config), str(source), "-o", str(tmp_path / "z")])
    assert bad.exit_code == 78 and "model.backend" in bad.output and str(bad_config) in bad.output
