"""Gold drawn inside the product (issue 17): a simple random sample of the run, recorded with its
inclusion probability, pushed to Argilla blind, labelled by reviewers, collected as the run's gold."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

import labeltriage as lt
from curation.gold import draw_gold_sample
from labeltriage.config import load_task_config
from labeltriage.errors import InputError
from tests.support.reviewers import reviewer_headers


def test_a_draw_is_a_simple_random_sample_that_extends():
    ids = [f"r{i}" for i in range(100)]
    first = draw_gold_sample(ids, 10, seed=3)
    assert len(set(first.ids)) == 10 and set(first.ids) <= set(ids) and first.inclusion_probability == 0.1
    again = draw_gold_sample(ids, 10, seed=3, already=first.ids)
    assert again.ids == first.ids and again.new == []  # a rerun draws nothing new
    more = draw_gold_sample(ids, 25, seed=3, already=first.ids)
    assert more.ids[:10] == first.ids and len(set(more.ids)) == 25 and more.inclusion_probability == 0.25
    # every record equally likely: over many seeds each is drawn about n/N of the time
    counts = np.zeros(100)
    for seed in range(2000):
        for i in draw_gold_sample(ids, 10, seed=seed).ids:
            counts[int(i[1:])] += 1
    assert abs(counts / 2000 - 0.1).max() < 0.04
    with pytest.raises(InputError, match=r"gold sample size must be in \[1, 100\]"):
        draw_gold_sample(ids, 101)
    with pytest.raises(InputError, match="not among the records any more"):
        draw_gold_sample(ids[:50], 10, already=["r99"])


def _run(tmp_path: Path, n: int = 40) -> Path:
    """A pre-labelled run whose config pushes to a dataset of its own."""
    rng = np.random.default_rng(0)
    config = yaml.safe_load(load_task_config("sentiment").model_dump_json())
    config["argilla"]["dataset"] = f"golddraw-{uuid.uuid4().hex[:8]}"
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    run.mkdir()
    labels = ["positive", "negative", "neutral", "mixed"]
    pd.DataFrame(
        {
            "id": [f"g{i:02d}" for i in range(n)],
            "text": [f"review {i}: it was {'fine' if i % 2 else 'awful'}" for i in range(n)],
            "llm_label": [labels[i % 2] for i in range(n)],
            "llm_confidence": rng.uniform(0.5, 1.0, n),
            "reasoning": "because",
            "status": ["failed" if i == 0 else "ok" for i in range(n)],
            "confidence_kind": "logprob",
        }
    ).to_parquet(run / "prelabels.parquet", index=False)
    (run / "run.json").write_text(json.dumps({"config": str(tmp_path / "task.yaml"), "model_identity": "m"}))
    return run


def _answer(stack, dataset, answers: dict[str, str]) -> None:
    api_url, api_key = stack.credentials()
    items = httpx.get(
        f"{api_url}/api/v1/datasets/{dataset.id}/records", params={"limit": 1000},
        headers={"X-Argilla-Api-Key": api_key},
    ).json()["items"]  # fmt: skip
    server_ids = {item["external_id"]: item["id"] for item in items}
    name = f"gold_{uuid.uuid4().hex[:6]}"
    headers = reviewer_headers(stack, name)
    for rid, label in answers.items():
        reply = httpx.post(
            f"{api_url}/api/v1/records/{server_ids[rid]}/responses",
            json={"values": {"sentiment": {"value": label}}, "status": "submitted"},
            headers=headers,
        )
        assert reply.is_success, reply.text


@pytest.mark.stack
def test_draw_push_blind_collect_and_calibrate(argilla_stack, argilla_client, tmp_path):
    run = _run(tmp_path)
    # the input brought gold for every 4th record: a draw that picks one says so (the drawn gold replaces it)
    frame = pd.read_parquet(run / "prelabels.parquet")
    frame["gold_label"] = [frame.loc[i, "llm_label"] if i % 4 == 0 else None for i in range(len(frame))]
    frame.to_parquet(run / "prelabels.parquet", index=False)
    drawn = lt.draw_gold(run, 12, client=argilla_client, seed=1)
    assert len(drawn.ids) == 12 and drawn.population == 39 and drawn.pushed == 12  # the failed one is not drawn
    assert "g00" not in drawn.ids
    assert drawn.n_input_gold == sum(int(rid[1:]) % 4 == 0 for rid in drawn.ids)
    saved = json.loads((run / "gold_draw.json").read_text())
    assert saved["ids"] == drawn.ids and saved["inclusion_probability"] == pytest.approx(12 / 39)
    task = lt.RunDir(run).task_config()
    dataset = argilla_client.datasets(name=task.argilla.dataset, workspace=task.argilla.workspace)
    records = list(dataset.records(with_suggestions=True))
    assert sorted(r.id for r in records) == sorted(drawn.ids)
    for record in records:  # blind: nothing of the model
        assert len(record.suggestions) == 0
        assert record.metadata.get("review_mode") == "blind"
        assert not {"llm_label", "calibrated_confidence", "route"} & set(record.metadata)
        assert "llm_reasoning" not in record.fields or not record.fields.get("llm_reasoning")
    # reviewers label 11 of the 12; three against the LLM
    frame = pd.read_parquet(run / "prelabels.parquet").set_index("id")
    answers = {}
    for k, rid in enumerate(drawn.ids[:11]):
        llm = frame.loc[rid, "llm_label"]
        answers[rid] = llm if k >= 3 else ("neutral" if llm != "neutral" else "mixed")
    _answer(argilla_stack, dataset, answers)
    collected = lt.collect_gold(run, client=argilla_client)
    assert (collected.n_drawn, collected.n_labelled, collected.n_pending, collected.n_tied) == (12, 11, 1, 0)
    gold = pd.read_parquet(run / "gold.parquet")
    assert dict(zip(gold["id"], gold["gold_label"], strict=True)) == answers
    assert np.allclose(gold["inclusion_probability"], 12 / 39) and (gold["n_answers"] == 1).all()
    # calibrate uses the drawn gold with no --gold
    cal = lt.calibrate(run)
    assert cal.n_gold == 11 and cal.accuracy == pytest.approx(8 / 11)
    assert json.loads((run / "calibration.json").read_text())["gold"] == str(run / "gold.parquet")
    # a larger n extends the same sample; the same n again draws nothing
    more = lt.draw_gold(run, 15, client=argilla_client, seed=1)
    assert more.ids[:12] == drawn.ids and len(more.new) == 3 and more.pushed == 3
    rerun = lt.draw_gold(run, 15, client=argilla_client, seed=1)
    assert rerun.new == [] and rerun.pushed == 0 and rerun.ids == more.ids


def test_calibrate_on_a_gold_collected_before_any_answer_says_so(tmp_path) -> None:
    """Found in review: it said "none of its ids matches an id of prelabels.parquet"."""
    import pandas as pd

    import labeltriage as lt
    from labeltriage.errors import InputError

    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"], "llm_label": ["positive", "negative"], "status": "ok",
                  "llm_confidence": [0.9, 0.8]}).to_parquet(run / "prelabels.parquet", index=False)  # fmt: skip
    pd.DataFrame(columns=["id", "gold_label", "n_answers", "agreement", "inclusion_probability"]).to_parquet(
        run / "gold.parquet", index=False
    )
    with pytest.raises(InputError, match=r"gold.parquet: no drawn gold record is answered yet: .*gold collect"):
        lt.calibrate(run)
    # a user's own empty gold file, whatever its name, is named as such (was keyed on "gold.parquet")
    user_gold = tmp_path / "elsewhere" / "gold.parquet"
    user_gold.parent.mkdir()
    pd.DataFrame(columns=["id", "label"]).to_parquet(user_gold, index=False)
    with pytest.raises(InputError, match=r"elsewhere/gold.parquet: has no rows: give it an `id` or `text` column"):
        lt.calibrate(run, gold=user_gold)


@pytest.mark.stack
def test_gold_drawn_after_a_push_takes_only_answers_given_blind(argilla_stack, argilla_client, tmp_path):
    """Found in review: records pushed with the LLM's suggestion, answered, then drawn as gold,
    kept the suggestion and the anchored answers became gold."""
    run = _run(tmp_path)
    frame = pd.read_parquet(run / "prelabels.parquet")
    ok = frame[frame["status"].eq("ok")]
    ok.assign(route="human_review", priority=0.5, calibrated_confidence=0.8).to_parquet(
        run / "routed.parquet", index=False
    )
    lt.push(run, client=argilla_client, vectors=False)
    task = lt.RunDir(run).task_config()
    dataset = argilla_client.datasets(name=task.argilla.dataset, workspace=task.argilla.workspace)
    first = ok["id"].tolist()[:3]
    _answer(argilla_stack, dataset, {rid: "neutral" for rid in first})  # with the suggestion showing
    drawn = lt.draw_gold(run, len(ok), client=argilla_client, seed=1)
    assert set(json.loads((run / "gold_draw.json").read_text())["anchored_since"]) == set(drawn.ids)
    records = {r.id: r for r in dataset.records(with_suggestions=True)}
    assert all(len(records[rid].suggestions) == 0 for rid in drawn.ids)
    _answer(argilla_stack, dataset, {rid: "positive" for rid in first})  # now blind
    collected = lt.collect_gold(run, client=argilla_client)
    report = json.loads((run / "gold_collect.json").read_text())
    assert report["n_anchored_answers_ignored"] == 3 and collected.n_labelled == 3
    gold = pd.read_parquet(run / "gold.parquet")
    assert set(gold["gold_label"]) == {"positive"} and (gold["n_answers"] == 1).all()


@pytest.mark.stack
def test_a_push_after_a_gold_draw_keeps_the_drawn_records_blind(argilla_stack, argilla_client, tmp_path):
    """Found in review: route, then gold draw, then push put the suggestion back on drawn records
    (push read routed.parquet, which the draw does not change), and their answers became gold."""
    run = _run(tmp_path)
    frame = pd.read_parquet(run / "prelabels.parquet")
    ok = frame[frame["status"].eq("ok")]
    rng = np.random.default_rng(3)
    ok.assign(route="human_review", priority=rng.uniform(0, 1, len(ok)), calibrated_confidence=0.8).to_parquet(
        run / "routed.parquet", index=False
    )
    drawn = lt.draw_gold(run, 10, client=argilla_client, seed=2)  # after route, before any push
    task = lt.RunDir(run).task_config()
    dataset = argilla_client.datasets(name=task.argilla.dataset, workspace=task.argilla.workspace)
    at_draw = {r.id: r.metadata for r in dataset.records()}
    assert sorted(at_draw) == sorted(drawn.ids)
    # drawn beside the queue: priorities borrowed from the assisted records, ranks among all of them
    assert len({m["priority"] for m in at_draw.values()}) > 1 and len({m["review_rank"] for m in at_draw.values()}) > 1
    lt.push(run, client=argilla_client, vectors=False)
    records = {r.id: r for r in dataset.records(with_suggestions=True)}
    assert len(records) == len(ok)
    for rid in drawn.ids:  # blind: no suggestion, no model metadata, a priority borrowed from the others
        assert len(records[rid].suggestions) == 0 and records[rid].metadata["review_mode"] == "blind"
        assert "llm_label" not in records[rid].metadata
    assisted = [rid for rid in records if rid not in set(drawn.ids)]
    assert all(len(records[rid].suggestions) == 1 for rid in assisted)
    assert len({records[rid].metadata["priority"] for rid in drawn.ids}) > 1  # not all 0.5 any more
    assert not set(drawn.ids) & set(json.loads((run / "assisted_shown.json").read_text()))
    # the gold sample never shrinks and keeps its seed
    with pytest.raises(InputError, match=r"10 records are drawn already and --n is the gold sample size in total"):
        lt.draw_gold(run, 5, client=argilla_client, seed=2)
    with pytest.raises(InputError, match=r"drawn with --seed 2: extend it with that seed"):
        lt.draw_gold(run, 12, client=argilla_client, seed=3)


def test_anchored_drawn_records_count_as_assisted_in_the_review_mode_figures(tmp_path):
    """Found in review: drawn records answered earlier with the suggestion showing counted as blind
    in the assisted-vs-blind agreement (route marks drawn records blind)."""
    run = _run(tmp_path)
    frame = pd.read_parquet(run / "prelabels.parquet")
    frame.assign(route="human_review", priority=0.5, blind=[i % 2 == 0 for i in range(len(frame))]).to_parquet(
        run / "routed.parquet", index=False
    )
    (run / "gold_draw.json").write_text(json.dumps({"ids": ["g02", "g04", "g05"], "anchored_since": {"g02": "t"}}))
    routed = lt.RunDir(run).publish_files().routed.set_index("id")
    # g05, drawn after route (routed.parquet says not blind), was pushed blind: counted blind (review finding)
    assert not routed.loc["g02", "blind"] and routed.loc["g04", "blind"] and routed.loc["g05", "blind"]
    for_review = lt.RunDir(run).routed_for_review().set_index("id")  # what push and loop show: drawn = blind
    assert for_review.loc[["g02", "g04", "g05"], "blind"].all() and not for_review.loc["g01", "blind"]
