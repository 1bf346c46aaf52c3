"""`calibrate --confidence-column confidence_combined` on real pre-labels (Qwen 1.5B on 300 Rotten
Tomatoes snippets, benchmarks/results) with the shipped MiniLM embeddings: the combined confidence
is cross-fitted on the gold, written beside the run, and route certifies on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

import labeltriage as lt

ROOT = Path(__file__).resolve().parents[1]
PRELABELS = ROOT / "benchmarks" / "results" / "prelabels_qwen_sentiment_3class_rotten_tomatoes.parquet"
pytestmark = pytest.mark.llm  # loads the embedding model


@pytest.fixture
def real_run(tmp_path: Path) -> tuple[Path, Path]:
    frame = pd.read_parquet(PRELABELS)
    run = tmp_path / "run"
    run.mkdir()
    config = yaml.safe_load((ROOT / "datasets_config" / "sentiment_3class.yaml").read_text())
    config["confidence"]["combined"] = True
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(config))
    frame.drop(columns=["gold_label"]).to_parquet(run / "prelabels.parquet", index=False)
    run_json = {"config": str(tmp_path / "task.yaml"), "model_identity": "qwen", "prompt_hash": "h"}
    (run / "run.json").write_text(json.dumps(run_json))
    gold = frame.sample(n=150, random_state=0)[["id", "gold_label"]]
    gold.to_csv(tmp_path / "gold.csv", index=False)
    return run, tmp_path / "gold.csv"


def test_combined_confidence_is_cross_fitted_and_certified(real_run: tuple[Path, Path]) -> None:
    run, gold = real_run
    result = lt.calibrate(run, gold=gold)  # the config says confidence.combined
    combined = result.report["combined"]
    assert result.report["confidence_column"] == "confidence_combined"
    assert {"logprob", "distribution_top", "knn_agreement", "student_agreement"} <= set(combined["signals"])
    scores = pd.read_parquet(run / "combined_confidence.parquet")
    frame = pd.read_parquet(PRELABELS)
    assert scores["id"].tolist() == frame["id"].tolist() and scores["confidence_combined"].between(0, 1).all()
    # every gold score comes from a model that never saw that record: it ranks the gold's own
    # errors about as well as the record's log-prob does, not perfectly (an in-sample fit would)
    in_gold = frame["id"].isin(pd.read_csv(gold)["id"]).to_numpy()
    correct = (frame["llm_label"] == frame["gold_label"]).to_numpy()
    gold_auroc = roc_auc_score(correct[in_gold], scores["confidence_combined"].to_numpy()[in_gold])
    assert 0.6 < gold_auroc < 0.97
    routed = lt.route(run, target_precision=0.9)
    assert routed.report["confidence_column"] == "confidence_combined"
    assert routed.report["certificate_identity"]["confidence_column"] == "confidence_combined"
    t = routed.report["threshold"]
    if t["achievable"]:
        above = scores["confidence_combined"].to_numpy() >= t["threshold"]
        assert np.isclose(t["coverage_pool"], above.mean(), atol=0.02)
    # one signal instead: the flag overrides the config, and route follows the new calibrator
    lt.calibrate(run, gold=gold, confidence_column="llm_confidence")
    assert lt.route(run, target_precision=0.9).report["confidence_column"] == "llm_confidence"
