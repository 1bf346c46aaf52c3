"""docs/CONTRACTS.md matches what the code writes (issue 13): every file a run directory holds, and
the columns and keys of the files other parts read (routed.parquet, routing.json, responses.parquet,
final.parquet, adjudication.parquet, the demo's input.csv and gold.csv), taken from files the
library writes on synthetic data (no server, no model), and the pure-module list of tests/test_layers.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import labeltriage as lt
from tests.test_triage_cli import make_run

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "docs" / "CONTRACTS.md"
PUBLISHED = {"final.parquet", "adjudication.parquet", "agreement.json", "README.md"}
DEMO = {"input.csv", "gold.csv", "demo_config.yaml", "demo.json"}
RUN_JSON = {"model_identity": "local:m.gguf", "prompt_hash": "74698b50fb33177d", "generation_settings": {"seed": 0}}


def _section(heading: str) -> str:
    text = CONTRACTS.read_text()
    assert heading in text, f"CONTRACTS.md has no section {heading!r}"
    return text.split(heading, 1)[1].split("\n#", 1)[0]


def _named(text: str) -> set[str]:
    """Every identifier inside a `code span` of ``text`` (column and key names are written so)."""
    return {word for span in re.findall(r"`([^`]+)`", text) for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)}


def documented_run_files() -> set[str]:
    """The file names in the first column of CONTRACTS.md's run-directory table."""
    names: set[str] = set()
    for line in _section("## A run directory").splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def row(file_name: str) -> str:
    """The run-directory table's row of ``file_name`` (its columns and meaning)."""
    rows = [line for line in _section("## A run directory").splitlines()
            if line.startswith("| `") and f"`{file_name}`" in line.split("|")[1]]  # fmt: skip
    assert len(rows) == 1, f"{file_name}: {len(rows)} rows in CONTRACTS.md's run-directory table"
    return rows[0]


def test_contracts_list_every_file_the_code_names(tmp_path: Path) -> None:
    from labeltriage.config import load_task_config
    from labeltriage.demo import demo_config, demo_input
    from labeltriage.reasoning import REASONING_CACHE
    from labeltriage.rundir import FILES
    from pipelines.batch import JOBS_FILE
    from pipelines.prelabeller import CACHE_FILE

    demo_input(6, 3, tmp_path)
    demo_config(load_task_config("sentiment_3class"), tmp_path, {"records": 6})
    assert {p.name for p in tmp_path.iterdir()} == DEMO
    written = set(FILES) | {JOBS_FILE, CACHE_FILE, REASONING_CACHE} | PUBLISHED | DEMO
    assert documented_run_files() == written


def test_a_run_directory_holds_only_documented_files(tmp_path: Path) -> None:
    """Every file name the run-directory code can write (string literals next to a run path) is documented."""
    literals: set[str] = set()
    for package in ("labeltriage", "pipelines", "curation"):
        for path in (ROOT / package).rglob("*.py"):
            source = path.read_text()
            literals.update(re.findall(r'(?:run_dir|run|out|output_dir) / "([\w./-]+\.(?:json|jsonl|parquet|npy|png))"',
                                       source))  # fmt: skip
    assert literals, "the pattern found nothing: it no longer matches how the code names run files"
    assert literals <= documented_run_files(), literals - documented_run_files()


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A run calibrated and routed by the library (fixed sequence, spot checks, a blind share), whose
    blind audits then show drift (so routing.json gains audit_monitor and auto_accept_stopped and
    routed.parquet route_before_stop), published; and the same run routed by the scan."""
    from curation.publish import build_final_dataset
    from labeltriage.rundir import RunDir
    from labeltriage.trust import audit_verdict

    run, gold = make_run(tmp_path_factory.mktemp("contracts"))
    (run / "run.json").write_text(json.dumps(RUN_JSON))
    lt.calibrate(run, gold=gold, gold_column="gold")
    routed = lt.route(run, target_precision=0.9, spot_check_rate=0.1, blind_share=0.2).routed
    assert routed["route"].eq("auto_accept").any() and routed["blind"].any()
    audits = routed[routed["route"].eq("spot_check")]
    wrong = audits["llm_label"].map({"positive": "negative", "negative": "positive"})
    answers = {"record_id": audits["id"], "user": "auditor", "label": wrong, "status": "submitted",
               "updated_at": pd.Timestamp("2026-11-30")}  # fmt: skip
    pd.DataFrame(answers).to_parquet(run / "responses.parquet", index=False)
    verdict = audit_verdict(RunDir(run), round_number=1)
    assert verdict is not None and verdict.state == "drift"
    found = {
        "prelabels": pd.read_parquet(run / "prelabels.parquet"),
        "routed": pd.read_parquet(run / "routed.parquet"),
        "routing": json.loads((run / "routing.json").read_text()),
        "final": build_final_dataset(RunDir(run).publish_files()),
    }
    found["scan"] = lt.route(run, target_precision=0.9, method="scan").report  # rewrites both files: read last
    return found


def test_routed_parquet_columns_are_documented(stopped_run: dict) -> None:
    routed, prelabels = stopped_run["routed"], stopped_run["prelabels"]
    assert {"blind", "route_before_stop"} <= set(routed.columns)
    own = [c for c in routed.columns if c not in prelabels.columns]
    assert set(own) <= _named(row("routed.parquet")), set(own) - _named(row("routed.parquet"))
    assert set(prelabels.columns) <= _named(row("prelabels.parquet"))


def test_routing_json_keys_are_documented(stopped_run: dict) -> None:
    section = _section("### routing.json")
    named = _named(section)
    routing, scan = stopped_run["routing"], stopped_run["scan"]
    assert {"audit_monitor", "auto_accept_stopped", "gold_plan", "certificate_identity"} <= set(routing)
    assert set(routing) <= named, set(routing) - named
    nested = ("threshold", "gold_plan", "certificate_identity", "audit_monitor", "auto_accept_stopped", "gold_source")
    for key in nested:
        assert set(routing[key]) <= named, (key, set(routing[key]) - named)
    assert set(routing["threshold"]["steps"][0]) <= named
    assert set(routing["coverage_precision_curve"]) <= named and set(routing["errors_caught"][0]) <= named
    assert set(scan["threshold"]) <= named, set(scan["threshold"]) - named
    # and the other way: each bullet opens with a key the code writes
    bullets = {re.match(r"- `(\w+)`", line).group(1) for line in section.splitlines() if re.match(r"- `\w+`", line)}
    assert bullets and bullets <= set(routing), bullets - set(routing)


def test_final_and_adjudication_columns_are_documented(stopped_run: dict) -> None:
    from curation.publish import FINAL_COLUMNS

    final = stopped_run["final"]
    assert list(final.final.columns) == FINAL_COLUMNS  # the synthetic input has no columns of its own
    assert set(FINAL_COLUMNS) <= _named(row("final.parquet")), set(FINAL_COLUMNS) - _named(row("final.parquet"))
    for source in ("human", "consensus", "llm_auto", "gold"):
        assert f"`{source}`" in row("final.parquet"), source
    assert set(final.adjudication.columns) <= _named(row("adjudication.parquet"))


def test_responses_parquet_columns_are_documented(tmp_path: Path) -> None:
    """The real pull_to_run over a fake Argilla client: a response the server lost is kept, on_server false."""
    from curation.adapters.loop import pull_to_run

    def response(user: str) -> SimpleNamespace:
        return SimpleNamespace(question_name="label", status="submitted", value="positive", user_id=user)

    def dataset(users: list[str]) -> SimpleNamespace:
        record = SimpleNamespace(id="r1", responses=[response(u) for u in users], updated_at=None)
        return SimpleNamespace(settings=SimpleNamespace(questions={"label": SimpleNamespace(labels=["positive"])}),
                               records=lambda **_: iter([record]))  # fmt: skip

    client = SimpleNamespace(users=[SimpleNamespace(id="u1", username="ann"), SimpleNamespace(id="u2", username="bo")])
    config = SimpleNamespace(labels=[SimpleNamespace(name="positive")], argilla=SimpleNamespace(question="label"))
    pull_to_run(client, dataset(["u1", "u2"]), config, tmp_path)
    report = pull_to_run(client, dataset(["u1"]), config, tmp_path)
    responses = pd.read_parquet(tmp_path / "responses.parquet")
    assert report.kept_from_earlier_pulls == 1 and responses["on_server"].tolist() == [True, False]
    assert set(responses.columns) <= _named(row("responses.parquet")), set(responses.columns)


def test_demo_files_columns_are_documented(tmp_path: Path) -> None:
    from labeltriage.demo import demo_input

    input_path, gold_path = demo_input(6, 3, tmp_path)
    for path in (input_path, gold_path):
        columns = set(pd.read_csv(path).columns)
        assert columns <= _named(row(path.name)), (path.name, columns)


def test_the_pure_module_list_names_every_pure_module() -> None:
    from tests.test_layers import PURE

    text = CONTRACTS.read_text()
    paragraph = text[text.index("Pure modules (") :].split("\n\n", 1)[0]
    listed, package = set(), None
    for entry in re.findall(r"`([\w/]+)\.py`", paragraph):  # `curation/calibration.py`, `heldout.py`, ...
        package, _, name = entry.rpartition("/") if "/" in entry else (package, "", entry)
        listed.add(f"{package}.{name}")
    assert set(PURE) <= listed, set(PURE) - listed
