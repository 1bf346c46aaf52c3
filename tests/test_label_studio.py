"""Label Studio as the review tool (issue 14), on a real Label Studio started by the session fixture.

Push (tasks, predictions, blind tasks, idempotent rerun, the by-priority tab), two reviewers
annotating through the API with their own tokens, pull into responses.parquet, agreement and
publish unchanged; the ML backend connected to the project (predictions stored with score and
model version, nothing for blind tasks, backend down then back); edited project labels; an
empty text.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from labeltriage.config import load_task_config
from tests.conftest import free_port

pytestmark = pytest.mark.stack

LABELS = ["positive", "negative", "neutral", "mixed"]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory):
    """One Label Studio for the module (installed once per machine into the user cache)."""
    from label_studio_stack.server import LabelStudioServer

    server = LabelStudioServer(tmp_path_factory.mktemp("ls-home"))
    server.up(port=free_port(), log=lambda *_: None)
    yield server
    server.down(log=lambda *_: None)


@pytest.fixture(scope="module")
def owner(label_studio):
    from labeltriage.label_studio import connect_label_studio

    return connect_label_studio(*label_studio.credentials())


def _run(tmp_path: Path, n: int = 12) -> Path:
    """A routed run: ids r00..; r01 blind (spot check), r02 a failed pre-label, r03 an empty text."""
    config = yaml.safe_load(load_task_config("sentiment").model_dump_json())
    config["argilla"]["dataset"] = f"ls-{uuid.uuid4().hex[:8]}"
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    run.mkdir()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": [f"r{i:02d}" for i in range(n)],
            "text": [f"review {i}: it was {'fine' if i % 2 else 'awful'}" for i in range(n)],
            "llm_label": [LABELS[i % 2] for i in range(n)],
            "llm_confidence": rng.uniform(0.5, 1.0, n).round(3),
            "calibrated_confidence": np.linspace(0.4, 0.9, n).round(3),
            "reasoning": [f"because {i}" for i in range(n)],
            "model": "local:qwen",
            "prompt_hash": "abc123",
            "status": "ok",
            "confidence_kind": "logprob",
            "route": "human_review",
            "priority": np.linspace(0.1, 0.9, n).round(3),
        }
    )
    frame.loc[1, "route"] = "spot_check"
    frame.loc[2, ["status", "llm_label"]] = ["failed", None]
    frame.loc[3, "text"] = ""
    frame.drop(columns=["route", "priority", "calibrated_confidence"]).to_parquet(
        run / "prelabels.parquet", index=False
    )
    frame.to_parquet(run / "routed.parquet", index=False)
    (run / "run.json").write_text(json.dumps({"config": str(tmp_path / "task.yaml"), "model_identity": "local:qwen"}))
    return run


def _tasks(client, project_id: int) -> dict[str, dict]:
    from curation.adapters.labelstudio_io import project_tasks

    return {t["data"]["record_id"]: t for t in project_tasks(client, project_id, with_annotations=True)}


def _annotate(label_studio, username: str, answers: dict[int, str | None]) -> None:
    """``username`` answers tasks through the API with their own token (None = skip)."""
    from curation.adapters.labelstudio_io import LabelStudioClient

    _password, token = label_studio.add_user(username)
    client = LabelStudioClient(label_studio.url, token)
    for task_id, label in answers.items():
        body = (
            {"result": [], "was_cancelled": True}
            if label is None
            else {
                "result": [
                    {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}
                ]
            }  # fmt: skip
        )
        client.post(f"/api/tasks/{task_id}/annotations/", json=body)


def test_an_annotation_waits_for_a_long_write_instead_of_failing(label_studio, owner):
    """A writer holds Label Studio's SQLite database for 8 s; an annotation submitted meanwhile is
    saved once it is done. Was: 500 "database is locked" after Django's 5 s: the answer lost."""
    import sqlite3
    import threading
    import time

    from curation.adapters.labelstudio_io import project_tasks

    config = (
        '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
        '<Choice value="positive"/><Choice value="negative"/></Choices></View>'
    )
    project = owner.post("/api/projects/", json={"title": "lock wait", "label_config": config})
    owner.post(f"/api/projects/{project['id']}/import", json=[{"text": "a fine film"}])
    task = project_tasks(owner, project["id"])[0]
    holder = sqlite3.connect(label_studio.data_dir / "label_studio.sqlite3", timeout=30, isolation_level=None,
                             check_same_thread=False)  # fmt: skip
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long write holds it
    release = threading.Timer(8, holder.execute, args=("COMMIT",))
    release.start()
    started = time.monotonic()
    try:
        owner.post(
            f"/api/tasks/{task['id']}/annotations/",
            json={
                "result": [
                    {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["positive"]}}
                ]
            },
        )
    finally:
        release.join()
        holder.close()
    assert time.monotonic() - started >= 7  # it waited for the lock
    saved = owner.get(f"/api/tasks/{task['id']}/annotations/")
    assert [a["result"][0]["value"]["choices"] for a in saved] == [["positive"]]


def test_push_pull_agreement_publish(label_studio, owner, tmp_path):
    import labeltriage as lt
    from curation.adapters.labelstudio_io import find_project
    from labeltriage.label_studio import pull_label_studio, push_label_studio

    run = _run(tmp_path)
    report = push_label_studio(run, client=owner)
    assert (report.imported, report.updated, report.predictions_removed) == (12, 0, 0)
    project_id = report.project_id
    assert find_project(owner, lt.RunDir(run).task_config().argilla.dataset) == project_id
    tasks = _tasks(owner, project_id)
    assert sorted(tasks) == [f"r{i:02d}" for i in range(12)]
    # an assisted task: the LLM label as a Choices result, its reasoning, score = calibrated confidence
    r05 = tasks["r05"]
    assert len(r05["predictions"]) == 1
    made = r05["predictions"][0]
    assert made["score"] == pytest.approx(
        pd.read_parquet(run / "routed.parquet").set_index("id").loc["r05", "calibrated_confidence"]
    )
    assert made["model_version"] == "local:qwen/abc123"
    by_name = {item["from_name"]: item for item in made["result"]}
    assert by_name["sentiment"]["value"] == {"choices": ["negative"]}
    assert by_name["llm_reasoning"]["value"] == {"text": ["because 5"]}
    # the blind task, the failed pre-label and the data of every task carry nothing of the model
    assert tasks["r01"]["predictions"] == [] and tasks["r02"]["predictions"] == []
    for task in tasks.values():
        assert set(task["data"]) == {"text", "record_id", "priority", "review_rank", "round"}
    assert tasks["r03"]["data"]["text"].startswith("[empty text]")
    # the tab sorted by priority lists the highest first; a blind task shows a priority drawn from the others
    view = int(report.queue_url.rsplit("tab=", 1)[1])
    ordered = owner.get("/api/tasks", params={"view": view, "page_size": 100})["tasks"]
    shown = [t["data"]["priority"] for t in ordered]
    assert shown == sorted(shown, reverse=True) and ordered[0]["data"]["record_id"] == "r11"
    assert tasks["r01"]["data"]["priority"] != pytest.approx(0.1 + 0.8 / 11)
    assert report.queue_url.startswith(f"{label_studio.url}/projects/{project_id}/data?tab=")
    # a rerun imports nothing and duplicates nothing
    again = push_label_studio(run, client=owner)
    assert (again.imported, again.updated, again.predictions_updated) == (0, 0, 0)
    assert len(_tasks(owner, project_id)) == 12
    # a new calibration changes a score: the prediction shown is replaced, not left stale (review finding)
    routed = pd.read_parquet(run / "routed.parquet")
    routed.loc[routed["id"] == "r05", "calibrated_confidence"] = 0.777
    routed.to_parquet(run / "routed.parquet", index=False)
    assert push_label_studio(run, client=owner).predictions_updated == 1
    assert [p["score"] for p in _tasks(owner, project_id)["r05"]["predictions"]] == [pytest.approx(0.777)]
    tasks = _tasks(owner, project_id)

    # two reviewers: alice agrees with the LLM on r04..r11 and skips r04's neighbour r00; bob differs on r06
    ids = {rid: t["id"] for rid, t in tasks.items()}
    alice = {ids[f"r{i:02d}"]: LABELS[i % 2] for i in range(4, 12)} | {ids["r00"]: None}
    bob = {ids[f"r{i:02d}"]: LABELS[i % 2] for i in range(4, 12)} | {ids["r06"]: "neutral"}
    _annotate(label_studio, "alice", alice)
    _annotate(label_studio, "bob", bob)
    pulled = pull_label_studio(run, client=owner)
    assert (pulled.submitted, pulled.discarded, pulled.invalid_label) == (16, 1, 0)
    assert pulled.reviewers == ["alice", "bob"] and pulled.records_with_submitted == 8
    responses = pd.read_parquet(run / "responses.parquet")
    assert set(responses.columns) >= {"record_id", "user", "label", "status", "updated_at", "on_server"}
    row = responses[(responses["record_id"] == "r06") & (responses["user"] == "bob")]
    assert row["label"].tolist() == ["neutral"] and row["status"].tolist() == ["submitted"]

    # agreement and publish read what Label Studio gave, unchanged
    agreed = lt.agreement(run)
    assert agreed.report["n_responses"] == 16
    assert agreed.report["percent_agreement"] == pytest.approx(7 / 8)
    published = lt.publish(run, output=tmp_path / "out")
    final = pd.read_parquet(tmp_path / "out" / "final.parquet").set_index("id")
    # unanimous reviewers: label_source human; a 1-1 tie goes to adjudication
    assert final.loc["r05", "label"] == "negative" and final.loc["r05", "label_source"] == "human"
    assert "r06" not in final.index
    assert published.final.final["label_source"].eq("human").sum() == 7


def test_edited_project_labels_and_labels_outside_the_config(label_studio, owner, tmp_path):
    from curation.adapters.labelstudio_io import config_labels, labeling_config
    from labeltriage.errors import ReviewServerError
    from labeltriage.label_studio import pull_label_studio, push_label_studio

    run = _run(tmp_path, n=6)
    with pytest.raises(
        ReviewServerError, match=r"was never pushed to Label Studio .*or name the project with --project"
    ):
        pull_label_studio(run, client=owner)  # would have pulled another run's project (review finding)
    with pytest.raises(ReviewServerError, match=r"project title 'ab' must have 3 to 50 characters"):
        push_label_studio(run, client=owner, project="ab")
    report = push_label_studio(run, client=owner)
    project_id = report.project_id
    tasks = _tasks(owner, project_id)
    # someone adds a label in Label Studio and uses it: pull reports it, keeps the row, the push puts it back
    from labeltriage.rundir import RunDir

    task = RunDir(run).task_config()
    edited = labeling_config(task).replace(
        '<Choice value="mixed"', '<Choice value="sarcastic"/>\n    <Choice value="mixed"'
    )
    owner.patch(f"/api/projects/{project_id}/", json={"label_config": edited})
    _annotate(label_studio, "carol", {tasks["r04"]["id"]: "sarcastic", tasks["r05"]["id"]: "negative"})
    pulled = pull_label_studio(run, client=owner)
    assert (pulled.submitted, pulled.invalid_label) == (1, 1)
    assert pulled.invalid_examples == [{"record_id": "r04", "user": "carol", "label": ["sarcastic"]}]
    responses = pd.read_parquet(run / "responses.parquet")
    assert responses.loc[responses["record_id"] == "r04", "status"].tolist() == ["invalid_label"]
    with pytest.raises(
        ReviewServerError, match=r"labels the task config removed \(sarcastic\) and annotations use them"
    ):
        push_label_studio(run, client=owner)
    # a label added in the project and not used: the push restores the config's labels
    owner.delete(f"/api/annotations/{_tasks(owner, project_id)['r04']['annotations'][0]['id']}/")
    push_label_studio(run, client=owner)
    config = owner.get(f"/api/projects/{project_id}/")["label_config"]
    assert config_labels(config, "sentiment") == LABELS


def test_ml_backend_serves_the_runs_prelabels(label_studio, owner, tmp_path):
    from curation.adapters.labelstudio_io import connect_backend, request_predictions, stored_predictions
    from labeltriage.label_studio import pull_label_studio, push_label_studio, serve_backend

    run = _run(tmp_path, n=6)
    routed = pd.read_parquet(run / "routed.parquet")
    report = push_label_studio(run, client=owner, project=f"own-title-{uuid.uuid4().hex[:6]}")
    project_id = report.project_id
    tasks = _tasks(owner, project_id)
    for task in tasks.values():  # as if the team had imported the tasks bare: the backend fills them
        for old in task["predictions"]:
            owner.delete(f"/api/predictions/{old['id']}/")
    port = free_port()
    backend = serve_backend(run, port=port).start()
    try:
        connect_backend(owner, project_id, backend.url)
        request_predictions(owner, project_id, [tasks["r04"]["id"], tasks["r01"]["id"]])
        stored = stored_predictions(owner, tasks["r04"]["id"])
        assert len(stored) == 1 and stored[0]["model_version"] == "local:qwen/abc123"
        assert stored[0]["score"] == pytest.approx(routed.set_index("id").loc["r04", "calibrated_confidence"])
        assert {r["from_name"]: r["value"] for r in stored[0]["result"]}["sentiment"] == {"choices": ["positive"]}
        assert stored_predictions(owner, tasks["r01"]["id"]) == []  # blind: never a prediction
        assert backend.predicted == 1
        # a re-route while the backend runs makes r04 a blind spot check: it gets nothing any more
        routed.loc[routed["id"] == "r04", "route"] = "spot_check"
        routed.to_parquet(run / "routed.parquet", index=False)
        owner.delete(f"/api/predictions/{stored[0]['id']}/")
        request_predictions(owner, project_id, [tasks["r04"]["id"]])
        assert stored_predictions(owner, tasks["r04"]["id"]) == []
    finally:
        backend.stop()
    # the backend down: Label Studio still answers, stores nothing, the task stays unlabelled
    request_predictions(owner, project_id, [tasks["r05"]["id"]])
    assert stored_predictions(owner, tasks["r05"]["id"]) == []
    # back on the same address: the same request is answered
    backend = serve_backend(run, port=port).start()
    try:
        request_predictions(owner, project_id, [tasks["r05"]["id"]])
        assert [p["model_version"] for p in stored_predictions(owner, tasks["r05"]["id"])] == ["local:qwen/abc123"]
    finally:
        backend.stop()
    assert httpx.get(f"{label_studio.url}/health").status_code == 200
    # pull (and loop, backend) use the project the run was pushed to, not the config's default
    assert pull_label_studio(run, client=owner).records == 6


def test_server_home_secrets_and_no_default_account(label_studio):
    data = label_studio.secrets()
    assert (label_studio.secrets_file.stat().st_mode & 0o777) == 0o600
    assert (label_studio.home.stat().st_mode & 0o777) == 0o700
    assert len(data["owner_password"]) >= 20 and data["owner_token"]
    database = label_studio.data_dir / "label_studio.sqlite3"
    assert database.is_file() and (database.stat().st_mode & 0o777) == 0o600
    assert data["owner_password"] not in label_studio.log_file.read_text()
    # sign-up without the invitation link is refused; a wrong password does not log in
    page = httpx.Client(base_url=label_studio.url)
    page.get("/user/signup/")
    refused = page.post("/user/signup/", data={"email": "x@y.z", "password": "Aa1!aaaaaaaa",
                                                "csrfmiddlewaretoken": page.cookies.get("csrftoken") or ""},
                        headers={"Referer": label_studio.url + "/user/signup/"})  # fmt: skip
    assert refused.status_code == 403
    assert label_studio.state()["url"].startswith("http://127.0.0.1:")


def test_a_lost_secrets_file_and_another_port_are_refused_clearly(label_studio, tmp_path):
    from label_studio_stack.server import LabelStudioError, LabelStudioServer

    with pytest.raises(LabelStudioError, match=r"already runs at http://127\.0\.0\.1:\d+: .*down. first"):
        label_studio.up(port=1)
    leaky = LabelStudioServer(tmp_path / "leaky")
    leaky.home.mkdir()
    leaky.secrets_file.write_text("{}")
    leaky.secrets_file.chmod(0o644)
    with pytest.raises(LabelStudioError, match=r"secrets.json is readable by others \(mode 644\); run: chmod 600 it"):
        leaky.secrets()
    orphan = LabelStudioServer(tmp_path / "home")
    orphan.data_dir.mkdir(parents=True)
    (orphan.data_dir / "label_studio.sqlite3").write_bytes(b"")
    with pytest.raises(LabelStudioError, match=r"made with a secrets file that is gone .*move .* away to start afresh"):
        orphan.up(log=lambda *_: None)


SCREENSHOT_NAME = "label_studio_task.png"


def test_a_reviewer_sees_the_prediction_and_reasoning_in_the_browser(label_studio, owner, tmp_path):
    """A reviewer logs in through Label Studio's form, opens an assisted task from the by-priority
    tab: the LLM label is pre-selected, the reasoning and the model version with its score shown;
    changes the label and submits, and the pull has exactly that. A blind task shows nothing of the
    model. A screenshot goes to label_studio_task.png (``LABELTRIAGE_RESULTS_DIR`` refreshes the
    published one in benchmarks/results/)."""
    import os

    from playwright.sync_api import expect

    from labeltriage.label_studio import pull_label_studio, push_label_studio
    from tests.support.browser_chromium import chromium_page

    run = _run(tmp_path, n=6)
    report = push_label_studio(run, client=owner)
    tasks = _tasks(owner, report.project_id)
    password, _token = label_studio.add_user("dana")
    with chromium_page() as page:
        page.goto(f"{label_studio.url}/user/login/")
        page.locator("input[name=email]").fill("dana@labeltriage.local")
        page.locator("input[name=password]").fill(password)
        page.locator("button[type=submit]").first.click()
        page.wait_for_url(lambda url: "login" not in url)
        page.goto(f"{report.queue_url}&task={tasks['r05']['id']}")
        choice = page.locator("input.ant-checkbox-input[name=negative]")
        expect(choice).to_be_checked(timeout=90_000)
        expect(page.locator("input.ant-checkbox-input[name=positive]")).not_to_be_checked()
        expect(page.get_by_text("because 5", exact=True)).to_be_visible()
        expect(page.get_by_text("local:qw", exact=False).first).to_be_visible()
        screenshot = Path(os.environ.get("LABELTRIAGE_RESULTS_DIR") or tmp_path) / SCREENSHOT_NAME
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot))
        # the reviewer corrects the LLM and submits
        page.locator("label.lsf-choice__checkbox", has_text="positive").click()
        expect(page.locator("input.ant-checkbox-input[name=positive]")).to_be_checked()
        expect(choice).not_to_be_checked()
        page.get_by_role("button", name="Submit").click()
        for _ in range(180):  # the UI saves in the background, then opens the next task
            if _tasks(owner, report.project_id)["r05"]["annotations"]:
                break
            page.wait_for_timeout(500)
        # a blind task: no label pre-selected, no reasoning, no model version
        page.goto(f"{report.queue_url}&task={tasks['r01']['id']}")
        expect(page.locator(".lsf-richtext__line", has_text="review 1: it was fine")).to_be_visible(timeout=90_000)
        expect(page.locator("input.ant-checkbox-input:checked")).to_have_count(0)
        expect(page.get_by_text("because 1", exact=True)).to_have_count(0)
        expect(page.get_by_text("local:qw", exact=False)).to_have_count(0)
    pulled = pull_label_studio(run, client=owner)
    assert pulled.submitted == 1
    responses = pd.read_parquet(run / "responses.parquet")
    assert responses[["record_id", "user", "label", "status"]].values.tolist() == [
        ["r05", "dana", "positive", "submitted"]
    ]


def test_annotations_trigger_a_feedback_round(label_studio, owner, tmp_path):
    """Label Studio posts annotation events to the backend's /webhook (it registers it when the
    backend is connected); every 2 of them a round runs: pull, retrain, re-prioritise the tasks."""
    import time

    from curation.adapters.labelstudio_io import connect_backend
    from labeltriage.label_studio import push_label_studio, round_label_studio, serve_backend

    run = _run(tmp_path, n=8)
    report = push_label_studio(run, client=owner)
    rounds: list[int] = []
    backend = serve_backend(
        run, on_batch=lambda _n: rounds.append(round_label_studio(run, client=owner).round), every=2
    ).start()
    try:
        connect_backend(owner, report.project_id, backend.url)
        tasks = _tasks(owner, report.project_id)
        _annotate(label_studio, "erin", {tasks["r04"]["id"]: "positive", tasks["r05"]["id"]: "neutral"})
        for _ in range(240):
            if rounds:
                break
            time.sleep(0.5)
    finally:
        backend.stop()
    assert rounds == [1] and backend.events == 2 and backend.errors == [] and backend.round_errors == []
    loop = json.loads((run / "loop.json").read_text())
    assert loop["round"] == 1 and loop["pulled"]["submitted"] == 2
    after = _tasks(owner, report.project_id)
    assert {t["data"]["round"] for t in after.values()} == {1}
    routed = pd.read_parquet(run / "routed.parquet").set_index("id")
    assert after["r06"]["data"]["priority"] == pytest.approx(routed.loc["r06", "priority"])
