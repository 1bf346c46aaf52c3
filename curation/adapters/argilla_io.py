"""Thin adapter between a run directory and an Argilla dataset (Argilla SDK 2.8 + its REST API).

* :func:`dataset_settings` / :func:`ensure_dataset`: the review dataset from a task config.
* :func:`push_records`: routed pre-labels -> Argilla records (the LLM label as a suggestion with
  its calibrated score and ``agent`` = model and prompt hash, the reasoning as a field, priority
  metadata to sort by, the embedding for "find similar"). Upsert by the record's stable ``id``,
  batched, resumable, retried while the server restarts.
* :func:`update_metadata`: metadata-only updates (new priorities, rounds, adjudication); never
  touches responses.
* :func:`pull_responses`: reviewers' answers as a long table, every response accounted for.

A record's label comes from: ``prelabels.parquet`` (LLM) -> ``routed.parquet`` (route, priority)
-> Argilla suggestion -> reviewer response -> ``responses.parquet`` -> ``final.parquet``.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labeltriage.errors import ReviewServerError
from labeltriage.jsonio import write_json

# The Argilla SDK warns "Dataset/User/Workspace ... not found" where this module checks for None
# and says what to do itself.
warnings.filterwarnings("ignore", message=r"(Dataset|User|Workspace) with (name|id|username) .* not found")

METADATA_FLOATS = ("priority", "calibrated_confidence")
METADATA_TERMS = ("route", "llm_label", "source", "review_mode")
METADATA_INTEGERS = ("round", "review_rank")
# what the model said or how it was routed: never shown to annotators (anchoring); the product and
# the owner filter on them. Reviewers sort by priority and see the suggestion itself on assisted records.
HIDDEN_FROM_ANNOTATORS = frozenset({"calibrated_confidence", "route", "llm_label", "review_mode"})
BLIND, ASSISTED = "blind", "assisted"
REVIEWER_NOTE = """

### How the records reach you
- Most records come with the LLM's answer **pre-selected**, its **score** (the calibrated chance,
  0 to 1, that the LLM's label is right) and its **reasoning** (a field under the text). They are
  a starting point, not an answer: read the text and change the label whenever it is wrong.
- Some records come with **no pre-selected label, no score and no reasoning, on purpose**: they
  measure how often the LLM is right, so label them from the text alone.
- If a text comes back that you have already labelled, **skip it**: it checks the first answer and
  counts only when someone else labels it.
- Sort the queue by **priority** (highest first): the records most likely to need a correction
  come first.
"""
BLIND_ROUTES = frozenset({"spot_check"})  # the audit sample of auto-accepted records
REASONING_FIELD = "llm_reasoning"
TEXT_FIELD = "text"
VECTOR_NAME = "embedding"
MAX_BATCH = 500  # the server's cap for one bulk request
# metadata properties renamed since an earlier release: old name -> new name (ensure_dataset moves
# an existing dataset's values over and removes the old property)
RENAMED_METADATA = {"llm_confidence": "calibrated_confidence"}


class ArgillaIOError(ReviewServerError):
    """Talking to Argilla failed; the message says what was done and how to resume."""


class SettingsDriftError(ArgillaIOError):
    """The Argilla dataset no longer matches the task config (for example edited by hand in the UI)."""


@dataclass
class PushReport:
    """What :func:`push_records` did (and ``labeltriage.api.push`` writes to ``push.json``).

    Counts are records: ``pushed`` sent to Argilla in this call, ``skipped_already_pushed``
    already there with the same content (from the checkpoint), ``not_routed_to_review`` routed
    auto-accept and kept out of the review queue (set by the caller). ``batches``: bulk requests
    sent; ``retries``: batches resent after a server error; ``seconds``: wall-clock time of the
    push. ``checkpoint_note``: why the checkpoint was not trusted, or None.
    """

    pushed: int = 0
    skipped_already_pushed: int = 0
    not_routed_to_review: int = 0
    batches: int = 0
    retries: int = 0
    seconds: float = 0.0
    # why the checkpoint was not trusted (another server/dataset, records gone from the server)
    checkpoint_note: str | None = None
    # blind records that still carried a suggestion from an earlier push, taken off
    suggestions_removed: int = 0
    queue_url: str | None = None  # set by the caller: the review queue in the UI, sorted by priority
    held_back: int = 0  # set by the caller: queue records never pushed, kept for a later push by a limit
    auto_accept_stopped: str | None = None  # set by the caller: why auto-accepted records joined the queue
    reasoning: dict[str, int] | None = None  # set by the caller: reasoning asked for (review_only), else None
    audit_copies: int = 0  # set by the caller: the queue's `<id>::audit` rows, second blind copies of records


@dataclass
class PullReport:
    """What :func:`pull_responses` found (and ``labeltriage.api.pull`` writes to ``pull.json``).

    Response counts by status: ``submitted`` (answers that count as labels, including those kept
    from earlier pulls), ``draft``, ``discarded``, ``invalid_label`` (a value outside the task
    config's labels). ``records``: records in the dataset; ``records_with_submitted``: records
    with at least one submitted answer; ``reviewers``: usernames with a submitted answer, sorted;
    ``invalid_examples``: up to 5 ``{record_id, user, label}`` of the invalid answers.
    ``labels_removed_from_config`` / ``labels_added_to_config``: the Argilla question's labels
    missing from the config, and the reverse. ``kept_from_earlier_pulls`` /
    ``dropped_from_earlier_pulls``: submitted responses saved by an earlier pull that the server no
    longer has, kept in ``responses.parquet`` or dropped (``drop_missing``).
    """

    submitted: int = 0
    draft: int = 0
    discarded: int = 0
    invalid_label: int = 0
    records: int = 0
    records_with_submitted: int = 0
    reviewers: list[str] = field(default_factory=list)
    invalid_examples: list[dict] = field(default_factory=list)
    # the task config's labels against the Argilla question's (edited config): what changed
    labels_removed_from_config: list[str] = field(default_factory=list)
    labels_added_to_config: list[str] = field(default_factory=list)
    # submitted responses an earlier pull saved that the server no longer has (kept unless dropped)
    kept_from_earlier_pulls: int = 0
    dropped_from_earlier_pulls: int = 0


def _rg():
    import argilla as rg

    return rg


def dataset_settings(config: Any, vector_dimensions: int | None = 384):
    """`rg.Settings` for a task config (`labeltriage.config.TaskConfig`)."""
    rg = _rg()
    labels = {label.name: label.name for label in config.labels}
    descriptions = "\n".join(f"- **{label.name}**: {label.description}" for label in config.labels)
    question_cls = rg.MultiLabelQuestion if config.task_type == "multi_label" else rg.LabelQuestion
    question = question_cls(
        name=config.argilla.question, labels=labels, title=config.description, description=descriptions
    )

    def shown(name: str) -> bool:
        return name not in HIDDEN_FROM_ANNOTATORS

    metadata = [
        *(rg.FloatMetadataProperty(name=name, visible_for_annotators=shown(name)) for name in METADATA_FLOATS),
        *(rg.TermsMetadataProperty(name=name, visible_for_annotators=shown(name)) for name in METADATA_TERMS),
        *(rg.IntegerMetadataProperty(name=name, visible_for_annotators=shown(name)) for name in METADATA_INTEGERS),
    ]
    guidelines = (config.guidelines or "").strip() + "\n\n### Labels\n" + descriptions + REVIEWER_NOTE
    return rg.Settings(
        guidelines=guidelines,
        fields=[
            rg.TextField(name=TEXT_FIELD, title="Text"),
            rg.TextField(name=REASONING_FIELD, title="LLM reasoning", use_markdown=True, required=False),
        ],
        questions=[question],
        metadata=metadata,
        vectors=[rg.VectorField(name=VECTOR_NAME, dimensions=vector_dimensions)] if vector_dimensions else [],
        distribution=rg.TaskDistribution(min_submitted=config.argilla.min_submitted),
    )


def ensure_dataset(client: Any, config: Any, vector_dimensions: int | None = 384):
    """Return the task's dataset, creating it if needed; repair or refuse settings drift.

    Missing metadata properties (deleted by hand, or new in this release) are created; a property
    renamed since the dataset was created (:data:`RENAMED_METADATA`: ``llm_confidence`` is now
    ``calibrated_confidence``) has its records' values moved to the new name and is then deleted;
    a label question whose labels differ from the config is refused with
    :class:`SettingsDriftError`, as labels from two label sets cannot be mixed in one dataset.
    """
    rg = _rg()
    name, workspace = config.argilla.dataset, config.argilla.workspace
    dataset = client.datasets(name=name, workspace=workspace)
    if dataset is not None and not _published(dataset):
        # a creation that failed half-way (e.g. Redis down) leaves an unpublished draft, which
        # cannot hold records: finish the job by starting it again
        dataset.delete()
        dataset = None
    if dataset is None:
        settings = dataset_settings(config, vector_dimensions)
        try:
            return rg.Dataset(name=name, workspace=workspace, settings=settings, client=client).create()
        except Exception as exc:
            leftover = None
            with contextlib.suppress(Exception):
                leftover = client.datasets(name=name, workspace=workspace)
                if leftover is not None and not _published(leftover):
                    leftover.delete()
                    leftover = None
            kept = "" if leftover is None else " (its unfinished draft is removed at the next push)"
            reason = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            cause = " ".join(_short_error(reason, 200).split())  # the server's own words (e.g. Redis down)
            raise ArgillaIOError(
                f"could not create the Argilla dataset {workspace}/{name}: {cause}{kept}. Fix: check the server "
                "(`labeltriage stack status`; restart it with `labeltriage stack down && labeltriage stack up`) "
                "and rerun the same command"
            ) from exc
    question = dataset.settings.questions[config.argilla.question]
    if question is None:
        raise SettingsDriftError(
            f"Argilla dataset {workspace}/{name} has no question {config.argilla.question!r} "
            f"(config {config.source_path}); restore it or set argilla.dataset to a new name"
        )
    expected = sorted(label.name for label in config.labels)
    if sorted(question.labels) != expected:
        raise SettingsDriftError(
            f"Argilla dataset {workspace}/{name}: question {config.argilla.question!r} has labels "
            f"{sorted(question.labels)} but config {config.source_path} says {expected}; "
            "restore the labels in Argilla or set argilla.dataset to a new name"
        )
    present = {prop.name for prop in dataset.settings.metadata}
    wanted = dataset_settings(config, vector_dimensions).metadata
    missing = [prop for prop in wanted if prop.name not in present]
    if missing:
        for prop in missing:
            dataset.settings.metadata.add(prop)
        dataset.update()
    expected_guidelines = dataset_settings(config, vector_dimensions).guidelines
    if dataset.settings.guidelines != expected_guidelines:  # e.g. made before REVIEWER_NOTE existed
        dataset.settings.guidelines = expected_guidelines
        dataset.update()
    for prop in wanted:  # a dataset made before LLM metadata was hidden from annotators: hide it now
        current = dataset.settings.metadata[prop.name]
        if current is not None and current.visible_for_annotators != prop.visible_for_annotators:
            current.visible_for_annotators = prop.visible_for_annotators
            current.update()
    _rename_metadata(client, dataset, {old: new for old, new in RENAMED_METADATA.items() if old in present})
    return dataset


def _rename_metadata(client: Any, dataset: Any, renames: dict[str, str], batch_size: int = MAX_BATCH) -> int:
    """Move records' metadata values from each old property name to its new one, then delete the old
    properties (the new ones exist already); returns the number of records rewritten.

    A dataset created by an earlier release holds the calibrated confidence as ``llm_confidence``.
    Left as it is, the reviewers keep a misleading filter, and a record that still carries the old
    key could not be updated once the property is gone (the dataset refuses unknown metadata). So
    the values move first (metadata-only bulk upserts: fields, suggestions and responses are left
    as they are) and the property is deleted last: an interrupted rename is finished by the next
    call.
    """
    if not renames:
        return 0
    items = []
    for record in dataset.records(with_suggestions=False, with_responses=False, with_vectors=False):
        metadata = dict(record.metadata)
        if not set(renames) & set(metadata):
            continue
        for old, new in renames.items():
            if old in metadata:
                value = metadata.pop(old)
                metadata.setdefault(new, value)
        items.append({"external_id": record.id, "metadata": metadata})
    http = client.api.http_client
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]

        def send(chunk: list[dict[str, Any]] = chunk) -> None:
            response = http.put(f"/api/v1/datasets/{dataset.id}/records/bulk", json={"items": chunk})
            response.raise_for_status()

        _with_retries(send, f"renaming metadata {sorted(renames)} of records {start + 1}-{start + len(chunk)}", 6, 1.0)
    for old in renames:
        prop = dataset.settings.metadata[old]
        if prop is not None:
            prop.delete()
    return len(items)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _published(dataset: Any) -> bool:
    return getattr(getattr(dataset, "_model", None), "status", "ready") == "ready"


def suggestion_agent(model: str, prompt_hash: str) -> str:
    """``model/prompt_hash``, reduced to the characters Argilla accepts in an agent name."""
    return re.sub(r"[^a-zA-Z0-9\-_:./ ]", "-", f"{model}/{prompt_hash}")


def _clean_label(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [str(item) for item in value.tolist()]
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


EMPTY_TEXT_NOTE = (
    "[empty text] This record's text is empty in the input file. Discard it, or label it if an empty "
    "text has a label in this task."
)


def build_records(
    frame: pd.DataFrame,
    config: Any,
    round_number: int = 0,
    vectors: np.ndarray | None = None,
    source: str | None = None,
) -> list:
    """Argilla records for the rows of ``routed.parquet`` (one per row, same order).

    Each record: the ``text`` field (a note for an empty text), the ``llm_reasoning`` field when
    there is reasoning, the LLM label as a suggestion scored with the calibrated confidence (none
    for a failed pre-label or a label outside the config's), and metadata ``priority``,
    ``calibrated_confidence``, ``route``, ``llm_label`` (multi-label: comma-joined), ``round``,
    ``source`` and ``review_mode`` (missing values are left out).

    A **blind** record (route ``spot_check``: the audit sample of auto-accepted records, or a row
    whose ``blind`` column is True) carries nothing of the model: no suggestion, no reasoning, no
    LLM metadata, and a priority drawn from the other records' priorities (seeded by its id), so
    that neither its card nor its place in the queue tells a reviewer what the model said or that
    the model was confident. Reviewers adopt visible suggestions, which inflates the measured LLM
    accuracy; blind answers are the unbiased audit (``review_mode = blind``, hidden from
    annotators). ``vectors`` is ``(len(frame), d)`` or None. Builds SDK objects only: no server.
    """
    rg = _rg()
    labels = {label.name for label in config.labels}
    blind_rows = is_blind(frame)
    shown = shown_priorities(frame)
    ranks = review_ranks(shown)
    records = []
    for position, row in enumerate(frame.itertuples(index=False)):
        row = row._asdict()
        if blind_rows[position]:
            records.append(
                _blind_record(rg, row, shown[position], int(ranks[position]), round_number, source, vectors, position)
            )
            continue
        label = _clean_label(row.get("llm_label"))
        calibrated = _float_or_none(row.get("calibrated_confidence"))
        # the suggestion's score: the calibrated confidence; a frame never routed has only the raw one
        score = calibrated if "calibrated_confidence" in row else _float_or_none(row.get("llm_confidence"))
        suggestions = []
        valid = (
            label is not None
            and (set(label) <= labels if isinstance(label, list) else label in labels)
            and row.get("status", "ok") == "ok"
        )
        if valid:
            suggestions.append(
                rg.Suggestion(
                    question_name=config.argilla.question,
                    value=label,
                    score=score if not isinstance(label, list) else [score] * len(label),
                    agent=suggestion_agent(str(row.get("model", "llm")), str(row.get("prompt_hash", ""))),
                    type="model",
                )
            )
        metadata = {
            "priority": _float_or_none(row.get("priority")),
            "review_rank": int(ranks[position]),
            "calibrated_confidence": calibrated,
            "route": row.get("route"),
            "llm_label": label if isinstance(label, str) else (",".join(label) if label else None),
            "round": int(round_number),
            "source": source or row.get("source"),
            "review_mode": ASSISTED,
        }
        reasoning = row.get("reasoning")
        text = "" if _missing(row.get("text")) else str(row["text"])
        if not text.strip():  # a blank card tells a reviewer nothing: say why it is blank
            text = EMPTY_TEXT_NOTE
            reasoning = "No model call: the input row's text is empty."
        fields = {TEXT_FIELD: text}
        if isinstance(reasoning, str) and reasoning.strip():
            fields[REASONING_FIELD] = reasoning.strip()
        records.append(
            rg.Record(
                id=str(row["id"]),
                fields=fields,
                metadata={key: value for key, value in metadata.items() if not _missing(value)},
                suggestions=suggestions,
                vectors={VECTOR_NAME: vectors[position].tolist()} if vectors is not None else {},
            )
        )
    return records


def is_blind(frame: pd.DataFrame) -> np.ndarray:
    """``(n,)`` bool: rows pushed blind (route ``spot_check`` now or before a stop, or a True ``blind`` column)."""
    blind = frame["route"].isin(BLIND_ROUTES).to_numpy() if "route" in frame.columns else np.zeros(len(frame), bool)
    if "route_before_stop" in frame.columns:  # an audit stays blind after auto-accept stopped
        blind = blind | frame["route_before_stop"].isin(BLIND_ROUTES).to_numpy()
    if "blind" in frame.columns:
        blind = blind | frame["blind"].fillna(False).astype(bool).to_numpy()
    return blind


def _blind_record(
    rg: Any, row: dict[str, Any], priority: float, rank: int, round_number: int, source: str | None,
    vectors: np.ndarray | None, position: int,
) -> Any:  # fmt: skip
    """A record with nothing of the model on it (see :func:`build_records`)."""
    text = "" if _missing(row.get("text")) else str(row["text"])
    metadata = {"priority": priority, "review_rank": rank, "round": int(round_number),
                "source": source or row.get("source"), "review_mode": BLIND}  # fmt: skip
    return rg.Record(
        id=str(row["id"]),
        fields={TEXT_FIELD: text if text.strip() else EMPTY_TEXT_NOTE},
        metadata={key: value for key, value in metadata.items() if not _missing(value)},
        suggestions=[],
        vectors={VECTOR_NAME: vectors[position].tolist()} if vectors is not None else {},
    )


def review_link(api_url: str, dataset_id: str) -> str:
    """The UI page of the dataset's review queue, sorted by priority, highest first (Argilla's UI
    takes the sort from the URL)."""
    return f"{str(api_url).rstrip('/')}/dataset/{dataset_id}/annotation-mode?sort=metadata.priority.desc"


def shown_priorities(frame: pd.DataFrame) -> np.ndarray:
    """``(n,)`` float: the priority each row shows reviewers in Argilla.

    An assisted row shows its own (:func:`curation.routing.priority_scores`, higher = review
    first). A blind row shows one drawn from the assisted rows' priorities, chosen by a hash of its
    id (0.5 when there is none): its own would tell from its place in the queue that the model was
    confident, which is what blind review hides. Used by every push and every loop update."""
    import hashlib

    blind = is_blind(frame)
    own = [_float_or_none(p) for p in frame["priority"]] if "priority" in frame.columns else [None] * len(frame)
    usable = [p for p, b in zip(own, blind, strict=True) if not b and p is not None]
    shown = np.empty(len(frame), dtype=np.float64)
    for k, (rid, value, hidden) in enumerate(zip(frame["id"].astype(str), own, blind, strict=True)):
        if hidden:
            seed = int(hashlib.sha256(rid.encode()).hexdigest()[:12], 16)
            shown[k] = usable[seed % len(usable)] if usable else 0.5
        else:
            shown[k] = value if value is not None else 0.5
    return shown


def review_ranks(priorities: np.ndarray) -> np.ndarray:
    """``(n,)`` int: 1 for the record to review first (highest priority), ties share the rank.

    Shown to reviewers as metadata ``review_rank`` (a priority of 0.83 says little; "7th" does)."""
    from scipy.stats import rankdata

    return rankdata(-np.asarray(priorities, dtype=np.float64), method="min").astype(np.int64)


REVIEW_AUDIT_SUFFIX = "::audit"  # id of the blind copy of a reviewed record (its review audit)


def review_queue(routed: pd.DataFrame, include_auto: bool = False) -> pd.DataFrame:
    """Rows that reviewers see: human_review and spot_check (and auto_accept when asked), by priority.

    A repeated text (``duplicate_of`` set) is shown once, as its first row; publish copies the
    outcome. A row whose ``review_audit`` column is True is also shown a second time, blind, as
    ``<id>::audit`` (:data:`REVIEW_AUDIT_SUFFIX`): a second label of it with nothing of the model
    measures the accuracy of the reviewed labels (the review audit). Argilla does not stop the
    reviewer of the original from also answering the copy: with few reviewers the audit is then
    not independent of the review (the figure is agreement with a blind answer, as stated)."""
    routes = {"human_review", "spot_check"} | ({"auto_accept"} if include_auto else set())
    queue = routed[routed["route"].isin(routes)]
    if "duplicate_of" in queue.columns:
        queue = queue[queue["duplicate_of"].isna()]
    if "review_audit" in queue.columns:
        audited = queue[queue["review_audit"].fillna(False).astype(bool)]
        copies = audited.assign(id=audited["id"].astype(str) + REVIEW_AUDIT_SUFFIX, blind=True)
        queue = pd.concat([queue, copies])
    return queue.sort_values("priority", ascending=False, kind="stable")


def first_new(queue: pd.DataFrame, pushed: set[str], limit: int) -> tuple[pd.DataFrame, int]:
    """The review queue cut to at most ``limit`` records never pushed: the blind audits
    (``spot_check``, or ``route_before_stop`` = ``spot_check`` after auto-accept stopped) first,
    then the rest by the queue's order (priority); a record's ``::audit`` copy goes with it. Rows
    whose record id is in ``pushed`` (:func:`pushed_ids`) all stay (an upsert refreshes them).

    ``queue``: :func:`review_queue`'s frame. Returns ``(queue, held_back)``, held_back = records
    never pushed and left for a later push. Raises ValueError for a negative ``limit``."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0 (records to push), got {limit}")
    ids = queue["id"].astype(str)
    record = ids.str.removesuffix(REVIEW_AUDIT_SUFFIX)
    new = ~record.isin(pushed)
    originals = queue[new & ~ids.str.endswith(REVIEW_AUDIT_SUFFIX)]
    audit = originals["route"].eq("spot_check")
    if "route_before_stop" in originals.columns:  # an audit stays one after auto-accept stopped
        audit |= originals["route_before_stop"].eq("spot_check")
    audits_first = (~audit).to_numpy()
    ordered = originals["id"].astype(str).to_numpy()[np.argsort(audits_first, kind="stable")]
    chosen = set(ordered[:limit])
    return queue[~new | record.isin(chosen)], int(len(ordered) - len(chosen))


def why_server_refuses(api_url: str, api_key: str, error: Exception) -> str:
    """One line saying why an Argilla client could not be made, from a probe of ``/api/v1/me``.

    The SDK's own error reads "cannot reach" for every failure; the probe tells apart a server
    that is down, a refused API key, and a server whose database is unreachable (503 from the
    local stack's launcher, see `argilla_stack.launch.answer_database_outages_with_503`).
    """
    import httpx

    try:
        answer = httpx.get(f"{api_url}/api/v1/me", headers={"X-Argilla-Api-Key": api_key}, timeout=10)
    except httpx.HTTPError as exc:
        return f"cannot reach Argilla at {api_url} ({exc}); start it with `labeltriage stack up` or fix ARGILLA_API_URL"
    if answer.status_code == 503:
        try:
            detail = str(answer.json().get("detail"))
        except ValueError:
            detail = answer.text[:200]
        return f"{detail} (the server at {api_url} answers 503); start the database (PostgreSQL), then rerun"
    if answer.status_code == 401:
        return f"Argilla at {api_url} refused the API key (401); set ARGILLA_API_KEY to an owner's or admin's key"
    return f"cannot use Argilla at {api_url}: {_short_error(error)}"


def _http_status(exc: Exception) -> int:
    """The HTTP status behind an SDK or httpx error (0 when there was no answer: a transport error).

    The Argilla SDK raises ``ArgillaAPIError`` subclasses carrying ``status_code``; httpx's
    ``HTTPStatusError`` carries the response."""
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else 0


def _short_error(exc: Exception, limit: int = 600) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def _with_retries(action: Callable[[], Any], what: str, retries: int, wait_s: float, report: Any = None) -> Any:
    """Run ``action``; while the server is down or restarting, wait and try again.

    A request the server rejects (4xx: invalid data, missing dataset) is not retried.
    """
    for attempt in range(retries + 1):
        try:
            return action()
        except Exception as exc:  # the SDK wraps connection errors in its own types
            rejected = 400 <= _http_status(exc) < 500 and _http_status(exc) != 429
            if rejected or attempt == retries:
                reason = "the server rejected it" if rejected else f"failed after {retries + 1} attempts"
                raise ArgillaIOError(f"{what}: {reason}: {_short_error(exc)}") from exc
            if report is not None:
                report.retries += 1
            time.sleep(wait_s * (2**attempt))
    return None


def push_records(
    dataset: Any,
    records: Sequence,
    checkpoint: Path | None = None,
    batch_size: int = MAX_BATCH,
    retries: int = 6,
    wait_s: float = 1.0,
    on_batch: Callable[[int], None] | None = None,
) -> PushReport:
    """Upsert ``records`` in batches; resumable through ``checkpoint``.

    Each batch is retried with exponential backoff while the server is unreachable (a restart);
    a rerun skips records already pushed with the same content, so an interrupted push resumes.
    The checkpoint names where it pushed (server URL, workspace, dataset name and id, see
    :func:`push_target`) and is only trusted for that same dataset, and only for the records the
    server still has: after the dataset was deleted and created again, or with another dataset
    name or server, every record is pushed (``report.checkpoint_note`` says why).
    """
    report = PushReport()
    started = time.perf_counter()
    target = push_target(dataset)
    done = _trusted_checkpoint(checkpoint, target, dataset, report)
    pending = []
    for record in records:
        digest = _record_digest(record)
        if done.get(str(record.id)) == digest:
            report.skipped_already_pushed += 1
        else:
            pending.append((record, digest))
    batch_size = max(1, min(batch_size, MAX_BATCH))
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]

        def log_batch(batch: list[tuple[Any, str]] = batch) -> Any:
            return dataset.records.log([record for record, _ in batch], batch_size=batch_size)

        _with_retries(
            log_batch,
            f"pushing records {start + 1}-{start + len(batch)} of {len(pending)} "
            f"(rerun the same command to resume: {report.pushed} already pushed)",
            retries,
            wait_s,
            report,
        )
        report.pushed += len(batch)
        report.batches += 1
        done.update({str(record.id): digest for record, digest in batch})
        if checkpoint is not None:
            write_json(checkpoint, {"target": target, "pushed": done}, indent=None)
        if on_batch is not None:
            on_batch(len(batch))
    report.seconds = time.perf_counter() - started
    return report


def has_vectors(dataset: Any) -> bool:
    """Whether the dataset has the ``embedding`` vector settings (a dataset made without vectors has not)."""
    return any(getattr(v, "name", None) == VECTOR_NAME for v in (dataset.settings.vectors or []))


def remove_suggestions(client: Any, dataset: Any, ids: set[str]) -> int:
    """Delete every suggestion of the records ``ids`` (external ids) on the server; returns how many
    records had one. A bulk upsert adds or replaces suggestions but never deletes them, so a record
    pushed with the LLM's suggestion and later pushed blind would keep showing it."""
    http = client.api.http_client
    removed = 0
    for record in dataset.records(with_suggestions=True, with_responses=False, with_vectors=False):
        if str(record.id) not in ids or not list(record.suggestions):
            continue
        suggestion_ids = ",".join(str(s._model.id) for s in record.suggestions)

        def send(record: Any = record, suggestion_ids: str = suggestion_ids) -> None:
            response = http.delete(f"/api/v1/records/{record._server_id}/suggestions", params={"ids": suggestion_ids})
            response.raise_for_status()

        _with_retries(send, f"removing the suggestion of blind record {record.id}", 6, 1.0)
        removed += 1
    return removed


def push_target(dataset: Any) -> dict[str, str]:
    """Where records go: the server URL, workspace, dataset name and the dataset's server id."""
    return {
        "api_url": str(dataset._client.api_url),
        "workspace": str(dataset.workspace.name),
        "dataset": str(dataset.name),
        "dataset_id": str(dataset.id),
    }


def _trusted_checkpoint(checkpoint: Path | None, target: dict[str, str], dataset: Any, report: PushReport) -> dict:
    """The checkpoint's pushed ids and digests, if it is this dataset's and the server still has them."""
    if checkpoint is None or not checkpoint.exists():
        return {}
    try:
        saved = json.loads(checkpoint.read_text())
    except json.JSONDecodeError:
        report.checkpoint_note = f"{checkpoint} is unreadable: pushing every record"
        return {}
    if not isinstance(saved, dict) or saved.get("target") != target:
        before = saved.get("target") if isinstance(saved, dict) else None
        where = f"{before['workspace']}/{before['dataset']} at {before['api_url']}" if before else "an unknown dataset"
        if before and before["dataset_id"] != target["dataset_id"] and before["dataset"] == target["dataset"]:
            where += " (deleted since, or created again)"
        report.checkpoint_note = f"the last push went to {where}: pushing every record"
        return {}
    done: dict[str, str] = saved.get("pushed") or {}
    # the cheap check first; when the counts differ (records deleted, or another run pushes into
    # the same dataset) read the ids the server has
    on_server = dataset.progress().get("total", 0)
    if on_server != len(done):
        present = record_ids(dataset)
        missing = [rid for rid in done if rid not in present]
        if missing:
            report.checkpoint_note = f"{len(missing)} pushed record(s) are gone from the server: pushing them again"
        done = {rid: digest for rid, digest in done.items() if rid in present}
    return done


def record_ids(dataset: Any) -> set[str]:
    """The ids of every record the server has in ``dataset`` (one listing, no responses)."""
    return {str(r.id) for r in dataset.records(with_suggestions=False, with_responses=False, with_vectors=False)}


def pushed_ids(dataset: Any, checkpoint: Path | None) -> set[str]:
    """Ids the push checkpoint says went to this very dataset and that the server still has
    (:func:`push_records`' own resume rule); empty without a checkpoint for it."""
    return set(_trusted_checkpoint(checkpoint, push_target(dataset), dataset, PushReport()))


def _record_digest(record: Any) -> str:
    import hashlib

    payload = {
        "fields": record.fields.to_dict() if hasattr(record.fields, "to_dict") else dict(record.fields),
        "metadata": dict(record.metadata),
        "suggestions": [(s.question_name, s.value, s.score, s.agent) for s in record.suggestions],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def records_metadata(dataset: Any) -> dict[str, dict[str, Any]]:
    """Every record of ``dataset`` the server has: id -> its metadata (one listing, no responses)."""
    listing = dataset.records(with_suggestions=False, with_responses=False, with_vectors=False)
    return {str(record.id): dict(record.metadata) for record in listing}


def update_metadata(
    client: Any,
    dataset: Any,
    updates: dict[str, dict[str, Any]],
    batch_size: int = MAX_BATCH,
    retries: int = 6,
    wait_s: float = 1.0,
    current: dict[str, dict[str, Any]] | None = None,
) -> int:
    """Merge ``updates`` (record id -> metadata values) into existing records' metadata.

    Goes through the bulk upsert endpoint with ``metadata`` only: fields, suggestions and
    reviewers' responses are left as they are. ``current``: :func:`records_metadata` when the
    caller listed the records already (None: listed here). Returns the number of records updated.
    """
    current = records_metadata(dataset) if current is None else current
    unknown = sorted(set(updates) - set(current))
    if unknown:
        raise ArgillaIOError(
            f"{len(unknown)} record(s) to update are not in Argilla (e.g. {unknown[:3]}); push them first"
        )
    items = [{"external_id": rid, "metadata": {**current[rid], **values}} for rid, values in updates.items()]
    http = client.api.http_client
    updated = 0
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]

        def send(chunk=chunk):
            response = http.put(f"/api/v1/datasets/{dataset.id}/records/bulk", json={"items": chunk})
            response.raise_for_status()

        _with_retries(send, f"updating metadata of records {start + 1}-{start + len(chunk)}", retries, wait_s)
        updated += len(chunk)
    return updated


def pull_responses(client: Any, dataset: Any, labels: Iterable[str], question: str) -> tuple[pd.DataFrame, PullReport]:
    """All reviewers' responses to ``question``: a long table and counts by status.

    Returns ``record_id, user, label, status, updated_at`` for every response (submitted, draft,
    discarded, and ``invalid_label`` for a value outside ``labels``, the task config's labels,
    e.g. after the config or the question was edited); only ``submitted`` rows are labels. A
    response of a deleted reviewer is kept under ``deleted-user:<id>``. The report names the
    labels that differ between the config and the Argilla question.
    """
    allowed = set(labels)
    usernames = {str(user.id): user.username for user in client.users}
    report = PullReport()
    asked = dataset.settings.questions[question]
    asked_labels = set(getattr(asked, "labels", None) or []) if asked is not None else set()
    if asked_labels and asked_labels != allowed:
        report.labels_removed_from_config = sorted(asked_labels - allowed)
        report.labels_added_to_config = sorted(allowed - asked_labels)
    rows = []
    for record in dataset.records(with_suggestions=False, with_responses=True, with_vectors=False):
        report.records += 1
        has_submitted = False
        for response in record.responses:
            if response.question_name != question:
                continue
            status = str(getattr(response.status, "value", response.status))
            value = response.value
            user = usernames.get(str(response.user_id), f"deleted-user:{response.user_id}")
            values = value if isinstance(value, list) else [value]
            if status != "discarded" and value is not None and not set(map(str, values)) <= allowed:
                if len(report.invalid_examples) < 5:
                    report.invalid_examples.append({"record_id": record.id, "user": user, "label": value})
                status = "invalid_label"
            setattr(report, status, getattr(report, status) + 1)
            has_submitted |= status == "submitted"
            rows.append(
                {
                    "record_id": record.id,
                    "user": user,
                    "label": json.dumps(sorted(values)) if isinstance(value, list) else value,
                    "status": status,
                    "updated_at": getattr(record, "updated_at", None) or pd.NaT,
                }
            )
        report.records_with_submitted += has_submitted
    frame = pd.DataFrame(rows, columns=["record_id", "user", "label", "status", "updated_at"])
    report.reviewers = sorted(frame.loc[frame["status"] == "submitted", "user"].unique().tolist())
    return frame, report
