"""One feedback round: pull -> agreement -> retrain -> re-prioritise -> push metadata updates.

The steps are the public functions of the other modules; this module only sequences them and
keeps the run directory's files in step (``responses.parquet``, ``pull.json``, ``loop.json``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curation.adapters import argilla_io
from curation.feedback import human_majority, reprioritise
from labeltriage.jsonio import write_json

EMBEDDINGS_FILE = "embeddings.bin"


@dataclass
class RoundResult:
    """What one feedback round did (:func:`run_round`); :meth:`to_dict` is ``loop.json``.

    Attributes:
        round: the round number (stored as record metadata ``round`` in Argilla).
        pulled: the pull's counts (:class:`~curation.adapters.argilla_io.PullReport`).
        student: the student model's summary (:func:`curation.feedback.reprioritise`): training
            size, held-out accuracy when measurable, and the priority formula's inputs.
        adjudication: record ids whose reviewers disagree (vote share < ``min_agreement``), sorted.
        metadata_updated: records whose priority/round/route metadata was updated in Argilla.
        audit: the blind audits' verdict on the auto-accept certificate
            (:meth:`curation.sequential.AuditVerdict.to_dict`; None without a certificate).
        auto_accept_stopped: why auto-accept stopped in this round (drift, or a void
            certificate), None when it did not.
        sent_to_review: auto-accepted records pushed to review in this round because it stopped
            (after a ``push --limit N``: the records this round's push sent, at most N, the blind
            audits first, then by priority; the rest wait for the next push).
        held_back: review-queue records not in Argilla (a ``push --limit`` left them, or they were
            deleted there): their new priority is in routed.parquet; the next push sends them.
    """

    round: int
    pulled: argilla_io.PullReport
    student: dict[str, Any] = field(default_factory=dict)
    adjudication: list[str] = field(default_factory=list)
    metadata_updated: int = 0
    audit: dict[str, Any] | None = None
    auto_accept_stopped: str | None = None
    sent_to_review: int = 0
    held_back: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``loop.json``."""
        return asdict(self)


def run_embeddings(run_dir: Path, texts: list[str]) -> np.ndarray:
    """``(len(texts), 384)`` float32 embeddings of ``texts``, each text embedded once per run.

    The run directory keeps every vector computed so far in ``embeddings.bin``, grown by appends
    under ``embeddings.lock`` (:func:`curation.adapters.embeddings.stored_embeddings`): ``push``
    embeds the records it sends, ``calibrate`` with the combined confidence every answered record,
    ``loop`` every routed record; two steps of the same run wait for each other instead of losing
    each other's vectors, and a round killed while embedding keeps what it embedded."""
    from curation.adapters.embeddings import stored_embeddings

    return stored_embeddings(run_dir / EMBEDDINGS_FILE, texts, lock=run_dir / "embeddings.lock")


def pull_to_run(
    client: Any, dataset: Any, config: Any, run_dir: Path, *, drop_missing: bool = False
) -> argilla_io.PullReport:
    """Pull every response into ``responses.parquet`` and the counts into ``pull.json``.

    ``responses.parquet`` is a history, not a mirror: a submitted response that an earlier pull
    saved and the server no longer has (its reviewer's account was deleted, which deletes their
    responses; a record was deleted) is kept, with ``on_server = False``, unless
    ``drop_missing``. The report counts both."""
    frame, report = argilla_io.pull_responses(
        client, dataset, [label.name for label in config.labels], config.argilla.question
    )
    return save_pulled(frame, report, run_dir, drop_missing=drop_missing)


def save_pulled(
    frame: pd.DataFrame, report: argilla_io.PullReport, run_dir: Path, *, drop_missing: bool = False
) -> argilla_io.PullReport:
    """Write pulled responses (``record_id, user, label, status, updated_at``, from any review tool)
    to ``responses.parquet``, keeping earlier submits the server lost (:func:`pull_to_run`), and
    the counts to ``pull.json``."""
    frame = frame.assign(on_server=True)
    path = run_dir / "responses.parquet"
    if path.exists():
        frame = _keep_earlier_submits(pd.read_parquet(path), frame, report, drop_missing)
    frame.to_parquet(path, index=False)
    write_json(run_dir / "pull.json", report.__dict__, default=str)
    return report


def _keep_earlier_submits(
    earlier: pd.DataFrame, pulled: pd.DataFrame, report: argilla_io.PullReport, drop_missing: bool
) -> pd.DataFrame:
    """``pulled`` plus the submitted rows of ``earlier`` whose (record, user) the server lost."""
    if earlier.empty or "status" not in earlier.columns:
        return pulled
    present = set(zip(pulled["record_id"].astype(str), pulled["user"].astype(str), strict=True))
    keys = zip(earlier["record_id"].astype(str), earlier["user"].astype(str), strict=True)
    gone = earlier[[key not in present for key in keys] & earlier["status"].eq("submitted").to_numpy()]
    if drop_missing:
        report.dropped_from_earlier_pulls = int(len(gone))
        return pulled
    report.kept_from_earlier_pulls = int(len(gone))
    report.submitted += int(len(gone))
    gone = gone.assign(on_server=False)
    merged = pd.concat([pulled, gone[pulled.columns]], ignore_index=True) if len(gone) else pulled
    submitted = merged[merged["status"] == "submitted"]
    report.reviewers = sorted(submitted["user"].astype(str).unique().tolist())
    report.records_with_submitted = int(submitted["record_id"].nunique())
    return merged


def reprioritised_queue(
    run_dir: Path, config: Any, min_agreement: float = 0.6
) -> tuple[pd.DataFrame, set[str], dict[str, Any]]:
    """The round's core, whatever the review tool: retrain the student on the pulled answers
    (responses.parquet), re-prioritise routed.parquet (rewritten), and return the review queue
    with its new priorities (disagreements, vote share < ``min_agreement``, first at 1.0), the ids
    to adjudicate and the student's summary (:func:`curation.feedback.reprioritise`)."""
    from labeltriage.rundir import RunDir

    run = RunDir(run_dir)  # run files through the one reader: a missing file names the step to run
    routed = run.routed_for_review()  # drawn gold stays blind
    labels = [label.name for label in config.labels]
    majority = human_majority(run.table("responses.parquet"), labels)
    embeddings = run_embeddings(run_dir, routed["text"].astype(str).tolist())
    priority, info = reprioritise(routed, embeddings, majority, labels)
    run.table("routed.parquet").assign(priority=priority).to_parquet(run_dir / "routed.parquet", index=False)
    routed = routed.assign(priority=priority)
    adjudicate = set(
        majority.loc[(majority["n_reviewers"] >= 2) & (majority["agreement"] < min_agreement), "record_id"]
    )
    queue = argilla_io.review_queue(routed).copy()
    queue.loc[queue["id"].isin(adjudicate), "priority"] = 1.0  # disagreement first
    return queue, adjudicate, info


def run_round(
    client: Any,
    dataset: Any,
    config: Any,
    run_dir: Path,
    round_number: int,
    min_agreement: float = 0.6,
) -> RoundResult:
    """One round; returns what it did (also written to ``loop.json``)."""
    report = pull_to_run(client, dataset, config, run_dir)
    queue, adjudicate, info = reprioritised_queue(run_dir, config, min_agreement)
    # records a `push --limit` held back keep their new priority in routed.parquet for the next push
    ids = queue["id"].astype(str)
    current = argilla_io.records_metadata(dataset)  # one listing: which are in Argilla, and their metadata
    in_argilla = ids.isin(current.keys()).to_numpy()
    held_back = int(ids[~in_argilla].str.removesuffix(argilla_io.REVIEW_AUDIT_SUFFIX).nunique())
    queue = queue[in_argilla]
    # what reviewers see: blind records keep a priority drawn from the others' (never their own)
    shown = argilla_io.shown_priorities(queue)
    ranks = argilla_io.review_ranks(shown)
    updates = {}
    for rid, value, rank in zip(queue["id"], shown, ranks, strict=True):
        update: dict[str, float | int | str] = {"priority": float(value), "review_rank": int(rank),
                                                "round": int(round_number)}  # fmt: skip
        if rid in adjudicate:
            update["route"] = "adjudication"
        updates[rid] = update
    updated = argilla_io.update_metadata(client, dataset, updates, current=current)
    result = RoundResult(round_number, report, info, sorted(adjudicate), updated, held_back=held_back)
    write_json(run_dir / "loop.json", result.to_dict(), default=str)
    return result
