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


def test_demo_config_gives_each_demo_its_own_dataset_and_refuses_mixing(tmp_path: Path) -> None:
    import re

    from labeltriage.config import load_task_config
    from labeltriage.demo import demo_config, demo_input
    from labeltriage.errors import InputError

    run = tmp_path / "demo"
    settings = {"config": "sentiment_3class", "records": 500, "gold": 120, "seed": 1, "model": None}
    shipped = load_task_config("sentiment_3class")
    task = demo_config(shipped, run, settings)
    name = task.argilla.dataset
    assert re.fullmatch(rf"{re.escape(shipped.argilla.dataset)}-demo-[0-9a-f]{{6}}", name)
    assert task.source_path == str(run / "demo_config.yaml")
    # the shipped config but for its dataset and the reasoning asked only of records pushed with the suggestion
    assert task.model.generation.reasoning == "review_only" and shipped.model.generation.reasoning == "all"
    generation = shipped.model.generation.model_copy(update={"reasoning": "review_only"})
    expected = shipped.model_copy(update={"model": shipped.model.model_copy(update={"generation": generation})})
    assert task.model_dump(exclude={"argilla"}) == expected.model_dump(exclude={"argilla"})
    assert demo_config(shipped, run, settings).argilla.dataset == name  # a rerun keeps its dataset
    # a start that failed before pushing (a typo in --model) may be retried with other settings
    assert demo_config(shipped, run, {**settings, "model": "smolm2"}).argilla.dataset == name
    demo_config(shipped, run, settings)
    (run / "push.json").write_text("{}")
    with pytest.raises(
        InputError, match=r"demo holds a demo made with config sentiment_3class, records 500.*--run-dir"
    ):
        demo_config(shipped, run, {**settings, "records": 60, "model": "smollm2"})
    # the same folder name elsewhere, or the directory deleted and made again: another dataset
    assert demo_config(shipped, tmp_path / "other" / "demo", settings).argilla.dataset != name
    # a run of an earlier version (answers, no demo.json) is not mixed into a new demo
    old = tmp_path / "old"
    old.mkdir()
    (old / "responses.parquet").write_text("")
    with pytest.raises(InputError, match=r"no demo.json \(an earlier version\)"):
        demo_config(shipped, old, settings)
    with pytest.raises(InputError, match=r"--records 10 --gold 20: the demo needs 0 < gold <= records"):
        demo_input(10, 20, tmp_path / "small")
