"""Retired config keys: ``thresholds.review_below`` (nothing ever read it) is gone from the model
and the shipped configs; a user's config that still has it keeps loading, with a one-line note
naming the file and the fix."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from labeltriage.config import ConfigError, Thresholds, load_task_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "datasets_config").glob("*.yaml"))


def _with_thresholds(tmp_path: Path, thresholds: dict) -> Path:
    data = yaml.safe_load((ROOT / "datasets_config" / "sentiment.yaml").read_text())
    data["thresholds"] = thresholds
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_config_with_review_below_loads_with_a_one_line_note(tmp_path: Path) -> None:
    path = _with_thresholds(tmp_path, {"target_precision": 0.9, "review_below": 0.85, "spot_check_rate": 0.1})
    with pytest.warns(FutureWarning) as caught:
        config = load_task_config(path)
    assert len(caught) == 1
    note = str(caught[0].message)
    assert "\n" not in note
    assert note.startswith(f"{path}: thresholds.review_below is ignored")
    assert "Fix: remove the line" in note
    assert config.thresholds == Thresholds(target_precision=0.9, spot_check_rate=0.1)  # the rest is read
    assert "review_below" not in config.model_dump()["thresholds"]


def test_the_shipped_configs_have_no_retired_key_and_load_silently() -> None:
    assert SHIPPED
    for path in SHIPPED:
        assert "review_below" not in path.read_text(), path
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            load_task_config(path)
    assert "review_below" not in Thresholds.model_fields


def test_other_unknown_threshold_keys_are_still_errors(tmp_path: Path) -> None:
    path = _with_thresholds(tmp_path, {"target_precision": 0.9, "review_bellow": 0.85})
    with pytest.raises(ConfigError, match=r"thresholds\.review_bellow: unknown key"):
        load_task_config(path)
