"""Issue 12, the review side under faults, on the real stack: each test fails without its fix."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.reviewers import reviewer_headers
from tests.test_review_faults import _config

pytestmark = pytest.mark.stack


def test_get_record_with_a_vector_answers(argilla_stack, argilla_client) -> None:
    """GET /api/v1/records/{id} answered 500 (MissingGreenlet) for every record with a vector."""
    import argilla as rg

    settings = rg.Settings(
        fields=[rg.TextField("text")],
        questions=[rg.LabelQuestion("sentiment", labels=["positive", "negative"])],
        vectors=[rg.VectorField("embedding", dimensions=3)],
    )
    dataset = rg.Dataset(
        f"vec-{uuid.uuid4().hex[:6]}", settings=settings, workspace="labeltriage", client=argilla_client
    ).create()
    dataset.records.log(
        [
            rg.Record(id="with-vector", fields={"text": "hi"}, vectors={"embedding": [0.1, 0.2, 0.3]}),
            rg.Record(id="without", fields={"text": "no vector"}),
        ]
    )
    api_url, api_key = argilla_stack.credentials()
    for record in dataset.records(with_vectors=True):
        response = httpx.get(f"{api_url}/api/v1/records/{record._server_id}", headers={"X-Argilla-Api-Key": api_key})
        assert response.status_code == 200, response.text
        expected = {"embedding": [0.1, 0.2, 0.3]} if record.id == "with-vector" else {}
        assert response.json()["vectors"] == expected


def _sentiment_dataset(client, prefix: str, n: int):
    """A new Argilla dataset with records r0..r{n-1} and one positive/negative question."""
    import argilla as rg

    settings = rg.Settings(
        fields=[rg.TextField("text")], questions=[rg.LabelQuestion("sentiment", labels=["positive", "negative"])]
    )
    dataset = rg.Dataset(f"{prefix}-{uuid.uuid4().hex[:6]}", settings=settings, workspace="labeltriage",
                         client=client).create()  # fmt: skip
    dataset.records.log([rg.Record(id=f"r{i}", fields={"text": f"text {i}"}) for i in range(n)])
    return dataset


def test_concurrent_submits_are_all_kept_and_duplicates_are_conflicts(argilla_stack, argilla_client) -> None:
    """Six reviewers submit each record at the same moment, each five times over: every reviewer's
    first submit is kept (201), the repeats are 409, never 500. Was: some 500 ("database is locked"
    once a submit waited over argilla-server's 5 s for SQLite's write lock; 9 of 60 in a CI run on
    a 2-core AMD EPYC, not reproducible alone: the test below holds the lock on purpose)."""
    import collections
    import threading

    dataset = _sentiment_dataset(argilla_client, "dup", 4)
    api_url, _ = argilla_stack.credentials()
    reviewers = [reviewer_headers(argilla_stack, f"rush-{uuid.uuid4().hex[:6]}-{k}") for k in range(6)]
    codes: collections.Counter[int] = collections.Counter()
    for record in dataset.records:
        barrier = threading.Barrier(len(reviewers) * 5)

        def submit(headers: dict[str, str], server_id=record._server_id, barrier=barrier) -> None:
            with httpx.Client(headers=headers, timeout=60) as client:
                barrier.wait()
                response = client.post(
                    f"{api_url}/api/v1/records/{server_id}/responses",
                    json={"values": {"sentiment": {"value": "positive"}}, "status": "submitted"},
                )
                codes[response.status_code] += 1

        threads = [threading.Thread(target=submit, args=(headers,)) for headers in reviewers for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert codes == {201: 4 * 6, 409: 4 * 6 * 4}, codes
    responses = [r for record in dataset.records(with_responses=True) for r in record.responses]
    assert len(responses) == 4 * 6


def test_a_submit_waits_for_a_long_write_instead_of_failing(argilla_stack, argilla_client) -> None:
    """A writer holds Argilla's SQLite database for 8 s (a long bulk write, the worker); a reviewer
    who submits meanwhile gets 201 once it is done. Was: 500 "database is locked" after 5 s."""
    import sqlite3
    import threading
    import time

    database = argilla_stack.home / "argilla" / "argilla.db"
    if not database.is_file():
        pytest.skip("the session's stack is not on SQLite")
    dataset = _sentiment_dataset(argilla_client, "wait", 1)
    server_id = next(iter(dataset.records))._server_id
    api_url, api_key = argilla_stack.credentials()
    holder = sqlite3.connect(database, timeout=30, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long write holds it
    release = threading.Timer(8, holder.execute, args=("COMMIT",))
    release.start()
    started = time.monotonic()
    try:
        response = httpx.post(
            f"{api_url}/api/v1/records/{server_id}/responses",
            json={"values": {"sentiment": {"value": "negative"}}, "status": "submitted"},
            headers={"X-Argilla-Api-Key": api_key},
            timeout=120,
        )
    finally:
        release.join()
        holder.close()
    assert response.status_code == 201, response.text
    assert time.monotonic() - started >= 7  # it waited for the lock
    answers = [r.value for record in dataset.records(with_responses=True) for r in record.responses]
    assert answers == ["negative"]


def test_store_restored_from_an_older_copy_is_rebuilt(private_stack, tmp_path) -> None:
    """Same record counts, older content: a filtered search found 0 of 50 before the stamp."""
    import shutil

    import argilla as rg

    from tests.conftest import free_port
    from tests.test_stack import _client, _counts, _create_dataset

    stack = private_stack
    port = free_port()
    stack.up(port=port, log=lambda *_: None)
    dataset = _create_dataset(stack, "restored")
    dataset.records.log([rg.Record(id=f"r-{i}", fields={"text": f"t {i}"}, metadata={"n": -1}) for i in range(50)])
    assert _counts(stack, "restored") == (50, 0)  # the filter is n >= 0
    stack.down(log=lambda *_: None)
    store_dir = stack.home / "argilla"
    backup = tmp_path / "backup"
    backup.mkdir()
    for path in store_dir.glob("search.sqlite3*"):  # what an operator copies
        shutil.copy2(path, backup / path.name)

    stack.up(port=port, log=lambda *_: None)
    dataset = _client(stack).datasets("restored", workspace="labeltriage")
    dataset.records.log([rg.Record(id=f"r-{i}", fields={"text": f"t {i}"}, metadata={"n": i}) for i in range(50)])
    assert _counts(stack, "restored") == (50, 50)
    stack.down(log=lambda *_: None)

    for path in store_dir.glob("search.sqlite3*"):
        path.unlink()
    for path in backup.iterdir():
        shutil.copy2(path, store_dir / path.name)
    said: list[str] = []
    stack.up(port=port, log=said.append)
    assert _counts(stack, "restored") == (50, 50)
    assert "older than its last write" in (stack.logs / "server.log").read_text()
    assert any("being rebuilt" in line for line in said)
    # the next start rebuilds nothing and says nothing of it (it read the last start's lines: issue 16)
    stack.down(log=lambda *_: None)
    said.clear()
    stack.up(port=port, log=said.append)
    assert not any("rebuilt" in line for line in said), said


def test_stack_home_is_private(argilla_stack) -> None:
    """argilla.db (the owner's API key in plain text), logs and stack.json were world-readable."""
    import os
    import stat

    home = argilla_stack.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    seen = {"argilla.db", "stack.json", "secrets.json", "server.log", "search.sqlite3"}
    found = set()
    for root, dirs, files in os.walk(home):
        for name in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o700, os.path.join(root, name)
        for name in files:
            path = os.path.join(root, name)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
            found.add(name)
    assert seen <= found


def test_session_token_survives_a_restart(private_stack) -> None:
    """A reviewer's UI session (a signed token) kept working across `stack down` + `stack up`."""
    from tests.conftest import free_port

    stack = private_stack
    port = free_port()
    state = stack.up(port=port, log=lambda *_: None)
    password = stack.add_user("alice", role="annotator")
    token = httpx.post(f"{state.api_url}/api/v1/token", data={"username": "alice", "password": password})
    assert token.status_code == 201
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert httpx.get(f"{state.api_url}/api/v1/me", headers=bearer).json()["username"] == "alice"
    import argilla as rg

    from tests.test_stack import _client

    client = _client(stack)
    settings = rg.Settings(
        fields=[rg.TextField("text")], questions=[rg.LabelQuestion("sentiment", labels=["positive", "negative"])]
    )
    dataset = rg.Dataset("restart", settings=settings, workspace="labeltriage", client=client).create()
    dataset.records.log([rg.Record(id="r-0", fields={"text": "after the restart"})])
    server_id = next(iter(dataset.records))._server_id
    stack.down(log=lambda *_: None)
    state = stack.up(port=port, log=lambda *_: None)
    me = httpx.get(f"{state.api_url}/api/v1/me", headers=bearer)
    assert me.status_code == 200 and me.json()["username"] == "alice"
    submit = httpx.post(
        f"{state.api_url}/api/v1/records/{server_id}/responses",
        json={"values": {"sentiment": {"value": "positive"}}, "status": "submitted"},
        headers=bearer,
    )
    assert submit.status_code == 201, submit.text
    responses = [r for record in dataset.records(with_responses=True) for r in record.responses]
    assert [(r.value, str(r.status.value if hasattr(r.status, "value") else r.status)) for r in responses] == [
        ("positive", "submitted")
    ]


def _queue(n: int):
    import pandas as pd

    return pd.DataFrame(
        {
            "id": [f"q-{i}" for i in range(n)],
            "text": [f"review {i}" for i in range(n)],
            "llm_label": "positive",
            "calibrated_confidence": 0.5,
            "reasoning": "r",
            "model": "m",
            "prompt_hash": "h",
            "status": "ok",
            "route": "human_review",
            "priority": 0.5,
        }
    )


def test_push_checkpoint_knows_where_it_pushed(argilla_client, tmp_path) -> None:
    """After the dataset was deleted, or to another dataset, `push` said 'pushed 0 (30 already there)'."""
    from curation.adapters import argilla_io

    checkpoint = tmp_path / "push_checkpoint.json"
    config = _config(f"ckpt-{uuid.uuid4().hex[:6]}")
    dataset = argilla_io.ensure_dataset(argilla_client, config, vector_dimensions=None)
    records = argilla_io.build_records(_queue(30), config)
    assert argilla_io.push_records(dataset, records, checkpoint=checkpoint).pushed == 30
    assert argilla_io.push_records(dataset, records, checkpoint=checkpoint).skipped_already_pushed == 30

    dataset.delete()  # by hand in the UI
    dataset = argilla_io.ensure_dataset(argilla_client, config, vector_dimensions=None)
    report = argilla_io.push_records(dataset, records, checkpoint=checkpoint)
    assert (report.pushed, report.skipped_already_pushed) == (30, 0)
    assert "deleted since, or created again" in report.checkpoint_note
    assert len(list(dataset.records)) == 30

    other = argilla_io.ensure_dataset(argilla_client, _config(f"other-{uuid.uuid4().hex[:6]}"), None)
    report = argilla_io.push_records(other, records, checkpoint=checkpoint)
    assert report.pushed == 30 and "the last push went to labeltriage/ckpt-" in report.checkpoint_note

    # records deleted on the server are pushed again, the rest stay skipped
    other.records.delete([record for record in other.records if record.id in {"q-1", "q-2"}])
    report = argilla_io.push_records(other, records, checkpoint=checkpoint)
    assert (report.pushed, report.skipped_already_pushed) == (2, 28)
    assert "2 pushed record(s) are gone from the server" in report.checkpoint_note

    # another run pushes into the same dataset: the server then holds more than this checkpoint
    # lists, and a deleted record of this run still has to be noticed (a review found it was not)
    more = _queue(40).iloc[30:].reset_index(drop=True)
    argilla_io.push_records(other, argilla_io.build_records(more, config), checkpoint=tmp_path / "other.json")
    other.records.delete([record for record in other.records if record.id == "q-3"])
    report = argilla_io.push_records(other, records, checkpoint=checkpoint)
    assert (report.pushed, report.skipped_already_pushed) == (1, 29)


def test_no_half_created_dataset_when_redis_is_down(private_stack) -> None:
    """Redis down during creation left a dataset without its question; every later push refused."""
    import os
    import signal

    import argilla as rg

    from curation.adapters import argilla_io
    from tests.conftest import free_port

    stack = private_stack
    port = free_port()
    stack.up(port=port, log=lambda *_: None)
    api_url, api_key = stack.credentials()
    client = rg.Argilla(api_url=api_url, api_key=api_key, timeout=30, retries=1)
    config = _config("half")
    os.kill(stack.state().pids["redis"], signal.SIGKILL)
    with pytest.raises(argilla_io.ArgillaIOError) as failure:
        argilla_io.ensure_dataset(client, config, vector_dimensions=None)
    message = str(failure.value)
    assert "\n" not in message and "could not create the Argilla dataset labeltriage/half" in message
    assert "rerun the same command" in message

    stack.down(log=lambda *_: None)
    stack.up(port=port, log=lambda *_: None)
    client = rg.Argilla(api_url=api_url, api_key=api_key, timeout=30, retries=1)
    dataset = argilla_io.ensure_dataset(client, config, vector_dimensions=None)
    assert dataset.settings.questions["sentiment"] is not None
    report = argilla_io.push_records(dataset, argilla_io.build_records(_queue(5), config))
    assert report.pushed == 5 and len(list(dataset.records)) == 5


def _cli_run(argilla_stack, tmp_path, n: int = 8, text=None):
    """A run directory whose config pushes to a dataset of its own; the CLI's env for this stack."""
    import json
    from pathlib import Path

    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "datasets_config" / "sentiment.yaml").read_text())
    config["argilla"]["dataset"] = f"side-{uuid.uuid4().hex[:8]}"
    config_path = tmp_path / "sentiment.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    run.mkdir()
    queue = _queue(n)
    if text is not None:
        queue.loc[0, "text"] = text
    queue.to_parquet(run / "routed.parquet", index=False)
    (run / "run.json").write_text(json.dumps({"config": str(config_path)}))
    api_url, api_key = argilla_stack.credentials()
    return run, config_path, config, {"ARGILLA_API_URL": api_url, "ARGILLA_API_KEY": api_key}


def _cli(args: list[str], env: dict):
    from click.testing import CliRunner

    from labeltriage.cli import main

    result = CliRunner(mix_stderr=False).invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def _answer(argilla_stack, dataset_name: str, username: str, record_ids: list[str], label: str) -> None:
    api_url, api_key = argilla_stack.credentials()
    owner = {"X-Argilla-Api-Key": api_key}
    datasets = httpx.get(f"{api_url}/api/v1/me/datasets", headers=owner).json()["items"]
    dataset_id = next(d["id"] for d in datasets if d["name"] == dataset_name)
    items = httpx.get(f"{api_url}/api/v1/datasets/{dataset_id}/records", headers=owner, params={"limit": 100}).json()
    server_ids = {r["external_id"]: r["id"] for r in items["items"]}
    headers = reviewer_headers(argilla_stack, username)
    for rid in record_ids:
        body = {"values": {"sentiment": {"value": label}}, "status": "submitted"}
        assert httpx.post(
            f"{api_url}/api/v1/records/{server_ids[rid]}/responses", json=body, headers=headers
        ).is_success


def test_a_deleted_reviewer_keeps_their_labels(argilla_stack, argilla_client, tmp_path) -> None:
    """An admin deleting a reviewer's account deleted their 6 answers; the next pull wrote 0 and
    the next publish 0 records, silently."""
    import pandas as pd

    run, _, config, env = _cli_run(argilla_stack, tmp_path)
    _cli(["push", str(run), "--no-vectors"], env)
    reviewer = f"gone_{uuid.uuid4().hex[:6]}"
    _answer(argilla_stack, config["argilla"]["dataset"], reviewer, [f"q-{i}" for i in range(6)], "negative")
    _cli(["pull", str(run)], env)
    _cli(["publish", str(run)], env)
    assert len(pd.read_parquet(run / "final.parquet")) == 6

    argilla_client.users(reviewer).delete()
    result = _cli(["pull", str(run)], env)
    assert "6 submitted response(s) saved by an earlier pull are no longer on the server" in result.stderr
    assert "--drop-missing" in result.stderr
    assert "pulled 6 submitted response(s) (6 of them saved by earlier pulls, no longer on the server)" in (
        result.stdout)  # fmt: skip
    responses = pd.read_parquet(run / "responses.parquet")
    assert len(responses) == 6 and not responses["on_server"].any() and set(responses["user"]) == {reviewer}
    _cli(["publish", str(run)], env)
    final = pd.read_parquet(run / "final.parquet")
    assert len(final) == 6 and set(final["label"]) == {"negative"} and set(final["label_source"]) == {"human"}
    # a rerun keeps them again; the user may choose to drop them
    _cli(["pull", str(run)], env)
    assert len(pd.read_parquet(run / "responses.parquet")) == 6
    result = _cli(["pull", str(run), "--drop-missing"], env)
    assert "dropped 6 response(s)" in result.stderr and len(pd.read_parquet(run / "responses.parquet")) == 0


def test_pull_on_an_edited_config_names_the_changed_labels(argilla_stack, tmp_path) -> None:
    """'outside the question' sent users to Argilla; the labels changed in the config."""
    import yaml

    run, config_path, config, env = _cli_run(argilla_stack, tmp_path)
    _cli(["push", str(run), "--no-vectors"], env)
    _answer(argilla_stack, config["argilla"]["dataset"], f"r_{uuid.uuid4().hex[:6]}", ["q-0", "q-1"], "mixed")
    config["labels"] = [label for label in config["labels"] if label["name"] != "mixed"]
    config["few_shot"] = [example for example in config.get("few_shot", []) if example["label"] != "mixed"]
    config["labels"].append({"name": "ambivalent", "description": "both"})
    config_path.write_text(yaml.safe_dump(config))
    result = _cli(["pull", str(run)], env)
    assert "2 with a label outside the task config's labels" in result.stdout
    assert f"the task config ({config_path}) no longer has 'mixed', adds 'ambivalent'" in result.stderr
    assert "Fix: restore the config's labels" in result.stderr


def test_an_empty_text_is_marked_for_reviewers(argilla_stack, argilla_client, tmp_path) -> None:
    from curation.adapters.argilla_io import EMPTY_TEXT_NOTE

    run, _, config, env = _cli_run(argilla_stack, tmp_path, n=3, text="")
    _cli(["push", str(run), "--no-vectors"], env)
    dataset = argilla_client.datasets(config["argilla"]["dataset"], workspace="labeltriage")
    texts = {record.id: record.fields["text"] for record in dataset.records}
    assert texts["q-0"] == EMPTY_TEXT_NOTE and texts["q-1"] == "review 1"


def test_push_prints_only_our_output(argilla_stack, tmp_path) -> None:
    """Argilla's 'Dataset ... not found' UserWarning, 'batch size ... was normalized' and tqdm bars
    appeared between our lines."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    run, _, _, env = _cli_run(argilla_stack, tmp_path, n=5)
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "labeltriage.cli", "push", str(run), "--no-vectors"],
        env={**os.environ, **env, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for noise in ("UserWarning", "not found", "was normalized", "Sending records", "batch/s"):
        assert noise not in output, output
    assert "pushed 5 record(s)" in result.stdout
