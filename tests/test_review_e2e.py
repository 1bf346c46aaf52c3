"""End to end on the real stack: push 200 records, three reviewers answer through the REST API as
the UI does, pull, agreement equals the reference libraries on the same answers, a feedback round
updates metadata only, publish, reload from the test Hub: identical rows."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import krippendorff
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from labeltriage.cli import main as cli
from labeltriage.corpora import vader_ratings
from tests.support.hub_server import HubServer
from tests.support.reviewers import reviewer_headers
from tests.test_publish import LOAD, _hub_env

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parent.parent
N = 200
REVIEWERS = 3


def _vader_label(rating: int) -> str:
    return "negative" if rating < 0 else ("positive" if rating > 0 else "neutral")


@pytest.fixture(scope="module")
def review_run(argilla_stack, tmp_path_factory):
    run = tmp_path_factory.mktemp("e2e") / "run"
    run.mkdir()
    config = yaml.safe_load((ROOT / "datasets_config" / "sentiment.yaml").read_text())
    config["argilla"]["dataset"] = f"e2e-{uuid.uuid4().hex[:8]}"
    config["argilla"]["min_submitted"] = REVIEWERS
    config_path = run.parent / "sentiment.yaml"
    config_path.write_text(yaml.safe_dump(config))
    snippets = vader_ratings("amazonReviewSnippets")
    snippets = snippets[snippets["mean_matches_text"]].head(N).reset_index(drop=True)
    rng = np.random.default_rng(0)
    llm = [_vader_label(round(m)) if rng.random() < 0.8 else rng.choice(["mixed", "neutral"]) for m in snippets["mean"]]
    routed = pd.DataFrame(
        {
            "id": [f"amz-{i}" for i in snippets["id"]],
            "text": snippets["text"],
            "llm_label": llm,
            "llm_confidence": rng.uniform(0.3, 1.0, N),
            "calibrated_confidence": rng.uniform(0.3, 1.0, N),
            "reasoning": [f"The reviewer's wording suggests {label}." for label in llm],
            "model": "qwen2.5-1.5b",
            "prompt_hash": "p0",
            "input_tokens": 120,
            "output_tokens": 30,
            "cost_usd": 0.0,
            "status": "ok",
            "error": None,
            "route": ["human_review"] * (N - 20) + ["auto_accept"] * 10 + ["spot_check"] * 10,
            "priority": rng.uniform(0, 1, N),
        }
    )
    routed.to_parquet(run / "routed.parquet", index=False)
    (run / "run.json").write_text(json.dumps({"config": str(config_path), "model": "qwen2.5-1.5b"}))
    api_url, api_key = argilla_stack.credentials()
    env = {"ARGILLA_API_URL": api_url, "ARGILLA_API_KEY": api_key}
    return {"run": run, "routed": routed, "snippets": snippets, "config": config, "env": env, "stack": argilla_stack}


def _invoke(args: list[str], env: dict) -> str:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_push_review_pull_agree_loop_publish(review_run, argilla_client, tmp_path):
    run, env, routed = review_run["run"], review_run["env"], review_run["routed"]
    output = _invoke(["push", str(run)], env)
    assert "pushed 190 record(s)" in output and "10 not for review: auto-accepted or gold" in output
    # A rerun creates no duplicate.
    assert "pushed 0 record(s)" in _invoke(["push", str(run)], env)
    dataset = argilla_client.datasets(review_run["config"]["argilla"]["dataset"], workspace="labeltriage")
    records = {r.id: r for r in dataset.records(with_suggestions=True, with_vectors=True)}
    assert len(records) == 190
    sample = records[routed["id"].iloc[0]]
    suggestion = sample.suggestions["sentiment"]
    assert suggestion.value == routed["llm_label"].iloc[0]
    assert suggestion.score == pytest.approx(routed["calibrated_confidence"].iloc[0])
    assert suggestion.agent == "qwen2.5-1.5b/p0"
    assert sample.fields["llm_reasoning"].startswith("The reviewer's wording")
    assert sample.metadata["priority"] == pytest.approx(routed["priority"].iloc[0])
    assert len(sample.vectors["embedding"]) == 384
    # audit (spot-check) records are blind: nothing of the model on them (issue 17 point 3)
    audits = routed.loc[routed["route"] == "spot_check", "id"].tolist()
    assert len(audits) == 10
    for rid in audits:
        audit = records[rid]
        assert not list(audit.suggestions) and not audit.fields.get("llm_reasoning")
        assert set(audit.metadata) == {"priority", "review_rank", "round", "review_mode"}
        assert audit.metadata["review_mode"] == "blind"
    assert records[routed["id"].iloc[0]].metadata["review_mode"] == "assisted"

    # Three reviewers answer as the UI does: bearer token, POST /api/v1/records/{id}/responses.
    stack, api_url = review_run["stack"], env["ARGILLA_API_URL"]
    owner = {"X-Argilla-Api-Key": env["ARGILLA_API_KEY"]}
    server_ids = {
        item["external_id"]: item["id"]
        for item in httpx.get(
            f"{api_url}/api/v1/datasets/{dataset.id}/records", params={"limit": 1000}, headers=owner
        ).json()["items"]
    }
    shown = {
        prop["name"]: prop["visible_for_annotators"]
        for prop in httpx.get(f"{api_url}/api/v1/me/datasets/{dataset.id}/metadata-properties", headers=owner).json()[
            "items"
        ]
    }
    assert {name for name, visible in shown.items() if visible} == {"priority", "review_rank", "round", "source"}
    ratings = dict(zip(review_run["snippets"]["id"], review_run["snippets"]["ratings"], strict=True))
    rng = np.random.default_rng(1)
    sent = []
    names = []
    for index in range(REVIEWERS):
        name = f"e2e_reviewer_{index}_{uuid.uuid4().hex[:4]}"
        headers = reviewer_headers(stack, name)
        names.append(name)
        # what an annotator's UI can list and filter on: no LLM field
        listed = httpx.get(f"{api_url}/api/v1/me/datasets/{dataset.id}/metadata-properties", headers=headers).json()
        assert {prop["name"] for prop in listed["items"]} == {"priority", "review_rank", "round", "source"}
        for position, rid in enumerate(sorted(records)):
            label = _vader_label(int(rng.choice(ratings[int(rid.split("-")[1])])))
            # On the last 10 records: reviewer 0 leaves a draft, reviewer 1 discards.
            status = "submitted"
            if position >= 180 and index < 2:
                status = "draft" if index == 0 else "discarded"
            body = {"values": {"sentiment": {"value": label}}, "status": status}
            response = httpx.post(f"{api_url}/api/v1/records/{server_ids[rid]}/responses", json=body, headers=headers)
            assert response.status_code == 201, response.text
            sent.append({"record_id": rid, "user": name, "label": label, "status": status})
    sent = pd.DataFrame(sent)

    output = _invoke(["pull", str(run)], env)
    assert "pulled 550 submitted response(s) from 3 reviewer(s)" in output
    assert "10 draft, 10 discarded" in output
    pulled = pd.read_parquet(run / "responses.parquet")
    key = ["record_id", "user", "label", "status"]
    pd.testing.assert_frame_equal(
        pulled[key].sort_values(key).reset_index(drop=True), sent[key].sort_values(key).reset_index(drop=True)
    )

    # Agreement: every figure equals the reference library on the answers as sent.
    _invoke(["agreement", str(run)], env)
    report = json.loads((run / "agreement.json").read_text())
    submitted = sent[sent["status"] == "submitted"]
    wide = submitted.pivot(index="record_id", columns="user", values="label")
    multi = wide[wide.notna().sum(axis=1) >= 2]
    categories = report["categories"]
    codes = multi.apply(lambda column: column.map({c: i for i, c in enumerate(categories)})).to_numpy(dtype=float)
    assert report["n_responses"] == len(submitted)
    assert report["krippendorff_alpha_nominal"] == pytest.approx(
        krippendorff.alpha(reliability_data=codes.T, level_of_measurement="nominal")
    )
    full = codes[~np.isnan(codes).any(axis=1)]
    assert len(full) == 180
    table, _ = aggregate_raters(full.astype(int), n_cat=len(categories))
    assert report["fleiss_kappa"] == pytest.approx(fleiss_kappa(table))
    for a, b in itertools.combinations(names, 2):
        both = wide[[a, b]].dropna()
        pair = next(p for p in report["pairwise_kappa"] if {p["a"], p["b"]} == {a, b})
        assert pair["kappa"] == pytest.approx(cohen_kappa_score(both[a], both[b]))
    pairs_agree = [np.mean([x == y for x, y in itertools.combinations(row.dropna(), 2)]) for _, row in multi.iterrows()]
    assert report["percent_agreement"] == pytest.approx(np.mean(pairs_agree))

    # A feedback round: new priorities and rounds as metadata; responses untouched.
    _invoke(["loop", str(run), "--rounds", "1"], env)
    after = {r.id: r for r in dataset.records(with_responses=True)}
    assert {r.metadata["round"] for r in after.values()} == {1}
    assert sum(len(r.responses) for r in after.values()) == len(sent)
    loop = json.loads((run / "loop.json").read_text())
    assert loop["student"]["retrained"] and loop["metadata_updated"] == 190
    for rid in loop["adjudication"]:
        assert after[rid].metadata["route"] == "adjudication"
        if after[rid].metadata.get("review_mode") != "blind":  # a blind record never shows its own priority
            assert after[rid].metadata["priority"] == 1.0 and after[rid].metadata["review_rank"] == 1
    # a push after the loop keeps the round (it reset it to 0); the next loop continues the numbering
    _invoke(["push", str(run)], env)
    assert {r.metadata["round"] for r in dataset.records()} == {1}
    _invoke(["loop", str(run)], env)
    assert json.loads((run / "loop.json").read_text())["round"] == 2
    assert {r.metadata["round"] for r in dataset.records()} == {2}

    # Publish to the test Hub and read it back.
    with HubServer(token="hf_e2e_token") as hub:
        hub_env = _hub_env(hub, tmp_path, hub.token)
        out = tmp_path / "out"
        command = [sys.executable, "-c", "from labeltriage.cli import main; main()"]
        done = subprocess.run(
            [*command, "publish", str(run), "--repo-id", "team/reviews", "--output", str(out)],
            env=hub_env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        loaded = tmp_path / "loaded.parquet"
        done = subprocess.run(
            [sys.executable, "-c", LOAD, "team/reviews", str(loaded)],
            env=hub_env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        local, remote = pd.read_parquet(out / "final.parquet"), pd.read_parquet(loaded)
        pd.testing.assert_frame_equal(remote, local)
        assert len(local) + len(pd.read_parquet(out / "adjudication.parquet")) >= 190
        assert set(local["label_source"]) <= {"human", "consensus", "llm_auto"}
