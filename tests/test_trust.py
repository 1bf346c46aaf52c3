"""The certificate after `route` (labeltriage/trust.py): it names what it certifies, expires when
any of it changes, and blind audits that show drift stop auto-accept. A run directory built from
synthetic pre-labels, calibrated and routed by the library; no server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import labeltriage as lt
from curation.publish import build_final_dataset
from labeltriage.rundir import RunDir
from labeltriage.trust import audit_verdict, certificate_changes, enforce_certificate
from tests.test_triage_cli import make_run

RUN_JSON = {
    "model_identity": "local:qwen:abc.gguf:123:jump_forward",
    "prompt_hash": "74698b50fb33177d",
    "generation_settings": {"temperature": 0.0, "max_tokens": 256, "seed": 0, "max_retries": 2},
}


@pytest.fixture
def routed_run(tmp_path: Path) -> Path:
    run, gold = make_run(tmp_path)
    (run / "run.json").write_text(json.dumps(RUN_JSON))
    lt.calibrate(run, gold=gold, gold_column="gold")
    result = lt.route(run, target_precision=0.9, spot_check_rate=0.1)
    assert result.counts["auto_accept"] > 50 and result.counts["spot_check"] > 5
    return run


def _routing(run: Path) -> dict:
    return json.loads((run / "routing.json").read_text())


def test_the_certificate_names_what_it_certifies(routed_run: Path):
    identity = _routing(routed_run)["certificate_identity"]
    assert identity["model"] == RUN_JSON["model_identity"] and identity["prompt_hash"] == RUN_JSON["prompt_hash"]
    assert identity["confidence_column"] == "llm_confidence"
    assert all(identity[k] for k in ("generation_settings", "calibrator", "gold"))
    assert certificate_changes(RunDir(routed_run)) == []
    assert enforce_certificate(RunDir(routed_run)) is None


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ("prompt", "the prompt"),
        ("model", "the model"),
        ("settings", "the generation settings"),
        ("gold", "the gold sample"),
        ("calibrator", "the calibrator"),
    ],
)
def test_a_change_voids_it_and_its_records_go_back_to_review(routed_run: Path, change: str, what: str):
    before = pd.read_parquet(routed_run / "routed.parquet")
    summary = dict(RUN_JSON)
    if change == "prompt":
        summary["prompt_hash"] = "0000000000000000"
    elif change == "model":
        summary["model_identity"] = "local:qwen:other.gguf:9:jump_forward"
    elif change == "settings":
        summary["generation_settings"] = {**RUN_JSON["generation_settings"], "temperature": 0.7}
    (routed_run / "run.json").write_text(json.dumps(summary))
    if change == "gold":  # one gold label corrected
        gold_path = Path(_routing(routed_run)["gold_source"]["path"])
        gold = pd.read_csv(gold_path)
        gold.loc[0, "gold"] = "negative" if gold.loc[0, "gold"] == "positive" else "positive"
        gold.to_csv(gold_path, index=False)
    if change == "calibrator":
        lt.calibrate(routed_run, gold=_routing(routed_run)["gold_source"]["path"], gold_column="gold", method="platt")
    run = RunDir(routed_run)
    assert certificate_changes(run) == [what]
    revocation = enforce_certificate(run)
    assert revocation is not None and what in revocation.reason and "rerun route" in revocation.reason
    after = pd.read_parquet(routed_run / "routed.parquet")
    was_auto = before["route"].isin(["auto_accept", "spot_check"])  # the audit sample too
    assert sorted(revocation.ids) == sorted(before.loc[was_auto, "id"])
    assert set(after.loc[was_auto, "route"]) == {"human_review"}
    assert (after.loc[was_auto, "route_before_stop"] == before.loc[was_auto, "route"]).all()
    assert (after.loc[~was_auto, "route"] == before.loc[~was_auto, "route"]).all()
    stopped = _routing(routed_run)["auto_accept_stopped"]
    assert stopped["n_records"] == was_auto.sum() and stopped["reason"] == revocation.reason
    # no LLM label is published unreviewed any more (the unanswered audits neither), and the
    # accuracy sentence says why; a second check moves nothing
    files = run.publish_files()
    final = build_final_dataset(files)
    assert not final.final["label_source"].eq("llm_auto").any()
    assert final.summary["n_pending_review"] >= was_auto.sum()
    from curation.publish import published_label_accuracy

    assert published_label_accuracy(files, final)["reason"].startswith(
        "auto-accept stopped: the auto-accept certificate is void"
    )
    again = enforce_certificate(run)
    assert again is None or again.ids == []


def _answer_audits(run: Path, right_share: float, seed: int = 0) -> int:
    """Blind answers to every audit record: the LLM label with probability right_share."""
    rng = np.random.default_rng(seed)
    routed = pd.read_parquet(run / "routed.parquet")
    audits = routed[routed["route"].eq("spot_check")]
    other = {"positive": "negative", "negative": "positive"}
    labels = [lab if rng.random() < right_share else other[lab] for lab in audits["llm_label"]]
    responses = pd.DataFrame(
        {
            "record_id": audits["id"],
            "user": "auditor",
            "label": labels,
            "status": "submitted",
            "updated_at": pd.Timestamp("2026-11-30"),
        }  # fmt: skip
    )
    responses.to_parquet(run / "responses.parquet", index=False)
    return len(audits)


def test_audits_that_show_drift_stop_auto_accept_and_it_stays_stopped(routed_run: Path):
    n_audits = _answer_audits(routed_run, right_share=0.4)
    verdict = audit_verdict(RunDir(routed_run), round_number=1)
    assert verdict is not None and verdict.state == "drift" and verdict.n_audited == n_audits
    routing = _routing(routed_run)
    assert routing["audit_monitor"]["state"] == "drift" and routing["audit_monitor"]["round"] == 1
    assert routing["auto_accept_stopped"]["round"] == 1 and "drift" in routing["auto_accept_stopped"]["reason"]
    routed = pd.read_parquet(routed_run / "routed.parquet")
    assert not routed["route"].eq("auto_accept").any()
    assert set(routed.loc[routed["route_before_stop"].eq("spot_check"), "route"]) == {"human_review"}
    from curation.adapters import argilla_io

    # the audits stay blind when pushed again after the stop
    was_audit = routed["route_before_stop"].eq("spot_check").to_numpy()
    assert argilla_io.is_blind(routed)[was_audit].all()
    # routing again keeps it stopped: another seed and spot-check rate (nothing auto-accepted or
    # audited unreviewed), a new calibrator, one more gold record (the same threshold, refuted)
    for change in ("seed", "calibrator", "gold"):
        if change == "calibrator":
            lt.calibrate(
                routed_run, gold=_routing(routed_run)["gold_source"]["path"], gold_column="gold", method="platt"
            )
        if change == "gold":
            gold_path = Path(_routing(routed_run)["gold_source"]["path"])
            gold = pd.read_csv(gold_path)
            extra = routed.loc[~routed["id"].isin(gold["id"]) & routed["status"].eq("ok")].iloc[0]
            pd.concat([gold, pd.DataFrame({"id": [extra["id"]], "gold": [extra["llm_label"]]})]).to_csv(
                gold_path, index=False
            )
        result = lt.route(routed_run, target_precision=0.9, spot_check_rate=0.3, seed=7)
        assert result.counts["auto_accept"] == 0 and result.counts["spot_check"] == 0, change
        assert any("auto-accept stays stopped" in n for n in result.notes), change
        assert _routing(routed_run)["audit_monitor"]["state"] == "drift"
        files = lt.RunDir(routed_run).publish_files()
        assert not build_final_dataset(files).final["label_source"].eq("llm_auto").any(), change
    refuted = _routing(routed_run)["refuted_thresholds"]
    assert len(refuted) == 1 and _routing(routed_run)["applied"] is False
    # found in review: a route that certifies nothing (target 0.999), or a stricter one that
    # certifies, forgot the refutation, and the next route at the old target auto-accepted again
    held = []
    for target in (0.999, 0.99, 0.9):
        result = lt.route(routed_run, target_precision=target, spot_check_rate=0.3, seed=3)
        assert _routing(routed_run)["refuted_thresholds"] == refuted, target
        cut = result.report["threshold"]["threshold"]
        if cut is not None and cut <= refuted[0]["threshold"]:
            assert result.counts["auto_accept"] == 0 and not result.report["applied"], target
            assert result.statement.startswith("Not applied: blind audits refuted"), target
            held.append(target)
        assert result.report["settings_used"]["target_precision"] == target
    assert held == [0.9]  # the two stricter targets certify nothing or a stricter threshold


def test_audits_that_agree_confirm_or_wait(routed_run: Path):
    _answer_audits(routed_run, right_share=1.0)
    verdict = audit_verdict(RunDir(routed_run), round_number=1)
    assert (
        verdict is not None and verdict.state in ("confirmed", "undecided") and verdict.n_correct == verdict.n_audited
    )
    assert pd.read_parquet(routed_run / "routed.parquet")["route"].eq("auto_accept").any()
    assert "auto_accept_stopped" not in _routing(routed_run)


def test_a_blind_share_of_the_review_queue_gives_assisted_vs_blind_agreement(tmp_path: Path):
    """blind_share: a random share of the review queue is marked blind (pushed with no suggestion);
    the agreement report compares LLM-vs-reviewer agreement between the two with intervals."""
    from curation.publish import compute_agreement

    run, gold = make_run(tmp_path)
    (run / "run.json").write_text(json.dumps(RUN_JSON))
    lt.calibrate(run, gold=gold, gold_column="gold")
    lt.route(run, target_precision=0.9, blind_share=0.4)
    routed = pd.read_parquet(run / "routed.parquet")
    queue = routed["route"].eq("human_review") & routed["status"].eq("ok")
    assert routed.loc[queue, "blind"].sum() == int(np.ceil(0.4 * queue.sum()))
    assert not routed.loc[~queue, "blind"].any()
    assert _routing(run)["n_blind_review"] == routed["blind"].sum()
    # reviewers keep the pre-filled label when they see it: agreement 0.95 assisted, 0.6 blind
    rng = np.random.default_rng(0)
    rows = []
    for rec in routed[queue].itertuples():
        keep = rng.random() < (0.6 if rec.blind else 0.95)
        other = "negative" if rec.llm_label == "positive" else "positive"
        rows.append((rec.id, "rev", rec.llm_label if keep else other, "submitted", pd.Timestamp("2026-11-30")))
    pd.DataFrame(rows, columns=["record_id", "user", "label", "status", "updated_at"]).to_parquet(
        run / "responses.parquet", index=False
    )
    files = RunDir(run).publish_files()
    modes = compute_agreement(files, build_final_dataset(files))["llm_agreement_by_review_mode"]
    assisted, blind = modes["assisted"], modes["blind"]
    assert assisted["n"] + blind["n"] == queue.sum() and blind["n"] == routed.loc[queue, "blind"].sum()
    assert assisted["low"] < assisted["share"] < assisted["high"] and assisted["share"] > 0.9
    assert 0.45 < blind["share"] < 0.75
    diff = modes["difference"]
    assert diff["estimate"] == pytest.approx(assisted["share"] - blind["share"]) and diff["low"] > 0.1


def test_review_audits_measure_the_reviewed_labels_and_the_whole_dataset(tmp_path: Path):
    """review_audit_rate: a random share of the review queue goes out a second time, blind, as
    `<id>::audit`; the card then states the accuracy of the reviewed labels and of the whole set."""
    from curation.adapters import argilla_io
    from curation.publish import published_accuracy_parts, published_label_accuracy

    run, gold = make_run(tmp_path)
    (run / "run.json").write_text(json.dumps(RUN_JSON))
    lt.calibrate(run, gold=gold, gold_column="gold")
    lt.route(run, target_precision=0.9, spot_check_rate=0.2, review_audit_rate=0.3)
    routed = pd.read_parquet(run / "routed.parquet")
    queue = routed["route"].eq("human_review") & routed["status"].eq("ok")
    assert routed.loc[queue, "review_audit"].sum() == int(np.ceil(0.3 * queue.sum()))
    shown = argilla_io.review_queue(routed)
    copies = shown[shown["id"].str.endswith("::audit")]
    assert len(copies) == routed["review_audit"].sum() and copies["blind"].all()
    task = lt.load_task_config("sentiment")
    assert all(len(r.suggestions) == 0 for r in argilla_io.build_records(copies, task))
    # the truth is what a careful blind auditor answers; reviewers get it right 90% of the time
    rng = np.random.default_rng(4)
    flip = {"positive": "negative", "negative": "positive"}
    truth = {
        rid: (lab if rng.random() < 0.7 else flip[lab])
        for rid, lab in zip(routed["id"], routed["llm_label"].fillna("positive"), strict=True)
    }
    rows = []
    for rec in shown.itertuples():
        rid = rec.id.removesuffix("::audit")
        if rec.id.endswith("::audit") or rec.route == "spot_check":
            label = truth[rid]  # blind audits
        else:
            label = truth[rid] if rng.random() < 0.9 else flip[truth[rid]]
        rows.append(
            (
                rec.id,
                "rev" if not rec.id.endswith("::audit") else "auditor",
                label,
                "submitted",
                pd.Timestamp("2026-11-30"),
            )
        )
    pd.DataFrame(rows, columns=["record_id", "user", "label", "status", "updated_at"]).to_parquet(
        run / "responses.parquet", index=False
    )
    files = lt.RunDir(run).publish_files()
    assert not files.responses["record_id"].str.endswith("::audit").any() and len(files.review_audits) == len(copies)
    final = build_final_dataset(files)
    measured = published_label_accuracy(files, final)
    reviewed = final.final[
        final.final["label_source"].isin(["human", "consensus"])
        & final.final["id"].isin(routed.loc[routed["route"].eq("human_review"), "id"])
    ]
    true_accuracy = float((reviewed["label"] == reviewed["id"].map(truth)).mean())
    entry = measured["reviewed"]["overall"]
    assert entry["n_audited"] == len(copies) and entry["n_population"] == len(reviewed)
    assert entry["low"] <= true_accuracy <= entry["high"] and abs(entry["estimate"] - true_accuracy) < 0.08
    overall = measured["overall"]
    assert (
        overall is not None
        and overall["n_population"] == len(final.final) - measured["n_not_covered"]
        and overall["low"] <= overall["estimate"] <= overall["high"]
    )
    parts = published_accuracy_parts(measured)  # the card's bullets: LLM, reviewed, all together
    assert len(parts) == 3 and parts[0].startswith("LLM labels published without review (llm_auto): accuracy")
    assert parts[1].startswith("reviewed labels (human, consensus): accuracy")
    assert parts[2].startswith(f"all {overall['n_population']} published labels whose accuracy is measured, together")
    assert measured["n_review_audit_answers_by_own_reviewer"] == 0

    # the original reviewer answers the audit copies too (Argilla cannot stop them): those answers
    # repeat the label they check, so they are not counted, and the card says so
    own = pd.DataFrame(
        [(f"{rid}::audit", "rev", label, "submitted", pd.Timestamp("2026-11-30"))
         for rid, label in zip(files.responses["record_id"], files.responses["label"], strict=True)
         if f"{rid}::audit" in set(copies["id"])],
        columns=["record_id", "user", "label", "status", "updated_at"],
    )  # fmt: skip
    answers = pd.read_parquet(run / "responses.parquet")
    pd.concat([answers, own]).to_parquet(run / "responses.parquet", index=False)
    files = lt.RunDir(run).publish_files()
    again = published_label_accuracy(files, build_final_dataset(files))
    assert again["n_review_audit_answers_by_own_reviewer"] == len(copies)
    assert again["reviewed"]["overall"] == entry  # the auditors' answers alone, as before

    # found in the demo: a second auditor who disagrees ties the audit; a tied audit stays in the
    # sample with the published label counted wrong (dropping it biased the card's figure up)
    published = final.final.set_index("id")["label"]
    first = files.review_audits[files.review_audits["user"].eq("auditor")]
    agreeing = first[first["label"].to_numpy() == published.reindex(first["record_id"]).to_numpy()].head(3)
    assert len(agreeing) == 3
    second = agreeing.assign(record_id=agreeing["record_id"] + "::audit", user="auditor2",
                             label=agreeing["label"].map(flip))  # fmt: skip
    pd.concat([answers, second]).to_parquet(run / "responses.parquet", index=False)
    files = lt.RunDir(run).publish_files()
    tied = published_label_accuracy(files, build_final_dataset(files))
    cells = [tied["reviewed"][s] for s in ("human", "consensus") if tied["reviewed"][s]]
    before = [measured["reviewed"][s] for s in ("human", "consensus") if measured["reviewed"][s]]
    assert tied["n_review_audits"] == measured["n_review_audits"] == len(copies)
    assert sum(c["n_audited"] for c in cells) == len(copies)
    assert sum(c["n_correct"] for c in cells) == sum(c["n_correct"] for c in before) - 3
    assert tied["reviewed"]["overall"]["estimate"] < entry["estimate"] and tied["n_review_audits_tied"] == 3
    agree = sum(c["n_correct"] for c in cells)
    assert published_accuracy_parts(tied)[1].endswith(
        f"blind second reviews of the {len(reviewed)} reviewed queue records: {agree} agree, "
        f"{len(copies) - agree - 3} disagree, 3 tied (no majority: counted as the label being wrong)")  # fmt: skip
    # only the original reviewer answered: nothing independent is left to measure with
    answers[~answers["record_id"].str.endswith("::audit")].pipe(lambda a: pd.concat([a, own])).to_parquet(
        run / "responses.parquet", index=False
    )
    files = lt.RunDir(run).publish_files()
    alone = published_label_accuracy(files, build_final_dataset(files))
    assert alone["reviewed"] is None and alone["n_review_audits"] == 0
    assert any(p.startswith(f"{len(copies)} review-audit answers came from a reviewer of the original record and "
                            "are not counted (not independent") for p in published_accuracy_parts(alone))  # fmt: skip


def test_records_reviewers_saw_with_a_suggestion_are_never_auto_accepted_or_audited_blind(routed_run: Path):
    """Found in review: a re-route drew audits among records already pushed with the LLM's
    suggestion, and drawn-but-unanswered gold went back out with one."""
    routed = pd.read_parquet(routed_run / "routed.parquet")
    auto = routed.loc[routed["route"].isin(["auto_accept", "spot_check"]), "id"].astype(str).tolist()
    seen = auto[:40]  # e.g. pushed with `push --include-auto`, or after a stop
    (routed_run / "assisted_shown.json").write_text(json.dumps(seen))
    unanswered_gold = routed.loc[routed["route"].eq("human_review"), "id"].astype(str).tolist()[:5]
    (routed_run / "gold_draw.json").write_text(json.dumps({"ids": unanswered_gold}))
    result = lt.route(routed_run, target_precision=0.9, spot_check_rate=0.1, blind_share=0.5)
    again = result.routed.set_index(result.routed["id"].astype(str))
    assert set(again.loc[seen, "route"]) == {"human_review"} and not again.loc[seen, "blind"].any()
    assert set(again.loc[unanswered_gold, "route"]) == {"human_review"} and again.loc[unanswered_gold, "blind"].all()
    assert any("stay in review: reviewers already saw them" in note for note in result.notes)
    assert result.counts["spot_check"] >= 1 and result.counts["auto_accept"] > 0


def test_publish_without_a_loop_round_still_acts_on_the_audits(routed_run: Path, tmp_path: Path):
    """Found in review: `pull` then `publish` (no `loop`) published the auto-accepted LLM labels
    while their own audits said 0.37 against a 0.85 target."""
    _answer_audits(routed_run, right_share=0.4)
    result = lt.publish(routed_run, output=tmp_path / "published")
    routing = _routing(routed_run)
    assert routing["audit_monitor"]["state"] == "drift" and routing["auto_accept_stopped"]
    assert not result.final.final["label_source"].eq("llm_auto").any()
    card = (tmp_path / "published" / "README.md").read_text()
    assert "auto-accept stopped" in card


def test_a_record_shown_blind_stays_blind_whatever_a_later_route_draws(tmp_path: Path):
    """Found in review: a re-route (after a gold draw, a collect, a recalibration, another seed)
    drew another blind share; the next push put the suggestion on records answered blind, and the
    card counted those blind answers as assisted."""
    run, gold = make_run(tmp_path)
    (run / "run.json").write_text(json.dumps(RUN_JSON))
    lt.calibrate(run, gold=gold, gold_column="gold")
    first = lt.route(run, target_precision=0.9, blind_share=0.4, seed=1).routed
    was_blind = first.loc[first["blind"], "id"].astype(str).tolist()
    assisted = first.loc[first["route"].eq("human_review") & ~first["blind"], "id"].astype(str).tolist()
    assert len(was_blind) >= 5
    RunDir(run).record_shown(set(assisted), set(was_blind))  # what a push records
    again = lt.route(run, target_precision=0.9, blind_share=0.4, seed=2).routed.set_index("id")
    assert again.loc[was_blind, "blind"].all()  # kept, not re-drawn
    queue = again["route"].eq("human_review") & again["status"].eq("ok")
    assert again.loc[queue, "blind"].sum() == int(np.ceil(0.4 * queue.sum()))  # topped up to the share, no more
    # even a routed.parquet that lost the flag (an older route) is shown and counted blind
    routed = pd.read_parquet(run / "routed.parquet").assign(blind=False)
    routed.to_parquet(run / "routed.parquet", index=False)
    assert RunDir(run).routed_for_review().set_index("id").loc[was_blind, "blind"].all()
    assert RunDir(run).publish_files().routed.set_index("id").loc[was_blind, "blind"].all()
    # and turning the blind share off does not un-blind them
    off_result = lt.route(run, target_precision=0.9, blind_share=0.0, seed=1)
    off = off_result.routed.set_index("id")
    assert off.loc[was_blind, "blind"].all() and off["blind"].sum() == len(was_blind)
    assert any(f"{len(was_blind)} of the" in note and "stay blind" in note for note in off_result.notes)


def test_the_guided_start_is_a_setting_route_passes_on_and_records(tmp_path: Path):
    """thresholds.guided_start (or route --guided-start): the certificate is certify_threshold's with
    guided_start, and routing.json says which start was used."""
    from curation.certify import certify_threshold

    run, gold = make_run(tmp_path)
    (run / "run.json").write_text(json.dumps(RUN_JSON))
    lt.calibrate(run, gold=gold, gold_column="gold")
    plain = lt.route(run, target_precision=0.9)
    assert _routing(run)["settings_used"]["guided_start"] is False
    guided = lt.route(run, target_precision=0.9, guided_start=True)
    routing = _routing(run)
    assert routing["settings_used"]["guided_start"] is True
    prelabels = pd.read_parquet(run / "prelabels.parquet")
    gold_frame = pd.read_csv(gold) if str(gold).endswith(".csv") else pd.read_parquet(gold)
    labels = prelabels["id"].map(dict(zip(gold_frame["id"], gold_frame["gold"], strict=True)))
    scores = prelabels["llm_confidence"].to_numpy()
    pool = prelabels["status"].eq("ok").to_numpy() & np.isfinite(scores)
    has = labels.notna().to_numpy() & pool
    correct = (prelabels["llm_label"] == labels).to_numpy()
    expected = certify_threshold(scores[has], correct[has], 0.9, pool_scores=scores[pool], guided_start=True)
    assert routing["threshold"]["start"] == pytest.approx(expected.start)
    assert routing["threshold"]["threshold"] == expected.threshold
    assert plain.threshold.start != guided.threshold.start
