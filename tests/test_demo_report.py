"""The demo's effort report (labeltriage.demo.effort_report), on real VADER crowd texts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


def test_demo_effort_report_scores_auto_accepted_labels_on_the_crowd_truth(tmp_path) -> None:
    """The demo's "auto-accepted accuracy on gold" line: the LLM labels of auto_accept and
    spot_check records against the VADER crowd's mean label of the same text (never a gold row)."""
    from labeltriage.corpora import vader_ratings
    from labeltriage.demo import SUBSET, effort_report, mean_label

    crowd = vader_ratings(SUBSET).drop_duplicates("text").head(6)
    truth = crowd["mean"].map(mean_label).tolist()
    wrong = {"positive": "negative", "negative": "positive", "neutral": "positive"}
    routed = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(6)],
            "text": crowd["text"].tolist(),
            "llm_label": [truth[0], truth[1], wrong[truth[2]], truth[3], wrong[truth[4]], truth[5]],
            "route": ["auto_accept", "auto_accept", "auto_accept", "spot_check", "human_review", "gold"],
            "gold_label": [None, None, None, None, None, truth[5]],
        }
    )
    routed.to_parquet(tmp_path / "routed.parquet", index=False)
    report = effort_report(tmp_path)
    assert report["n_auto_accepted"] == 4 and report["auto_accepted_accuracy"] == pytest.approx(3 / 4)
    assert report["humans"] == 3 and report["gold_accuracy"] == 1.0


def test_demo_config_names_the_dataset_after_the_run_and_refuses_another_demo(tmp_path: Path) -> None:
    from labeltriage.config import load_task_config
    from labeltriage.demo import demo_config
    from labeltriage.errors import InputError

    run = tmp_path / "demo"
    settings = {"config": "sentiment_3class", "records": 500, "gold": 120, "seed": 1, "model": None}
    shipped = load_task_config("sentiment_3class")
    task = demo_config(shipped, run, settings)
    name = shipped.argilla.dataset
    assert task.argilla.dataset == f"{name}-demo" and task.source_path == str(run / "demo_config.yaml")
    assert task.model_dump(exclude={"argilla"}) == shipped.model_dump(exclude={"argilla"})
    assert demo_config(shipped, run, settings).argilla.dataset == f"{name}-demo"  # a rerun is fine
    with pytest.raises(
        InputError, match=r"demo holds a demo made with config sentiment_3class, records 500.*--run-dir"
    ):
        demo_config(shipped, run, {**settings, "records": 60, "model": "smollm2"})
    assert demo_config(shipped, tmp_path / "demo-60", settings).argilla.dataset == f"{name}-demo-60"
