"""`labeltriage calibrate` and `labeltriage route` on a synthetic run directory."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from labeltriage.cli import main


def make_run(tmp_path, n=1200, seed=0, with_gold_column=False):
    rng = np.random.default_rng(seed)
    true_p = rng.beta(5, 1.5, n)
    correct = rng.random(n) < true_p
    gold = rng.choice(["positive", "negative"], n)
    llm = np.where(correct, gold, np.where(gold == "positive", "negative", "positive"))
    conf = np.clip(true_p**0.25, 0, 1)  # over-confident
    status = np.where(rng.random(n) < 0.03, "failed", "ok")
    conf = np.where(status == "ok", conf, np.nan)
    df = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "text": [f"text {i}" for i in range(n)],
            "llm_label": np.where(status == "ok", llm, None),
            "llm_confidence": conf,
            "confidence_stated": conf,
            "status": status,
        }
    )
    if with_gold_column:
        df["gold_label"] = gold
    run = tmp_path / "run"
    run.mkdir()
    df.to_parquet(run / "prelabels.parquet")
    gold_df = pd.DataFrame({"id": df["id"][:600], "gold": gold[:600]})
    gold_df.to_csv(tmp_path / "gold.csv", index=False)
    return run, tmp_path / "gold.csv"


def test_calibrate_then_route(tmp_path):
    run, gold = make_run(tmp_path)
    r = CliRunner().invoke(main, ["calibrate", str(run), "--gold", str(gold), "--gold-column", "gold"])
    assert r.exit_code == 0, r.output
    assert "ece" in r.output
    rep = json.loads((run / "calibration.json").read_text())
    held = rep["held_out"]
    assert held["n_held_out"] == round(0.3 * rep["n_gold"]) and held["after"]["ece"] <= 0.5 * held["before"]["ece"]
    assert (run / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((run / "calibrator.json").read_text())["method"] == "isotonic"

    r = CliRunner().invoke(main, ["route", str(run), "--target-precision", "0.9", "--spot-check-rate", "0.1"])
    assert r.exit_code == 0, r.output
    routed = pd.read_parquet(run / "routed.parquet")
    assert {"calibrated_confidence", "route", "priority"} <= set(routed.columns)
    assert set(routed.loc[routed.status == "failed", "route"]) == {"human_review"}
    rep = json.loads((run / "routing.json").read_text())
    thr = rep["threshold"]
    assert thr["achievable"] and thr["lower_bound"] >= 0.9
    auto = routed.route.isin(["auto_accept", "spot_check"])
    assert (routed.loc[auto, "calibrated_confidence"] >= thr["threshold"]).all()
    assert rep["routes"]["spot_check"] == round(0.1 * auto.sum())
    assert rep["errors_caught"][0]["errors_caught_share"] > rep["errors_caught"][0]["random_share"]
    # same seed, same routes
    CliRunner().invoke(main, ["route", str(run), "--target-precision", "0.9", "--spot-check-rate", "0.1"])
    assert (pd.read_parquet(run / "routed.parquet").route == routed.route).all()


@pytest.mark.parametrize("method", ["temperature", "platt", "histogram"])
def test_calibrate_methods_with_gold_in_prelabels(tmp_path, method):
    run, _ = make_run(tmp_path, with_gold_column=True)
    r = CliRunner().invoke(
        main, ["calibrate", str(run), "--method", method, "--confidence-column", "confidence_stated"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads((run / "calibrator.json").read_text())["method"] == method


def test_errors_name_the_file_and_fix(tmp_path):
    run, gold = make_run(tmp_path)
    r = CliRunner().invoke(main, ["calibrate", str(run), "--gold", str(gold)])
    assert r.exit_code != 0 and "no gold label column (looked for gold_label or label" in r.output
    assert "--gold-column" in r.output
    r = CliRunner().invoke(main, ["calibrate", str(run)])
    assert r.exit_code != 0 and "pass --gold FILE" in r.output
    r = CliRunner().invoke(main, ["route", str(run)])
    assert r.exit_code != 0 and "labeltriage calibrate" in r.output
    r = CliRunner().invoke(main, ["calibrate", str(tmp_path), "--gold", str(gold)])
    assert r.exit_code != 0 and "prelabels.parquet not found" in r.output
    r = CliRunner().invoke(
        main, ["calibrate", str(run), "--gold", str(gold), "--gold-column", "gold", "--confidence-column", "x"]
    )
    assert r.exit_code != 0 and "no column 'x'" in r.output
    pd.DataFrame({"id": ["r0", "r1"], "gold": ["a", "b"]}).to_csv(tmp_path / "small.csv", index=False)
    r = CliRunner().invoke(
        main, ["calibrate", str(run), "--gold", str(tmp_path / "small.csv"), "--gold-column", "gold"]
    )
    assert r.exit_code != 0 and "need >= 10" in r.output


def test_unreachable_target_routes_everything_to_review(tmp_path):
    run, gold = make_run(tmp_path)
    assert (
        CliRunner().invoke(main, ["calibrate", str(run), "--gold", str(gold), "--gold-column", "gold"]).exit_code == 0
    )
    r = CliRunner().invoke(main, ["route", str(run), "--target-precision", "0.9999"])
    assert r.exit_code == 0 and "everything goes to human review" in r.output
    assert set(pd.read_parquet(run / "routed.parquet").route) == {"human_review"}


def test_help_has_examples():
    for cmd in ("calibrate", "route"):
        r = CliRunner().invoke(main, [cmd, "--help"])
        assert r.exit_code == 0 and "Examples:" in r.output and "labeltriage " + cmd in r.output
