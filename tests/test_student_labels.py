"""The student labels the unreviewed review queue where a threshold is certified on the stratum's gold:
the pure function (fast) and `labeltriage student-label` then `publish` on a run directory (real
MiniLM embeddings of real Rotten Tomatoes texts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from curation.certify import certify_threshold
from curation.student_labels import certify_student_labels
from labeltriage.cli import main as cli
from labeltriage.errors import InputError, UsageError

ROOT = Path(__file__).resolve().parent.parent


def clusters(n: int, centres: np.ndarray, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points around the rows of ``centres`` (labels "a", "b", ...)."""
    k = rng.integers(0, len(centres), n)
    return centres[k] + noise * rng.standard_normal((n, centres.shape[1])), np.array(list("abc"))[k]


def test_the_student_labels_only_what_its_certificate_accepts() -> None:
    rng = np.random.default_rng(0)
    centres = 2.0 * np.eye(3, 8)
    train_x, train_y = clusters(300, centres, 0.9, rng)
    gold_x, gold_y = clusters(400, centres, 0.9, rng)
    pool_x, pool_y = clusters(2000, centres, 0.9, rng)
    result = certify_student_labels(train_x, train_y, gold_x, gold_y, pool_x, target_precision=0.9, seed=0)
    cert = result.certificate
    assert cert.threshold is not None and cert.target_precision == 0.9 and cert.n_gold == 400
    # the certificate is certify_threshold's on the student's gold probabilities and correctness
    again = certify_threshold(result.gold_confidence, result.gold_correct, 0.9, 0.95, pool_scores=result.confidence)
    assert again.threshold == cert.threshold and again.n_correct_gold == cert.n_correct_gold
    assert np.array_equal(result.accepted, result.confidence >= cert.threshold)
    assert 0 < result.accepted.sum() < 2000 and result.n_train == 300
    # what it accepts is right at least as often as certified (a known truth here)
    assert np.mean(result.labels[result.accepted] == pool_y[result.accepted]) >= 0.9
    assert result.labels.shape == (2000,) and set(result.labels) <= {"a", "b", "c"}


def test_no_certificate_labels_nothing_and_bad_inputs_are_named() -> None:
    rng = np.random.default_rng(1)
    centres = 0.05 * np.eye(3, 8)  # inseparable: the student is right about a third of the time
    train_x, train_y = clusters(200, centres, 1.0, rng)
    gold_x, gold_y = clusters(100, centres, 1.0, rng)
    pool_x, _ = clusters(50, centres, 1.0, rng)
    result = certify_student_labels(train_x, train_y, gold_x, gold_y, pool_x, target_precision=0.95)
    assert result.certificate.threshold is None and not result.accepted.any()
    with pytest.raises(ValueError, match="single class"):
        certify_student_labels(train_x, np.array(["a"] * 200), gold_x, gold_y, pool_x, target_precision=0.9)
    with pytest.raises(ValueError, match="must match"):
        certify_student_labels(train_x, train_y, gold_x, gold_y[:-1], pool_x, target_precision=0.9)
    with pytest.raises(ValueError, match="share their width"):
        certify_student_labels(train_x, train_y, gold_x, gold_y, pool_x[:, :4], target_precision=0.9)
    empty = certify_student_labels(train_x, train_y, gold_x, gold_y, np.zeros((0, 8)), target_precision=0.9)
    assert empty.labels.shape == (0,) and empty.accepted.shape == (0,)


def make_run(root: Path, n: int = 600) -> tuple[Path, dict[str, str]]:
    """A routed run of real Rotten Tomatoes snippets (LLM labels right 70% of the time): 150 gold,
    the rest routed to review; the first 300 of the queue answered (right), the rest unreviewed."""
    from labeltriage import corpora

    rng = np.random.default_rng(3)
    frame = corpora.rotten_tomatoes().sample(n=n, random_state=3).reset_index(drop=True)
    truth = frame["label"].map({"fresh": "positive", "rotten": "negative"}).to_numpy()
    run = root / "run"
    run.mkdir()
    config = yaml.safe_load((ROOT / "datasets_config" / "sentiment_3class.yaml").read_text())
    (root / "task.yaml").write_text(yaml.safe_dump(config))
    llm = np.where(rng.random(n) < 0.7, truth, np.where(truth == "positive", "negative", "positive"))
    route = np.array(["gold"] * 150 + ["human_review"] * (n - 150))
    routed = pd.DataFrame({
        "id": [f"r{i}" for i in range(n)], "text": frame["text"], "llm_label": llm,
        "llm_confidence": rng.uniform(0.3, 0.6, n), "status": "ok", "route": route,
        "gold_label": np.where(route == "gold", truth, None), "priority": rng.random(n),
    })  # fmt: skip
    routed.loc[:19, "llm_confidence"] = 0.9  # 20 gold records the LLM's certificate covers: not the stratum's
    # unanswered queue records route sends to people whatever the score: never the student's
    routed.loc[450:459, "llm_confidence"] = 0.9  # above the LLM's threshold (e.g. sent back by a stop)
    routed["instruction_like"] = routed.index.isin(range(460, 465))
    routed["duplicate_of"] = np.where(routed.index.isin(range(465, 470)), "r150", None)  # repeats of a reviewed text
    routed.loc[465:469, "text"] = routed.at[150, "text"]
    routed.to_parquet(run / "routed.parquet", index=False)
    (run / "gold_draw.json").write_text(json.dumps({"ids": ["r470", "r471"]}))  # drawn as gold, not answered yet
    answered = range(150, 450)
    pd.DataFrame({
        "record_id": [f"r{i}" for i in answered], "user": "ann", "label": [truth[i] for i in answered],
        "status": "submitted", "updated_at": pd.Timestamp("2026-12-01"),
    }).to_parquet(run / "responses.parquet", index=False)  # fmt: skip
    (run / "run.json").write_text(json.dumps({"config": str(root / "task.yaml")}))
    # the LLM certified 0.7 on raw confidence: 130 of the gold fall below it, the stratum's gold
    routing = {"method": "fixed-sequence", "confidence_column": "llm_confidence",
               "threshold": {"threshold": 0.7, "target_precision": 0.9, "confidence_level": 0.95},
               "settings_used": {"target_precision": 0.75, "confidence_level": 0.95}}  # fmt: skip
    (run / "routing.json").write_text(json.dumps(routing))
    return run, {f"r{i}": truth[i] for i in range(n)}


def test_student_label_then_publish(tmp_path: Path) -> None:
    run, truth = make_run(tmp_path)
    out = CliRunner().invoke(cli, ["student-label", str(run)])
    assert out.exit_code == 0, out.output
    report = json.loads((run / "student.json").read_text())
    assert report["n_train"] == 300 and report["n_gold_stratum"] == 130 and report["n_pool"] == 128
    assert report["n_left_for_people"] == {"above_the_llm_threshold": 10, "instruction_like_drawn_gold_or_repeat": 12}
    assert report["target_precision"] == 0.75 and report["confidence_level"] == 0.95
    assert report["stratum"] == "records with llm_confidence < 0.7 (below the LLM's certified auto-accept threshold)"
    cert = report["certificate"]
    assert cert["threshold"] is not None, report["statement"]
    labels = pd.read_parquet(run / "student_labels.parquet")
    assert len(labels) == 128 and set(labels["id"]) == {f"r{i}" for i in range(472, 600)}
    assert labels["accepted"].sum() == report["n_accepted"] > 0
    assert (labels["accepted"] == (labels["student_confidence"] >= cert["threshold"])).all()
    assert f"{report['n_accepted']} unreviewed records labelled by the frozen student" in out.output
    # the student is honest here: what it accepted is right about as often as certified
    kept = labels[labels["accepted"]]
    assert np.mean([truth[i] == lab for i, lab in zip(kept["id"], kept["student_label"], strict=True)]) >= 0.75
    # rerun: the same files (seeded, the embeddings from the run's store)
    assert CliRunner().invoke(cli, ["student-label", str(run)]).exit_code == 0
    assert pd.read_parquet(run / "student_labels.parquet").equals(labels)

    out = CliRunner().invoke(cli, ["publish", str(run)])
    assert out.exit_code == 0, out.output
    final = pd.read_parquet(run / "final.parquet")
    counts = final["label_source"].value_counts().to_dict()
    # the repeats of a reviewed text get its human label; the records left for people stay pending
    assert counts == {"human": 305, "gold": 150, "student": report["n_accepted"]}
    pending = 150 - 5 - report["n_accepted"]
    assert f"pending review {pending}" in out.output and len(final) + pending == 600
    student_rows = final[final["label_source"] == "student"].set_index("id")
    assert (student_rows["label"] == kept.set_index("id").loc[student_rows.index, "student_label"]).all()
    card = (run / "README.md").read_text()
    assert "Review-queue records nobody answered carry the student's label (`student`: a model trained" in card
    assert report["settings_tried"] == [
        {"student": "frozen", "max_pairs": None, "seed": 0, "target_precision": 0.75, "confidence_level": 0.95}
    ]  # the rerun is the same test, not a second
    assert report["confidence_level_after_selection"] == 0.95
    assert (f"student labels (student): {report['n_accepted']} unreviewed review-queue records, labelled by the "
            "frozen student, logistic regression on all-MiniLM-L6-v2 sentence embeddings "
            "(curation.student.fit_student), "
            f"where its probability is >= {cert['threshold']:.3f}; certified with 0.950 confidence: precision >= "
            "0.750 over the stratum's records above that probability (stratum: records with llm_confidence < 0.7") in (
        card)  # fmt: skip
    assert (f"{cert['n_correct_gold']} of the {cert['n_accepted_gold']} above the threshold right, the gold that "
            "chose it: not a held-out figure") in card  # fmt: skip
    assert "the published ones are not audited (expected at or above the stratum's when reviewers answered by " in card
    front = yaml.safe_load(card.split("---")[1])
    assert front["labeltriage"]["label_sources"]["student"] == report["n_accepted"]

    # another routing since: publish refuses the student's labels, naming the fix; so without student.json
    routing = json.loads((run / "routing.json").read_text())
    (run / "routing.json").write_text(json.dumps({**routing, "threshold": {**routing["threshold"], "threshold": 0.5}}))
    out = CliRunner().invoke(cli, ["publish", str(run)])
    assert out.exit_code != 0 and "was made for another routing" in out.output
    assert f"rerun `labeltriage student-label {run}`" in out.output
    (run / "student.json").unlink()
    out = CliRunner().invoke(cli, ["publish", str(run)])
    assert out.exit_code != 0 and "student.json is missing beside student_labels.parquet" in out.output


def test_the_finetuned_student_labels_a_run(tmp_path: Path) -> None:
    """`--student finetuned`: SetFit on the reviewed labels only (a tiny fine-tuning here), then the
    same certificate; seeded (a rerun writes the same labels)."""
    from labeltriage import api

    run, _ = make_run(tmp_path)
    frozen = api.student_label(run)
    frozen_labels = pd.read_parquet(run / "student_labels.parquet")
    out = CliRunner().invoke(cli, ["student-label", str(run), "--student", "finetuned", "--max-pairs", "64"])
    assert out.exit_code == 0, out.output
    report = json.loads((run / "student.json").read_text())
    assert report["student"] == "finetuned" and report["model"].startswith("SetFit: all-MiniLM-L6-v2 fine-tuned")
    fit = report["fine_tuning"]
    assert fit["n_pairs"] == 64 and fit["steps"] == 4 and fit["settings"]["max_pairs"] == 64  # batch 16
    assert fit["loss_first"] > 0 and fit["loss_last"] > 0
    # the same records and gold as the frozen student; other features, so other probabilities
    for key in ("n_train", "n_gold_stratum", "n_pool", "stratum", "target_precision"):
        assert report[key] == frozen[key]
    labels = pd.read_parquet(run / "student_labels.parquet")
    assert labels["id"].tolist() == frozen_labels["id"].tolist()
    assert not np.allclose(labels["student_confidence"], frozen_labels["student_confidence"])
    threshold = report["certificate"]["threshold"]
    expected = labels["student_confidence"] >= threshold if threshold is not None else False
    assert (labels["accepted"] == expected).all() and labels["accepted"].sum() == report["n_accepted"]
    assert api.student_label(run, student="finetuned", max_pairs=64)["n_accepted"] == report["n_accepted"]
    assert pd.read_parquet(run / "student_labels.parquet").equals(labels)
    # two settings tried on this gold (frozen, then finetuned): the statement holds at 1 - 2 x 0.05
    assert [s["student"] for s in report["settings_tried"]] == ["frozen", "finetuned"]
    assert report["settings_tried"][1]["max_pairs"] == 64
    assert report["confidence_level_after_selection"] == 0.9
    # back to the frozen student: a setting already tried, so still two, and its statement says so
    again = api.student_label(run)
    assert len(again["settings_tried"]) == 2 and again["certificate"]["threshold"] is not None
    assert (
        "With probability >= 0.9 (2 student settings were tried on this run's gold, settings_tried in "
        "student.json: Bonferroni, 1 - 2 x (1 - 0.95))"
    ) in again["statement"]
    with pytest.raises(InputError, match=r"student 'setfit': use one of \['frozen', 'finetuned'\]"):
        api.student_label(run, student="setfit")
    for bad in (0, 2.5, True):
        with pytest.raises(InputError, match=r"max_pairs .*: use a whole number >= 1 \(pairs of the fine-tuning"):
            api.student_label(run, student="finetuned", max_pairs=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"max_pairs \(--max-pairs\) 64: only the fine-tuned student has pairs"):
        api.student_label(run, max_pairs=64)
    out = CliRunner().invoke(cli, ["student-label", str(run), "--max-pairs", "64"])
    assert out.exit_code == 2 and "only the fine-tuned student has pairs" in out.output  # usage, not a bad file


def test_nothing_to_label_tests_no_gold_and_the_card_says_why(tmp_path: Path) -> None:
    """Found in review: an empty pool still trained the student, tested the gold and counted a
    setting; and a card with no student rows showed a bare `student | 0`."""
    from labeltriage import api

    run, truth = make_run(tmp_path)
    assert CliRunner().invoke(cli, ["publish", str(run)]).exit_code == 0
    assert "No published record is labelled by the student: `labeltriage student-label` was not run." in (
        run / "README.md").read_text()  # fmt: skip
    answers = pd.read_parquet(run / "responses.parquet")
    rest = [f"r{i}" for i in range(472, 600)]  # the whole pool answered
    more = pd.DataFrame({"record_id": rest, "user": "ann", "label": [truth[r] for r in rest], "status": "submitted",
                         "updated_at": pd.Timestamp("2026-12-02")})  # fmt: skip
    pd.concat([answers, more]).to_parquet(run / "responses.parquet", index=False)
    out = CliRunner().invoke(cli, ["student-label", str(run)])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("Nothing to label: every review-queue record in the stratum (records with "
                                 "llm_confidence < 0.7") and "accuracy on the stratum" not in out.output  # fmt: skip
    report = json.loads((run / "student.json").read_text())
    assert report["n_pool"] == 0 and report["n_accepted"] == 0 and report["certificate"] is None
    assert report["settings_tried"] == []  # the gold was not tested
    assert report["n_left_for_people"] == {"above_the_llm_threshold": 10, "instruction_like_drawn_gold_or_repeat": 12}
    assert pd.read_parquet(run / "student_labels.parquet").empty
    assert api.student_label(run, student="finetuned")["settings_tried"] == []  # no fine-tuning either
    assert CliRunner().invoke(cli, ["publish", str(run)]).exit_code == 0
    card = (run / "README.md").read_text()
    assert "No published record is labelled by the student: student.json says: Nothing to label: every" in card


def test_student_label_errors_name_the_fix(tmp_path: Path) -> None:
    from labeltriage import api

    run, _ = make_run(tmp_path)
    # found in review: a target below chance (1/3 on 3 labels) certified a student right 29.6% of the time
    below = r"target_precision \(--target-precision\) 0.1 is at or below chance for 3 labels \(1/3 = 0.333"
    with pytest.raises(UsageError, match=below):
        api.student_label(run, target_precision=0.1)
    out = CliRunner().invoke(cli, ["student-label", str(run), "--target-precision", "0.3"])
    assert out.exit_code == 2 and "Fix: use a precision target above 0.333, e.g. 0.9" in out.output
    assert not (run / "student.json").exists()
    responses = pd.read_parquet(run / "responses.parquet")
    responses.assign(label="positive").to_parquet(run / "responses.parquet", index=False)
    with pytest.raises(InputError, match=r"at least two of the task's labels .* \(has 1\); else review more records"):
        api.student_label(run)
    responses.assign(label=np.where(responses.index % 2, "Positive", "NEG")).to_parquet(
        run / "responses.parquet", index=False)  # fmt: skip
    with pytest.raises(
        InputError, match=r"\(has 0\); 2 answered label\(s\) are not the task's, e.g. \['NEG', 'Positive'\]"
    ):
        api.student_label(run)
    responses.to_parquet(run / "responses.parquet", index=False)
    # every gold record above the LLM's threshold: none to certify the student on
    routed = pd.read_parquet(run / "routed.parquet")
    routed.assign(llm_confidence=np.where(routed["route"].eq("gold"), 0.9, routed["llm_confidence"])).to_parquet(
        run / "routed.parquet", index=False)  # fmt: skip
    with pytest.raises(InputError, match=r"no gold record in the review stratum \(records with llm_confidence < 0.7"):
        api.student_label(run)
    routing = json.loads((run / "routing.json").read_text())
    (run / "routing.json").write_text(json.dumps({**routing, "confidence_column": "confidence_stated"}))
    with pytest.raises(InputError, match="lacks 'confidence_stated', the column routing.json's threshold is on: rerun"):
        api.student_label(run)
    (run / "responses.parquet").unlink()
    out = CliRunner().invoke(cli, ["student-label", str(run)])
    assert out.exit_code != 0 and "labeltriage pull" in out.output
    config = yaml.safe_load((tmp_path / "task.yaml").read_text())
    (tmp_path / "task.yaml").write_text(yaml.safe_dump({**config, "task_type": "multi_label"}))
    with pytest.raises(InputError, match="task.yaml: task_type multi_label: student labels are single-label only"):
        api.student_label(run)
