"""Retrieved examples end to end (issue 18): `prelabel` with `retrieval.k` sends each record its
nearest labelled records as chat turns (never its own), says so in run.json, reruns from the
cache, and re-asks only the records whose examples changed when reviews arrive. The real
pipeline and MiniLM embeddings against the fake OpenAI-compatible server (the model is not what
is tested here)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from curation.gold import GoldLabelError
from labeltriage import api
from labeltriage.cli import main
from labeltriage.errors import ConfigError, InputError
from tests.support.llm_fake_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["a great film, loved it", "a terrible film, hated it", "an ok film, nothing special", "what a great movie"]
GOLD = ["positive", "negative", "neutral", None]


def _config(tmp_path: Path, k: int) -> Path:
    data = yaml.safe_load((ROOT / "datasets_config" / "sentiment_3class.yaml").read_text())
    data["retrieval"] = {"k": k}
    path = tmp_path / f"retrieval_k{k}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _examples_sent(body: dict) -> tuple[str, list[str]]:
    """The record's text and the example texts of one request (user turns after the config's few-shot)."""
    users = [m["content"] for m in body["messages"] if m["role"] == "user"]
    return users[-1], users[:-1]


@pytest.fixture()
def server():
    with FakeOpenAIServer() as fake:
        yield fake


def _run(tmp_path: Path, server: FakeOpenAIServer, k: int = 2, **options) -> api.PrelabelResult:
    source = tmp_path / "in.jsonl"
    pd.DataFrame({"text": TEXTS, "gold_label": GOLD}).to_json(source, orient="records", lines=True)
    return api.prelabel(
        _config(tmp_path, k),
        source,
        tmp_path / "run",
        backend="openai",
        model="fake",
        base_url=server.base_url,
        **options,
    )


def test_examples_in_the_prompt_never_the_records_own(tmp_path: Path, server: FakeOpenAIServer) -> None:
    shots = len(yaml.safe_load((ROOT / "datasets_config" / "sentiment_3class.yaml").read_text())["few_shot"])
    result = _run(tmp_path, server)
    assert result.summary["retrieval"] == {
        "k": 2,
        "max_example_chars": 300,
        "examples_file": None,
        "pool": 3,
        "pool_by_source": {"gold": 3},
        "left_out_by_source": {},  # the record without a gold label is not a labelled record left out
        "records_with_examples": 4,
    }
    pool = pd.read_parquet(tmp_path / "run" / "examples_pool.parquet")
    assert pool["text"].tolist() == TEXTS[:3] and pool["source"].tolist() == ["gold"] * 3
    assert any("retrieval: up to 2 examples per record from 3 labelled records" in n for n in result.notes)
    assert len(server.bodies) == 4
    frame = result.frame.set_index("text")
    for body in server.bodies:
        record, users = _examples_sent(body)
        retrieved = users[shots:]
        text = next(t for t in TEXTS if t in record)
        assert len(retrieved) == 2 and not any(text in turn for turn in retrieved)
        # the turns are the pool rows named in example_ids, nearest last
        ids = list(frame.loc[text, "example_ids"])
        pool_text = dict(zip(result.frame["id"], result.frame["text"], strict=True))
        assert [pool_text[i] in turn for i, turn in zip(ids, retrieved, strict=True)] == [True, True]
    # the unlabelled record's nearest is the other "great" text; its answer turn is that gold label
    record_4 = next(b for b in server.bodies if TEXTS[3] in _examples_sent(b)[0])
    assert TEXTS[0] in _examples_sent(record_4)[1][-1]
    assert record_4["messages"][-2]["content"] == '{"label": "positive"}'

    again = _run(tmp_path, server)  # a rerun asks nothing
    assert len(server.bodies) == 4 and again.summary["totals"]["cache_hits"] == 4


def test_reviews_join_the_pool_and_only_changed_records_are_asked(tmp_path: Path, server: FakeOpenAIServer) -> None:
    first = _run(tmp_path, server)
    before = dict(zip(first.frame["id"], first.frame["example_ids"].map(list), strict=True))
    unlabelled = first.frame.loc[first.frame["text"] == TEXTS[3], "id"].item()
    pd.DataFrame(
        {
            "record_id": [unlabelled, unlabelled],
            "user": ["ann", "bob"],
            "label": ["positive"] * 2,
            "status": ["submitted"] * 2,
        }
    ).to_parquet(tmp_path / "run" / "responses.parquet")
    assert api.reviews_not_yet_examples(tmp_path / "run") == 1  # what `loop` tells the user to pick up
    second = _run(tmp_path, server)
    assert api.reviews_not_yet_examples(tmp_path / "run") == 0
    assert second.summary["retrieval"]["pool_by_source"] == {"gold": 3, "reviewed": 1}
    after = dict(zip(second.frame["id"], second.frame["example_ids"].map(list), strict=True))
    changed = [rid for rid in before if before[rid] != after[rid]]
    assert changed and unlabelled not in changed  # the reviewed record never sees itself
    assert all(unlabelled in after[rid] for rid in changed)
    assert len(server.bodies) == 4 + len(changed)
    assert second.summary["totals"]["cache_hits"] == 4 - len(changed)


def test_examples_file_and_its_errors(tmp_path: Path, server: FakeOpenAIServer) -> None:
    extra = tmp_path / "labelled.csv"
    pd.DataFrame({"text": ["an awful film", "an awful film"], "label": ["Negative", "negative"]}).to_csv(
        extra, index=False
    )
    result = _run(tmp_path, server, examples=extra)
    retrieval = result.summary["retrieval"]
    assert retrieval["pool_by_source"] == {"gold": 3, "examples": 1}  # `Negative` read as negative
    assert retrieval["left_out_by_source"] == {"examples": 1}  # its repeated text
    assert retrieval["examples_file"] == str(extra.resolve())
    with pytest.raises(ConfigError, match=r"retrieval.k is 0.*Fix: set `retrieval: \{k: 4\}`"):
        _run(tmp_path, server, k=0, examples=extra)
    unknown = tmp_path / "unknown.csv"
    pd.DataFrame({"text": ["x", "y"], "label": ["great", "negative"]}).to_csv(unknown, index=False)
    with pytest.raises(GoldLabelError, match=r"unknown.csv: 1 gold label\(s\) are not in the task's label set"):
        _run(tmp_path, server, examples=unknown)
    bad = tmp_path / "nolabel.csv"
    pd.DataFrame({"text": ["x"]}).to_csv(bad, index=False)
    args = ["prelabel", str(_config(tmp_path, 2)), str(extra), "-o", str(tmp_path / "c"), "--examples", str(bad)]
    out = CliRunner().invoke(main, [*args, "--backend", "openai", "--base-url", server.base_url])
    assert out.exit_code != 0
    assert "nolabel.csv: --examples needs a label column (gold_label or label)" in " ".join(out.output.split())


def test_example_ids_never_collide_with_record_ids(tmp_path: Path, server: FakeOpenAIServer) -> None:
    """Row-number ids in both files: example 0 is not record 0 (only the same text is)."""
    source, extra = tmp_path / "in.csv", tmp_path / "labelled.csv"
    pd.DataFrame({"id": ["0", "1"], "text": ["a great film, loved it", "dull and long"]}).to_csv(source, index=False)
    pd.DataFrame({"id": ["0", "1"], "text": ["loved this movie so much", "dull and long"],
                  "label": ["positive", "negative"]}).to_csv(extra, index=False)  # fmt: skip
    result = api.prelabel(_config(tmp_path, 1), source, tmp_path / "ids", id_column="id", examples=extra,
                          backend="openai", model="fake", base_url=server.base_url)  # fmt: skip
    shown = dict(zip(result.frame["id"], result.frame["example_ids"].map(list), strict=True))
    assert shown == {"0": ["examples:0"], "1": ["examples:0"]}  # record 1 never sees its own text (examples:1)


def test_reviews_of_texts_already_in_the_pool_are_not_pending(tmp_path: Path, server: FakeOpenAIServer) -> None:
    first = _run(tmp_path, server)
    gold_record = first.frame.loc[first.frame["text"] == TEXTS[0], "id"].item()
    pd.DataFrame(
        {"record_id": [gold_record], "user": ["ann"], "label": ["positive"], "status": ["submitted"]}
    ).to_parquet(tmp_path / "run" / "responses.parquet")
    assert api.reviews_not_yet_examples(tmp_path / "run") == 0  # its text is an example already (as gold)
    unlabelled = first.frame.loc[first.frame["text"] == TEXTS[3], "id"].item()
    votes = pd.DataFrame({"record_id": [unlabelled], "user": ["ann"], "label": ["positive"], "status": ["submitted"]})
    votes.to_parquet(tmp_path / "run" / "responses.parquet")
    _run(tmp_path, server)
    assert api.reviews_not_yet_examples(tmp_path / "run") == 0
    votes.assign(label="neutral").to_parquet(tmp_path / "run" / "responses.parquet")  # the majority changed
    assert api.reviews_not_yet_examples(tmp_path / "run") == 1
    (tmp_path / "run" / "examples_pool.parquet").write_text("not parquet")  # a hint never breaks `loop`
    assert api.reviews_not_yet_examples(tmp_path / "run") == 0


def test_examples_file_ids_are_checked_and_a_stale_pool_goes(tmp_path: Path, server: FakeOpenAIServer) -> None:
    extra = tmp_path / "labelled.csv"
    extra.write_text("id,text,label\n1,awful,negative\n1,superb,positive\n")
    with pytest.raises(InputError, match=r"labelled.csv: column 'id' has 1 repeated value.*leave out the `id` column"):
        _run(tmp_path, server, examples=extra)
    extra.write_text("id,text,label\n7,awful,negative\n,superb,positive\n")
    with pytest.raises(InputError, match=r"labelled.csv: column 'id' is empty in 1 row"):
        _run(tmp_path, server, examples=extra)
    extra.write_text("id,text,label\n007,awful,negative\n8,superb,positive\n")
    _run(tmp_path, server, examples=extra)
    pool = pd.read_parquet(tmp_path / "run" / "examples_pool.parquet")
    assert sorted(pool.loc[pool["source"] == "examples", "id"]) == ["examples:007", "examples:8"]
    _run(tmp_path, server, k=0)  # retrieval off: no pool file describing a run that used none
    assert not (tmp_path / "run" / "examples_pool.parquet").exists()


def test_collected_gold_joins_the_pool_with_the_runs_text(tmp_path: Path, server: FakeOpenAIServer) -> None:
    first = _run(tmp_path, server)
    unlabelled = first.frame.loc[first.frame["text"] == TEXTS[3], "id"].item()
    pd.DataFrame({"id": [unlabelled, "not-in-this-run"], "gold_label": ["positive", "negative"]}).to_parquet(
        tmp_path / "run" / "gold.parquet"
    )
    second = _run(tmp_path, server)
    assert second.summary["retrieval"]["pool_by_source"] == {"gold": 3, "collected_gold": 1}
    pool = pd.read_parquet(tmp_path / "run" / "examples_pool.parquet").set_index("id")
    assert pool.loc[unlabelled, "text"] == TEXTS[3] and pool.loc[unlabelled, "source"] == "collected_gold"
