"""Publish: final labels from a run directory, the card, the CLI, and a round trip through a
Hub-compatible HTTP server (the real `huggingface_hub`/`datasets` clients in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from sklearn.metrics import cohen_kappa_score

from curation.publish import FINAL_COLUMNS, build_final_dataset
from labeltriage.cli import main as cli
from labeltriage.rundir import RunDir
from tests.support.hub_server import HubServer

LABELS = ["positive", "negative", "neutral", "mixed"]
USERS = ["ann", "bob", "cy"]
ROOT = Path(__file__).resolve().parent.parent


def make_run(root: Path, n: int = 60, seed: int = 0) -> Path:
    """A run directory as prelabel/route/pull leave it (CONTRACTS.md), with known answers."""
    rng = np.random.default_rng(seed)
    run = root / "run"
    run.mkdir()
    # a task config as prelabel validated it: the shipped one with this test's labels and texts
    config = yaml.safe_load((ROOT / "datasets_config" / "sentiment.yaml").read_text())
    config.update(
        description="Classify the overall sentiment of a product review.",
        labels=[{"name": lab, "description": f"{lab} reviews"} for lab in LABELS],
        guidelines="Judge the overall attitude.",
    )
    (root / "sentiment.yaml").write_text(yaml.safe_dump(config))
    truth = rng.choice(LABELS, n)
    llm = np.where(rng.random(n) < 0.8, truth, rng.choice(LABELS, n))
    routes = np.array(["auto_accept"] * (n // 3) + ["human_review"] * (n - n // 3 - 4) + ["spot_check"] * 4)
    routed = pd.DataFrame(
        {
            "id": [f"rec{i:03d}" for i in range(n)],
            "text": [f"review number {i} é ✓" for i in range(n)],
            "llm_label": llm,
            "llm_confidence": rng.uniform(0.5, 1.0, n),
            "calibrated_confidence": rng.uniform(0.5, 1.0, n),
            "reasoning": [f"because {i}" for i in range(n)],
            "model": "qwen-test",
            "prompt_hash": "abc123",
            "input_tokens": 100,
            "output_tokens": 20,
            "cost_usd": 0.0001,
            "status": ["failed" if i == 1 else "ok" for i in range(n)],
            "route": routes,
            "priority": rng.random(n),
        }
    )
    routed.to_parquet(run / "routed.parquet", index=False)
    rows = []
    t0 = pd.Timestamp("2024-05-01")
    reviewed = [i for i in range(n) if routes[i] == "human_review"][:-5] + [n - 4, n - 3]  # 5 pending
    for j, i in enumerate(reviewed):
        for u in USERS if j % 2 == 0 else USERS[: 1 + j % 3]:
            lab = truth[i] if rng.random() < 0.8 else rng.choice(LABELS)
            rows.append((f"rec{i:03d}", u, lab, "submitted", t0 + pd.Timedelta(minutes=len(rows))))
    # a forced three-way tie, a draft and a discarded answer (never used), a response to an
    # unknown record (ignored and counted)
    tie = f"rec{reviewed[0]:03d}"
    rows = [r for r in rows if r[0] != tie]
    rows += [(tie, "ann", "positive", "submitted", t0), (tie, "bob", "negative", "submitted", t0)]
    rows += [(tie, "cy", "neutral", "submitted", t0), (tie, "cy", "mixed", "draft", t0)]
    rows += [(f"rec{reviewed[1]:03d}", "ann", "mixed", "discarded", t0), ("ghost", "ann", "positive", "submitted", t0)]
    pd.DataFrame(rows, columns=["record_id", "user", "label", "status", "updated_at"]).to_parquet(
        run / "responses.parquet", index=False
    )
    (run / "run.json").write_text(
        json.dumps(
            {"config": str(root / "sentiment.yaml"), "task": "sentiment", "model": "qwen-test", "prompt_hash": "abc123"}
        )
    )
    (run / "calibration.json").write_text(
        json.dumps(
            {"method": "isotonic", "gold": str(root / "gold.csv"), "before": {"ece": 0.12}, "after": {"ece": 0.03}}
        )
    )
    (run / "routing.json").write_text(json.dumps({"threshold": 0.91, "lower_bound": 0.95, "coverage": 0.33}))
    return run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path)


def test_final_dataset_label_sources_and_queue(run_dir: Path):
    run = RunDir(run_dir).publish_files()
    res = build_final_dataset(run)
    final, routed = res.final, run.routed
    assert list(final.columns) == FINAL_COLUMNS
    assert final["id"].is_unique
    responses = pd.read_parquet(run_dir / "responses.parquet")
    sub = responses[(responses.status == "submitted") & responses.record_id.isin(routed.id)]
    # every reviewed record is either published with the reviewers' majority or queued
    for rid, grp in sub.groupby("record_id"):
        counts = grp["label"].value_counts()
        if rid in set(res.adjudication["id"]):
            assert (counts == counts.max()).sum() > 1 or counts.max() / counts.sum() < 0.6
            continue
        row = final.set_index("id").loc[rid]
        assert row["label"] == counts.idxmax()
        assert row["n_reviewers"] == len(grp)
        assert row["agreement"] == pytest.approx(counts.max() / len(grp))
        assert row["label_source"] == ("human" if counts.size == 1 else "consensus")
    tie = res.adjudication.set_index("id")
    assert "tie" in set(tie["reason"])
    # drafts/discarded never counted: the tie record has exactly its 3 submitted answers
    assert (tie["n_reviewers"] <= 3).all()
    auto = final[final.label_source == "llm_auto"]
    expected_auto = routed[(routed.route == "auto_accept") & (routed.status == "ok")]
    assert set(expected_auto.id) <= set(auto.id)
    assert (auto["label"] == auto["llm_label"]).all()
    assert auto["n_reviewers"].eq(0).all() and auto["agreement"].isna().all()
    merged = auto.merge(routed, on="id")
    np.testing.assert_allclose(merged["confidence"], merged["calibrated_confidence"])
    assert "rec001" not in set(final.id)  # failed pre-label
    s = res.summary
    assert s["n_pending_review"] == 5 and s["n_failed_prelabels"] == 1 and s["n_responses_unknown_record"] == 1
    assert sum(s["per_label_source"].values()) == len(final)


def test_gold_records_publish_their_gold_label(run_dir: Path):
    """A gold record above the threshold was auto-accepted: the LLM's label was published where the
    gold said otherwise. Routed `gold`, it publishes the gold label; answers to it are not used."""
    routed = pd.read_parquet(run_dir / "routed.parquet")
    routed["gold_label"] = None
    # an auto-accepted record whose LLM label is wrong, and a reviewed one (with answers)
    wrong = routed.index[routed["route"].eq("auto_accept")][0]
    answered = routed.index[routed["id"].eq(pd.read_parquet(run_dir / "responses.parquet")["record_id"].iloc[0])][0]
    for i in (wrong, answered):
        routed.loc[i, "gold_label"] = next(lab for lab in LABELS if lab != routed.loc[i, "llm_label"])
        routed.loc[i, "route"] = "gold"
    routed.to_parquet(run_dir / "routed.parquet", index=False)
    res = build_final_dataset(RunDir(run_dir).publish_files())
    final = res.final.set_index("id")
    for i in (wrong, answered):
        row = final.loc[routed.loc[i, "id"]]
        assert row["label_source"] == "gold" and row["label"] == routed.loc[i, "gold_label"] != row["llm_label"]
        assert row["n_reviewers"] == 0 and np.isnan(row["confidence"])
    assert res.summary["per_label_source"]["gold"] == 2
    assert res.summary["n_responses_on_gold_records"] > 0


def test_dawid_skene_method_and_llm_tie_policy(run_dir: Path):
    run = RunDir(run_dir).publish_files()
    ds = build_final_dataset(run, method="dawid_skene").final
    reviewed = ds[ds.label_source != "llm_auto"]
    assert ((reviewed.confidence > 0) & (reviewed.confidence <= 1)).all()
    llm = build_final_dataset(run, tie_policy="llm")
    # the three-way tie includes the LLM label only if the LLM said one of them
    assert len(llm.adjudication) <= len(build_final_dataset(run).adjudication)


def test_agreement_cli_matches_direct_metrics(run_dir: Path):
    result = CliRunner().invoke(cli, ["agreement", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "Krippendorff" in result.output
    report = json.loads((run_dir / "agreement.json").read_text())
    responses = pd.read_parquet(run_dir / "responses.parquet")
    sub = responses[(responses.status == "submitted") & (responses.record_id != "ghost")]
    wide = sub.pivot(index="record_id", columns="user", values="label")
    codes = wide.apply(lambda col: col.map({lab: i for i, lab in enumerate(LABELS)})).to_numpy(dtype=float)
    assert report["krippendorff_alpha_nominal"] == pytest.approx(
        krippendorff.alpha(reliability_data=codes.T, level_of_measurement="nominal")
    )
    both = wide[["ann", "bob"]].dropna()
    pair = next(p for p in report["pairwise_kappa"] if {p["a"], p["b"]} == {"ann", "bob"})
    assert pair["kappa"] == pytest.approx(cohen_kappa_score(both["ann"], both["bob"]))
    assert report["n_responses"] == len(sub)


def test_bad_response_label_names_file_and_fix(run_dir: Path):
    responses = pd.read_parquet(run_dir / "responses.parquet")
    responses.loc[0, "label"] = "meh"
    responses.to_parquet(run_dir / "responses.parquet", index=False)
    result = CliRunner().invoke(cli, ["publish", str(run_dir)])
    assert result.exit_code != 0
    assert "responses.parquet" in result.output and "'meh'" in result.output


def test_missing_routed_names_the_step(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["publish", str(tmp_path / "empty")])
    assert result.exit_code != 0 and "labeltriage route" in result.output


def test_publish_without_token_is_a_clear_error(run_dir: Path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["publish", str(run_dir), "--repo-id", "org/x"])
    assert result.exit_code != 0 and "HF_TOKEN" in result.output
    assert (run_dir / "final.parquet").exists()  # the local copy is written first


@pytest.mark.parametrize("offline", ["0", "1"])
def test_an_unreachable_hub_is_one_clear_error_and_the_local_files_stay(run_dir: Path, tmp_path: Path, offline: str):
    """The reported failure: no network gave a 98-line traceback; now one line naming the fix."""
    import socket

    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env |= {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": "hf_secret_unused", "HF_HUB_OFFLINE": offline,
            "HF_HOME": str(tmp_path / "hf_home"), "NO_PROXY": "127.0.0.1"}  # fmt: skip
    out = tmp_path / "out"
    cli = [sys.executable, "-c", "from labeltriage.cli import main; main()"]
    p = subprocess.run([*cli, "publish", str(run_dir), "--repo-id", "org/reviews", "--output", str(out)],
                       env=env, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert p.returncode == 69, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert f"the Hub at http://127.0.0.1:{port} could not be reached to publish org/reviews (" in p.stderr
    assert f"the local files are written in {out}. Fix: check the network (HF_HUB_OFFLINE=1 forbids it" in p.stderr
    assert "hf_secret_unused" not in p.stdout + p.stderr
    assert (out / "final.parquet").exists() and (out / "README.md").exists()


def _hub_env(hub: HubServer, tmp: Path, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env |= {
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(tmp / "hf_home"),
        "HF_DATASETS_CACHE": str(tmp / "hf_datasets"),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    if token:
        env["HF_TOKEN"] = token
    return env


LOAD = """
import sys, datasets
ds = datasets.load_dataset(sys.argv[1], split="train")
ds.to_pandas().to_parquet(sys.argv[2], index=False)
"""


def test_publish_round_trip_through_hub(run_dir: Path, tmp_path: Path):
    with HubServer(token="hf_secret_test_token") as hub:
        env = _hub_env(hub, tmp_path, hub.token)
        out = tmp_path / "out"
        cli = [sys.executable, "-c", "from labeltriage.cli import main; main()"]
        p = subprocess.run(
            [*cli, "publish", str(run_dir), "--repo-id", "org/reviews", "--output", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert p.returncode == 0, p.stderr[-3000:]
        assert hub.token not in p.stdout + p.stderr  # never logged
        assert "private" in p.stdout

        loaded = tmp_path / "loaded.parquet"
        p = subprocess.run(
            [sys.executable, "-c", LOAD, "org/reviews", str(loaded)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert p.returncode == 0, p.stderr[-3000:]
        local = pd.read_parquet(out / "final.parquet")
        remote = pd.read_parquet(loaded)
        assert len(local) > 0
        pd.testing.assert_frame_equal(remote, local, check_dtype=True)

        files = hub.files("org/reviews")
        card = files["README.md"].decode()
        front = yaml.safe_load(card.split("---")[1])
        assert front["labeltriage"]["prompt_hash"] == "abc123"
        assert "configs" in front and "dataset_info" in front  # kept from datasets' own card
        counts = local["label_source"].value_counts().to_dict()
        assert front["labeltriage"]["label_sources"] == {
            k: counts.get(k, 0) for k in ("human", "consensus", "llm_auto", "student", "gold")
        }
        for needle in (
            "Guidelines",
            "Judge the overall attitude",
            "qwen-test",
            "Krippendorff",
            "Calibration",
            "$0.0060",
        ):
            assert needle in card
        assert hub.state.repos[("dataset", "org/reviews")].private
        assert hub.state.unhandled == []

        # private: an anonymous client cannot read it
        anon = _hub_env(hub, tmp_path / "anon", None)
        p = subprocess.run(
            [sys.executable, "-c", LOAD, "org/reviews", str(tmp_path / "x.parquet")],
            env=anon,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert p.returncode != 0

        # republishing is idempotent: same rows, one more commit
        p = subprocess.run(
            [*cli, "publish", str(run_dir), "--repo-id", "org/reviews", "--output", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert p.returncode == 0, p.stderr[-3000:]
        assert hub.files("org/reviews").keys() == files.keys()


def test_the_card_carries_no_local_path(run_dir: Path) -> None:
    """calibration.json records the gold file's absolute path; the published card keeps its name only."""
    from curation.publish import build_dataset_card, compute_agreement

    run = RunDir(run_dir).publish_files()
    final = build_final_dataset(run)
    card = build_dataset_card(run, final, compute_agreement(run, final))
    assert str(run_dir.parent) not in card and '"gold": "gold.csv"' in card


def test_the_published_llm_labels_accuracy_comes_from_the_blind_audits(run_dir: Path) -> None:
    """The card reported agreement only; llm_auto rows carried no measured quality (issue 17 point 4)."""
    from curation.estimation import published_accuracy
    from curation.publish import build_dataset_card, compute_agreement, published_label_accuracy

    run = RunDir(run_dir).publish_files()
    final = build_final_dataset(run)
    measured = published_label_accuracy(run, final)
    routed = run.routed.set_index("id")
    auto = routed.index[routed["route"].isin(["auto_accept", "spot_check"])]
    published = final.final.set_index("id")
    # every answered audit counts; one left unresolved (a tie, in adjudication) counts as the LLM wrong
    answered = set(run.responses["record_id"])
    audited = [r for r in auto if routed.at[r, "route"] == "spot_check" and r in answered]
    unresolved = [r for r in audited if r not in published.index]
    assert len(unresolved) == 1 and set(unresolved) <= set(final.adjudication["id"])
    assert measured["n_population"] == len(auto) == 24 and measured["n_audited"] == len(audited) == 2
    right = sum(r in published.index and published.at[r, "label"] == routed.at[r, "llm_label"] for r in audited)
    entry = measured["llm_auto"]
    assert entry["estimate"] == pytest.approx(right / len(audited))
    truth = {r: (published.at[r, "label"] if r in published.index else "none of the labels") for r in audited}
    reference = published_accuracy(
        [routed.at[r, "llm_label"] for r in auto], ["llm_auto"] * len(auto), [r in audited for r in auto],
        [truth.get(r) for r in auto],
    )["by_source"]["llm_auto"]  # fmt: skip
    assert (entry["low"], entry["high"]) == (reference["low"], reference["high"]) and entry["low"] < entry["high"]
    report = compute_agreement(run, final)
    assert report["published_accuracy"]["llm_auto"] == entry
    card = build_dataset_card(run, final, report)
    assert f"from {len(audited)} blind audits of the 24 auto-accepted records" in card
    # the audit's truth is the auditors' own majority: a consensus option that lets the LLM break
    # the tie does not turn the unresolved audit into "LLM right"
    lenient = build_final_dataset(run, tie_policy="llm", min_agreement=0.3)
    assert published_label_accuracy(run, lenient)["llm_auto"]["estimate"] == entry["estimate"]


def test_label_shares_come_from_the_llm_labels_corrected_on_the_gold(tmp_path: Path):
    """Issue 17 point 4: the class shares with intervals (PPI), on the card and in agreement.json."""
    from curation.estimation import class_shares_ppi
    from curation.publish import RunFiles, class_shares

    rng = np.random.default_rng(5)
    n = 2000
    truth = rng.choice(LABELS, n, p=[0.4, 0.3, 0.2, 0.1])
    llm = np.where(rng.random(n) < 0.8, truth, rng.choice(LABELS, n))
    gold = rng.random(n) < 0.15  # a random sample of the run is labelled
    routed = pd.DataFrame({"id": [f"s{i}" for i in range(n)], "text": "t", "llm_label": llm, "status": "ok",
                           "route": np.where(gold, "gold", "human_review"),
                           "gold_label": np.where(gold, truth, None)})  # fmt: skip
    files = RunFiles(tmp_path, routed, pd.DataFrame(columns=["record_id", "user", "label"]),
                     config={"labels": [{"name": lab} for lab in LABELS], "task_type": "single_label"})  # fmt: skip
    shares = class_shares(files)
    assert shares is not None and shares["n_audited"] == gold.sum() and shares["n_population"] == n
    reference = class_shares_ppi(llm, gold, np.where(gold, truth, None), LABELS)
    for label in LABELS:
        entry = shares["shares"][label]
        assert entry["estimate"] == reference["shares"][label]["estimate"]
        assert entry["low"] <= (truth == label).mean() <= entry["high"]
    assert sum(entry["estimate"] for entry in shares["shares"].values()) == pytest.approx(1.0)
    assert (
        class_shares(RunFiles(tmp_path, routed.drop(columns="gold_label"), files.responses, config=files.config))
        is None
    )


def test_the_card_names_each_kind_of_review_audit_and_how_the_interval_is_made() -> None:
    """The demo's case (found by a fresh-eyes run): reviewed labels of two kinds, some audits tied.
    The bullet gives the per-kind audit counts behind the weighted figure and says the interval is
    combined from the per-kind ones, not one exact interval of the pooled counts."""
    from curation.publish import published_accuracy_parts

    def cell(estimate: float, n_correct: int, n_audited: int, n_population: int) -> dict:
        return {"estimate": estimate, "low": estimate - 0.2, "high": min(estimate + 0.1, 1.0),
                "n_correct": n_correct, "n_audited": n_audited, "n_population": n_population}  # fmt: skip

    measured = {
        "confidence_level": 0.95,
        "llm_auto": {**cell(0.929, 13, 14, 275), "method": "mover-jeffreys"},
        "n_published_unreviewed": 261,
        "reviewed": {
            "overall": {**cell(0.55, 13, 16, 100), "method": "mover-clopper-pearson"},
            "human": cell(0.889, 8, 9, 44),
            "consensus": cell(0.714, 5, 7, 56),
        },
        "n_review_audits_tied": 2,
        "overall": {**cell(0.918, 0, 0, 481), "n_not_covered": 14, "n_student_not_covered": 0},
    }
    llm, reviewed, together = published_accuracy_parts(measured)
    assert "from 14 blind audits of the 275 auto-accepted records (261 of them published unreviewed" in llm
    assert llm.endswith("; Jeffreys interval, finite-population corrected")
    assert reviewed == (
        "reviewed labels (human, consensus): accuracy 0.550 (weighted by their counts over human 0.889: 8 of 9 "
        "audits agree, 44 labels and consensus 0.714: 5 of 7 audits agree, 56 labels) (95% interval 0.350-0.650, "
        "exact Clopper-Pearson per kind, combined by MOVER (Zou & Donner 2008)), from 16 blind second reviews of "
        "the 100 reviewed queue records: 13 agree, 1 disagree, 2 tied (no majority: counted as the label being wrong)"
    )
    assert together.startswith("all 481 published labels whose accuracy is measured, together")
    assert together.endswith("; left out: 14 reviewed labels that no audit checks (records reviewed outside the "
                             "assisted review queue: the audited auto-accepted records, blind reviews)")  # fmt: skip
