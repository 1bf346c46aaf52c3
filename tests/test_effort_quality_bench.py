"""benchmarks/effort_quality.py: its core on a tiny configuration (seconds, pure: fast tier)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    # loaded from its path: `benchmarks` is a folder of scripts, not a package
    spec = importlib.util.spec_from_file_location("bench_effort_quality", ROOT / "benchmarks" / "effort_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_one_draw_vader_interval_holds_the_truth() -> None:
    bench = _bench()
    runs = bench.draw_runs(("vader_1rater", "vader_3raters"), np.random.default_rng(3))
    run = runs["vader_3raters"]
    assert run.llm.shape == run.conf.shape == run.truth.shape == (300,)
    assert ((run.conf >= 0) & (run.conf <= 1)).all()
    assert not run.human_is_truth and (run.llm == runs["vader_1rater"].llm).all()  # the two rows share the draw
    gold = np.random.default_rng(0).choice(300, size=120, replace=False)
    row = bench.simulate(run, gold, 0.85, 0.95, 0.05, route_seed=0)
    assert row["accepted"] and row["n_pool"] == 180
    assert 0.0 < row["auto_share"] <= 1.0 and row["saved_share"] <= row["auto_share"]
    assert row["n_audits"] == math.ceil(0.05 * row["n_auto"]) > 0  # route_records' spot checks are the audits
    assert row["llm_auto_low"] <= row["llm_auto_true"] <= row["llm_auto_high"]
    assert row["llm_auto_low"] <= row["llm_auto_est"] <= row["llm_auto_high"]
    assert row["final_est"] is None  # reviewers err: the product cannot state the final accuracy
    assert 0.0 <= row["true_final"] <= 1.0 and 0.0 <= row["all_human"] <= 1.0


def test_unreachable_target_accepts_nothing_and_final_is_the_human_accuracy() -> None:
    bench = _bench()
    res = bench.run(("rotten_tomatoes", "vader_1rater"), (30,), (0.99,), 3, 0.95, 0.05, 7)
    for cell in res["cells"]:
        assert cell["accepting"] == 0.0 and cell["auto_share"]["mean"] == 0.0 and cell["saved_share"]["mean"] == 0.0
        assert cell["final"]["true"]["mean"] == cell["all_human"]["mean"]
        assert cell["llm_auto"]["coverage"] is None and cell["llm_auto"]["violation_run"] == 0.0
    rt = next(c for c in res["cells"] if c["corpus"] == "rotten_tomatoes")
    assert rt["all_human"]["mean"] == 1.0  # the reviewer is the gold label
    assert rt["final"]["estimate"]["mean"] == rt["final"]["low"]["mean"] == 1.0


def test_small_run_writes_json_and_table(tmp_path: Path) -> None:
    bench = _bench()
    out = tmp_path / "eq.json"
    assert bench.main(["--seeds", "3", "--sizes", "120", "--targets", "0.85", "--corpora", "rotten_tomatoes",
                       "--out", str(out)]) == 0  # fmt: skip
    data = json.loads(out.read_text())
    assert data["spot_check_rate"] == 0.05 and data["spot_check_rate_from"] == "datasets_config/sentiment.yaml"
    (cell,) = data["cells"]
    assert 0.0 <= cell["auto_share"]["mean"] <= 1.0 and cell["draws"] == 3
    assert "| rotten_tomatoes | 120 | 0.85 |" in out.with_suffix(".md").read_text()
