"""The same steps run by distilabel's own executor (`Pipeline.run`, worker processes, Distiset)."""

from __future__ import annotations

from pathlib import Path

from labeltriage.config import load_task_config
from pipelines.pipeline import build_distilabel_pipeline
from pipelines.runner import with_overrides
from tests.support.llm_fake_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]


def test_distilabel_pipeline_runs_the_same_steps(tmp_path: Path) -> None:
    config = with_overrides(load_task_config(ROOT / "datasets_config" / "sentiment.yaml"), "openai", "fake")
    records = [{"text": "so positive"}, {"text": "negative!"}, {"text": ""}]
    with FakeOpenAIServer() as server:
        config = config.model_copy(update={"model": config.model.model_copy(update={"base_url": server.base_url})})
        pipeline = build_distilabel_pipeline(config, records, batch_size=2, cache_dir=str(tmp_path))
        names = set(pipeline.dag.G.nodes)
        assert {"load_records", "prepare_text", "prelabel", "finalize"} <= names
        distiset = pipeline.run(use_cache=False)
    frame = distiset["default"]["train"].to_pandas().sort_values("text", ascending=False)
    assert len(frame) == 3  # rows in = rows out
    assert frame["status"].tolist() == ["ok", "ok", "failed"]
    assert frame["llm_label"].tolist()[:2] == ["positive", "negative"]
    assert server.completions == 2
