"""`labeltriage demo`, the main job, end to end on a stack of its own (SmolLM2 so it takes minutes):
every step runs, every record is accounted for in the published set, the report and the UI login
are printed, and a rerun makes no model call and sends no answer twice."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from labeltriage.cli import main
from tests.conftest import free_port

pytestmark = [pytest.mark.llm, pytest.mark.timeout(1500)]
RECORDS, GOLD = 40, 20


@pytest.fixture
def stack_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from argilla_stack.stack import Stack

    home = tmp_path / "stack"
    monkeypatch.setenv("LABELTRIAGE_STACK_HOME", str(home))
    for name in ("ARGILLA_API_URL", "ARGILLA_API_KEY"):  # the demo must use its own stack
        monkeypatch.delenv(name, raising=False)
    yield home
    Stack(home).down(log=lambda *_: None)


def test_demo_runs_the_whole_loop_and_reruns_idempotently(tmp_path: Path, stack_home: Path) -> None:
    run = tmp_path / "run"
    port = free_port()
    args = ["demo", "--model", "smollm2", "--records", str(RECORDS), "--gold", str(GOLD)]
    args += ["--run-dir", str(run), "--port", str(port)]
    first = CliRunner().invoke(main, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    for step in range(1, 10):
        assert f"[{step}/9]" in first.output
    assert f"http://127.0.0.1:{port}" in first.output
    # every queued record has its answers: the closing says so and how to get more (it opened on
    # "The task is completed!" before), with the queue's link sorted by priority
    assert "no reviewer has work left" in first.output and "--include-auto" in first.output
    assert f"http://127.0.0.1:{port}/dataset/" in first.output
    assert "/annotation-mode?sort=metadata.priority.desc" in first.output
    assert "records a human labels (review, blind audit, gold):" in first.output

    routed = pd.read_parquet(run / "routed.parquet")
    assert len(routed) == RECORDS
    # the calibration step and the effort report count the same gold records the same way
    calibrated = re.search(rf"gold: {GOLD} records, LLM accuracy ([0-9.]+)", first.output)
    reported = re.search(rf"LLM accuracy on gold: ([0-9.]+)% \(n={GOLD}: every gold record", first.output)
    assert calibrated and reported, first.output
    assert float(calibrated.group(1)) * 100 == pytest.approx(float(reported.group(1)), abs=0.1)
    queued = int(routed["route"].isin(["human_review", "spot_check"]).sum())
    copies = int(routed["review_audit"].sum())  # the review audits' blind copies: three auditors each
    assert copies >= 1 and f"{3 * queued + 3 * copies} answers sent" in first.output
    # the push's counts add up: the audit copies are rows of the queue, not records
    assert f"{copies} of the rows in the queue are second, blind copies of reviewed records" in first.output

    # records in = records out: each one published or waiting for adjudication, with its source
    published = pd.read_parquet(run / "published" / "final.parquet")
    adjudication_file = run / "published" / "adjudication.parquet"
    adjudication = pd.read_parquet(adjudication_file) if adjudication_file.exists() else published.iloc[:0]
    assert len(published) + len(adjudication) == RECORDS
    assert set(published["id"]).isdisjoint(adjudication["id"])
    assert set(published["label_source"]) <= {"human", "consensus", "llm_auto", "gold"}
    # the gold records publish their gold label, never the LLM's
    gold = routed[routed["route"] == "gold"].set_index("id")
    assert len(gold) == GOLD and gold["gold_label"].notna().all()
    published_gold = published[published["label_source"] == "gold"].set_index("id")
    assert set(published_gold.index) == set(gold.index)
    assert (published_gold["label"] == gold.loc[published_gold.index, "gold_label"]).all()
    auto = set(routed.loc[routed["route"] == "auto_accept", "id"])
    assert set(published.loc[published["label_source"] == "llm_auto", "id"]) == auto

    # every file of the run directory is one docs/CONTRACTS.md describes (input.csv, gold.csv: the demo's inputs)
    from tests.test_contracts import PUBLISHED, documented_run_files

    made = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and p.parent.name != "published"}
    assert made - {"input.csv", "gold.csv"} <= documented_run_files(), made - documented_run_files()
    assert {p.name for p in (run / "published").iterdir()} <= PUBLISHED

    # review_only: the reasoning was asked at push time of the assisted records, and of those only
    assisted = routed[routed["route"].eq("human_review") & ~routed["blind"].astype(bool) & routed["status"].eq("ok")]
    asked = json.loads((run / "push.json").read_text())["reasoning"]
    assert asked["asked"] == len(assisted) >= 1 and asked["added"] + asked["label_changed"] + asked["failed"] == len(
        assisted
    )
    with_reasoning = set(published.loc[published["reasoning"].notna(), "id"])
    assert with_reasoning <= set(assisted["id"]) and len(with_reasoning) <= asked["added"]
    assert "have the LLM's reasoning (review_only" in (run / "published" / "README.md").read_text()

    report = json.loads((run / "agreement.json").read_text())
    assert report["n_reviewers"] == 3 and report["n_records"] == queued
    assert -1.0 <= report["fleiss_kappa"] <= 1.0
    card = (run / "published" / "README.md").read_text()
    assert card.startswith("---")  # a dataset card with metadata
    # the label shares set the published labels' share beside the estimated true share
    assert "| label | share | 95% interval | LLM's share | published share |" in card
    neutral = float((published["label"] == "neutral").mean())
    assert any(line.startswith("| neutral |") and line.endswith(f"| {neutral:.3f} |") for line in card.splitlines())

    second = CliRunner().invoke(main, args, catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert "  0 answers sent" in second.output
    assert json.loads((run / "run.json").read_text())["totals"]["model_calls"] == 0
    again = pd.read_parquet(run / "published" / "final.parquet")
    pd.testing.assert_frame_equal(
        published.sort_values("id").reset_index(drop=True), again.sort_values("id").reset_index(drop=True)
    )
