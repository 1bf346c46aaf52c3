"""The cascade before humans (issue 18, point 5): `curation.cascade` (pure) and `labeltriage
second-opinion` against the fake OpenAI-compatible server (real HTTP, the real openai client and
pipeline; it answers the first label named in the text), then calibrate and route on its score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from curation.cascade import asked_mask, cascade_confidence
from labeltriage import api
from labeltriage.cli import main as cli
from labeltriage.errors import ConfigError, InputError
from tests.support.llm_fake_server import FakeOpenAIServer
from tests.test_contracts import _named, row

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["positive", "negative", "neutral"]


def test_the_score_per_case() -> None:
    first = np.array(["positive", "negative", "neutral", "positive", "negative", None], dtype=object)
    s1 = np.array([0.95, 0.6, 0.7, 0.5, 0.4, np.nan])
    second = np.array([None, "negative", "positive", None, "negative", None], dtype=object)
    s2 = np.array([np.nan, 0.9, 0.8, np.nan, 0.6, np.nan])
    asked = asked_mask(s1, 0.9)
    assert asked.tolist() == [False, True, True, True, True, False]  # NaN (a failed pre-label): never asked
    scores = cascade_confidence(first, s1, second, s2, asked)
    # not asked: s1; agree: mean; differ: s1 * (1 - s2); asked, unanswered: s1; failed: NaN
    np.testing.assert_allclose(scores[:5], [0.95, 0.75, 0.7 * 0.2, 0.5, 0.5])
    assert np.isnan(scores[5])
    assert asked_mask(s1, 1.0).tolist() == [True] * 5 + [False]
    # 1.0 asks every answered record, those at exactly 1.0 too (a stated confidence often is 1.0)
    assert asked_mask([1.0, 0.999, np.nan], 1.0).tolist() == [True, True, False]
    assert asked_mask([1.0, 0.999], 0.999).tolist() == [False, False]


def test_the_score_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="below must be in"):
        asked_mask([0.5], 0.0)
    with pytest.raises(ValueError, match="one length"):
        cascade_confidence(["a"], [0.5], ["a", "b"], [0.5, 0.5], [True, True])
    with pytest.raises(ValueError, match=r"second_scores must be in \[0, 1\]"):
        cascade_confidence(["a"], [0.5], ["a"], [1.5], [True])


def _run(tmp_path: Path, n: int = 400, seed: int = 0) -> tuple[Path, Path, pd.DataFrame]:
    """A pre-labelled run: the truth is the label word in each text (what the fake server answers);
    the first labeller is wrong on a quarter of the records, less confident there; gold for a
    random 150 (half of a small run)."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(LABELS, n)
    wrong = rng.random(n) < 0.25
    first = np.where(wrong, np.roll(truth, 1), truth)
    first = np.where(wrong & (first == truth), [LABELS[(LABELS.index(t) + 1) % 3] for t in truth], first)
    conf = np.where(wrong, rng.uniform(0.4, 0.9, n), rng.uniform(0.7, 1.0, n))
    status = np.where(np.arange(n) % 40 == 7, "failed", "ok")
    frame = pd.DataFrame({
        "id": [f"r{i:03d}" for i in range(n)], "text": [f"record {i} says {t}" for i, t in enumerate(truth)],
        "llm_label": np.where(status == "ok", first, None), "llm_confidence": np.where(status == "ok", conf, np.nan),
        "confidence_stated": np.where(status == "ok", conf, np.nan), "status": status,
    })  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    frame.to_parquet(run / "prelabels.parquet", index=False)
    gold = tmp_path / "gold.csv"
    drawn = np.sort(rng.choice(n, min(150, n // 2), replace=False))
    pd.DataFrame({"id": frame["id"].iloc[drawn], "gold_label": truth[drawn]}).to_csv(gold, index=False)
    return run, gold, frame


def _second_config(tmp_path: Path, server: FakeOpenAIServer, name: str = "second", **changes: object) -> Path:
    data = yaml.safe_load((ROOT / "datasets_config" / "sentiment_3class.yaml").read_text())
    data["model"].update(backend="openai", name="fake", base_url=server.base_url, api_key_env="FAKE_KEY")
    data.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_second_opinion_asks_the_unsure_once_and_route_certifies_on_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k")
    first_config = ROOT / "datasets_config" / "sentiment_3class.yaml"
    run, gold, frame = _run(tmp_path)
    ok = frame["status"].eq("ok")
    below = 0.9
    with FakeOpenAIServer() as server:
        second = _second_config(tmp_path, server)
        report = api.second_opinion(run, second, config=first_config, below=below)
        unsure = ok & (frame["llm_confidence"] < below)
        assert report["n_asked"] == int(unsure.sum()) == server.requests == report["model_calls"] > 0
        asked_texts = {_text(body) for body in server.bodies}
        assert asked_texts == set(frame.loc[unsure, "text"])  # only the unsure ok records, each once
        out = pd.read_parquet(run / "cascade_confidence.parquet")
        assert out["id"].tolist() == frame["id"].tolist()  # records in = records out
        expected_status = np.where(~ok, "first_failed", np.where(unsure, "ok", "not_asked"))
        assert out["second_status"].tolist() == expected_status.tolist()
        assert set(out.columns) <= _named(row("cascade_confidence.parquet"))  # documented in CONTRACTS.md
        second_run = pd.read_parquet(run / "second_opinion" / "prelabels.parquet").set_index("id")
        truth = frame["text"].str.rsplit(" ", n=1).str[1]
        assert (second_run["llm_label"] == truth[unsure].set_axis(frame.loc[unsure, "id"])).all()
        s1, s2 = frame["llm_confidence"].to_numpy(), out["second_confidence"].to_numpy()
        agree = unsure & (frame["llm_label"] == truth)
        differ = unsure & ~agree
        np.testing.assert_allclose(out.loc[agree, "confidence_cascade"], (s1[agree] + s2[agree]) / 2)
        np.testing.assert_allclose(out.loc[differ, "confidence_cascade"], s1[differ] * (1 - s2[differ]))
        np.testing.assert_allclose(out.loc[ok & ~unsure, "confidence_cascade"], s1[ok & ~unsure])
        assert out.loc[~ok, "confidence_cascade"].isna().all()
        assert (report["n_agree"], report["n_disagree"]) == (int(agree.sum()), int(differ.sum()))
        # a rerun: no call (the second run's cache), the same scores
        requests = server.requests
        again = CliRunner().invoke(cli, ["second-opinion", str(run), "--second", str(second), "--below", str(below),
                                         "--quiet", "--config", str(first_config)])  # fmt: skip
        assert again.exit_code == 0, again.output
        assert "0 model call(s)" in again.output and server.requests == requests
        pd.testing.assert_frame_equal(pd.read_parquet(run / "cascade_confidence.parquet"), out)
    calibrated = CliRunner().invoke(cli, ["calibrate", str(run), "--gold", str(gold),
                                          "--confidence-column", "confidence_cascade"])  # fmt: skip
    assert calibrated.exit_code == 0, calibrated.output
    routed = CliRunner().invoke(cli, ["route", str(run), "--target-precision", "0.9"])
    assert routed.exit_code == 0, routed.output
    routing = json.loads((run / "routing.json").read_text())
    assert routing["confidence_column"] == "confidence_cascade"
    table = pd.read_parquet(run / "routed.parquet")
    auto = table[table["route"].isin(["auto_accept", "spot_check"])]
    assert len(auto) > 0  # the wrong first labels the second answer contradicts sink below the threshold
    right = (auto["llm_label"] == auto["text"].str.rsplit(" ", n=1).str[1]).mean()
    assert right >= 0.9  # the certificate's statement against the known truth


def _text(body: dict) -> str:
    content = body["messages"][-1]["content"]
    return content.split("<text>", 1)[1].split("</text>", 1)[0].strip() if "<text>" in content else content


def test_second_opinion_errors_name_the_fix(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k")
    first_config = ROOT / "datasets_config" / "sentiment_3class.yaml"
    run, gold, frame = _run(tmp_path, n=40)
    with FakeOpenAIServer() as server:
        other_labels = _second_config(
            tmp_path, server, "other", labels=[{"name": "good"}, {"name": "bad"}], few_shot=[]
        )
        with pytest.raises(ConfigError, match="differ from the run's .* same label set"):
            api.second_opinion(run, other_labels, config=first_config)
        with pytest.raises(ConfigError, match=r"below must be in \(0, 1\]"):
            api.second_opinion(run, _second_config(tmp_path, server), config=first_config, below=1.5)
        with pytest.raises(ConfigError, match=r"aspects.yaml \(the run's config\): task_type multi_label"):
            api.second_opinion(run, _second_config(tmp_path, server), config=ROOT / "datasets_config" / "aspects.yaml")
        with pytest.raises(ConfigError, match="own config again would repeat its answers.*consistency"):
            api.second_opinion(run, first_config, config=first_config)
        refused = CliRunner().invoke(cli, ["second-opinion", str(run), "--second", str(other_labels), "--config",
                                           str(first_config)])  # fmt: skip
        assert refused.exit_code == ConfigError.exit_code and "same label set" in refused.output, refused.output
        # the labels in another order are the same label set
        reordered = _second_config(tmp_path, server, "reordered", labels=[{"name": n} for n in reversed(LABELS)])
        assert api.second_opinion(run, reordered, config=first_config)["n_asked"] == 39
    # pre-labelled again, same ids, other answers: the cascade's file describes the old ones
    changed = frame.assign(llm_label=np.where(frame["status"].eq("ok"), "neutral", None))
    changed.to_parquet(run / "prelabels.parquet", index=False)
    with pytest.raises(InputError, match="made for other first answers .*rerun `labeltriage second-opinion"):
        api.calibrate(run, gold=gold, confidence_column="confidence_cascade")
    # one more record: no score for it
    grown = pd.concat([frame, frame.iloc[[0]].assign(id="new", text="record new says positive")])
    grown.to_parquet(run / "prelabels.parquet", index=False)
    with pytest.raises(InputError, match="confidence_cascade is missing on 1 ok record.*rerun `labeltriage second-op"):
        api.calibrate(run, gold=gold, confidence_column="confidence_cascade")


def test_the_score_is_fixed_before_gold_and_route_refuses_one_changed_after(tmp_path: Path, monkeypatch) -> None:
    """The certificate holds for a score fixed before the gold is seen: the score never reads a
    gold label, and route refuses a score changed since calibrate (every setting tried is kept)."""
    monkeypatch.setenv("FAKE_KEY", "k")
    first_config = ROOT / "datasets_config" / "sentiment_3class.yaml"
    run, gold, frame = _run(tmp_path)
    twin = tmp_path / "twin"
    twin.mkdir()
    truth = frame["text"].str.rsplit(" ", n=1).str[1]
    frame.assign(gold_label=truth).to_parquet(twin / "prelabels.parquet", index=False)  # the same run, with gold
    with FakeOpenAIServer(faults=["bad_label"] * 3) as server:
        second = _second_config(tmp_path, server)
        data = yaml.safe_load(second.read_text())
        data["model"]["max_retries"] = 0
        second.write_text(yaml.safe_dump(data, sort_keys=False))
        report = api.second_opinion(run, second, config=first_config, below=0.9)
        assert report["n_failed"] == 3 and report["n_answered"] == report["n_asked"] - 3 and report["exit_code"] == 4
        out = pd.read_parquet(run / "cascade_confidence.parquet")
        failed = out["second_status"].eq("failed")
        assert failed.sum() == 3 and out["second_label"][failed].isna().all()
        np.testing.assert_allclose(out["confidence_cascade"][failed], frame["llm_confidence"][failed])
        api.second_opinion(twin, second, config=first_config, below=0.9)
        with_gold = pd.read_parquet(twin / "cascade_confidence.parquet")
        same = out["second_status"].eq("ok") & with_gold["second_status"].eq("ok")
        np.testing.assert_allclose(out["confidence_cascade"][same], with_gold["confidence_cascade"][same])
        api.calibrate(run, gold=gold, confidence_column="confidence_cascade")
        api.route(run, target_precision=0.9)  # the score calibrate saw: fine
        api.second_opinion(run, second, config=first_config, below=0.5)  # another cut, after seeing gold
    tried = json.loads((run / "second_opinion.json").read_text())["settings_tried"]
    assert [(entry["below"], entry["gold_seen"]) for entry in tried] == [(0.9, False), (0.5, True)]
    with pytest.raises(InputError, match="changed since `calibrate`.*rerun `labeltriage calibrate"):
        api.route(run, target_precision=0.9)
    # calibrated again on the new score: route runs, and says the setting was chosen after the gold
    api.calibrate(run, gold=gold, confidence_column="confidence_cascade")
    result = api.route(run, target_precision=0.9)
    assert any("changed 1 time(s) after calibrate had seen the gold" in note for note in result.notes)
    assert json.loads((run / "routing.json").read_text())["cascade_settings_after_gold"] == 1


def test_the_cli_exit_code_stale_answers_and_mixed_kinds(tmp_path: Path, monkeypatch) -> None:
    """The second run's failures reach the exit code (4, as `prelabel`'s) and no `next:` is
    printed; an ask of no record leaves no earlier answers behind; a first run mixing confidence
    kinds is refused as calibrate refuses it."""
    monkeypatch.setenv("FAKE_KEY", "k")
    first_config = ROOT / "datasets_config" / "sentiment_3class.yaml"
    run, _, frame = _run(tmp_path, n=40)
    with FakeOpenAIServer(faults=["bad_label"] * 2) as server:
        second = _second_config(tmp_path, server, "second", model={**yaml.safe_load(first_config.read_text())["model"],
                                "backend": "openai", "name": "fake", "base_url": server.base_url,
                                "api_key_env": "FAKE_KEY", "max_retries": 0})  # fmt: skip
        args = ["second-opinion", str(run), "--second", str(second), "--config", str(first_config), "--quiet"]
        failed = CliRunner().invoke(cli, args)
        assert failed.exit_code == 4, failed.output
        assert "2 unanswered (they keep the first confidence)" in failed.output and "next:" not in failed.output
        assert (run / "second_opinion" / "prelabels.parquet").is_file()
        nothing = CliRunner().invoke(cli, [*args, "--below", "0.01"])
        assert nothing.exit_code == 0 and "asked 0 of 40" in nothing.output, nothing.output
        assert not (run / "second_opinion" / "prelabels.parquet").exists()
        mixed = frame.assign(confidence_kind=np.where(np.arange(len(frame)) % 2, "logprob", "stated"))
        mixed.to_parquet(run / "prelabels.parquet", index=False)
        refused = CliRunner().invoke(cli, args)
        assert refused.exit_code == InputError.exit_code and "mixes kinds" in refused.output, refused.output
    tried = json.loads((run / "second_opinion.json").read_text())["settings_tried"]
    assert [entry["below"] for entry in tried] == [1.0, 0.01] and not any(entry["gold_seen"] for entry in tried)


def test_calibrate_on_the_cascade_before_second_opinion_names_it(tmp_path: Path) -> None:
    run, gold, _ = _run(tmp_path, n=40)
    with pytest.raises(InputError, match="cascade_confidence.parquet not found: run `labeltriage second-opinion"):
        api.calibrate(run, gold=gold, confidence_column="confidence_cascade")
