"""Label Studio adapter: the same review queue as Argilla's, in a Label Studio project (REST API).

* :func:`labeling_config`: the project's labelling interface from the task config (the text, one
  Choices question named like the Argilla question, a read-only text area for the LLM's reasoning).
* :func:`build_tasks`: Label Studio tasks for rows of ``routed.parquet``: ``data`` (text, record
  id, priority, review rank, round) and, on assisted records only, one prediction (the LLM label
  as a Choices result, the reasoning as a text-area result, ``score`` = calibrated confidence,
  ``model_version`` = model/prompt hash). Blind records carry nothing of the model, not even
  their own priority (:func:`curation.adapters.argilla_io.shown_priorities`).
* :func:`push_tasks`: idempotent by record id (Label Studio's import always makes new tasks:
  existing ones are found by ``data.record_id`` and updated instead).
* :func:`pull_annotations`: every annotation as the long ``responses.parquet`` format
  (``record_id, user, label, status, updated_at``) so agreement, consensus and publish work
  unchanged; a skipped task is ``discarded``, a label outside the config ``invalid_label``
  (reported, never dropped). Drafts are private to their author in Label Studio: not pulled.

Authentication: a personal access token, exchanged at ``/api/token/refresh/`` for an access
token that lives 5 minutes (refreshed on 401). Protocol facts measured on Label Studio 1.23.2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import httpx
import pandas as pd

from curation.adapters.argilla_io import (
    EMPTY_TEXT_NOTE,
    PullReport,
    _clean_label,
    _float_or_none,
    _missing,
    is_blind,
    review_ranks,
    shown_priorities,
    suggestion_agent,
)
from labeltriage.errors import ReviewServerError
from labeltriage.jsonio import write_json

TEXT_NAME = "text"
REASONING_NAME = "llm_reasoning"
PAGE_SIZE = 100
PRIORITY_VIEW_TITLE = "Review queue (by priority)"


class LabelStudioClient:
    """A thin Label Studio REST client: ``get``/``post``/``patch``/``delete`` return parsed JSON.

    Raises ReviewServerError with one line naming the server, the request and what to do.
    """

    def __init__(self, url: str, token: str, timeout: float = 120.0):
        self.url = url.rstrip("/")
        self._token = token
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._refresh()

    def _refresh(self) -> None:
        try:
            reply = self._http.post("/api/token/refresh/", json={"refresh": self._token})
        except httpx.HTTPError as exc:
            raise ReviewServerError(
                f"cannot reach Label Studio at {self.url} ({exc}); start it with `labeltriage label-studio up` "
                "or fix LABEL_STUDIO_URL"
            ) from exc
        if reply.status_code != 200:
            raise ReviewServerError(
                f"Label Studio at {self.url} refused the token ({reply.status_code}); set LABEL_STUDIO_API_KEY to a "
                "personal access token (Account & Settings)"
            )
        self._http.headers["Authorization"] = "Bearer " + str(reply.json()["access"])

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; JSON of the reply (None when empty). Refreshes the access token once on 401."""
        try:
            reply = self._http.request(method, path, **kwargs)
            if reply.status_code == 401:
                self._refresh()
                reply = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ReviewServerError(
                f"Label Studio at {self.url}: {method} {path} failed ({exc}); is it running?"
            ) from exc
        if reply.status_code >= 400:
            raise ReviewServerError(
                f"Label Studio at {self.url}: {method} {path} -> {reply.status_code} {reply.text[:300]}"
            )
        return reply.json() if reply.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self._http.close()


# -- the project ------------------------------------------------------------------------------------
def labeling_config(config: Any) -> str:
    """The Label Studio labelling config (XML) for a task config: text, one Choices, reasoning box.

    The Choices tag is named after ``config.argilla.question`` (single or multiple choice from
    ``task_type``; each label's description is its hint); the reasoning is a read-only text area
    filled only by predictions, so blind tasks show it empty.
    """
    question = config.argilla.question
    kind = "multiple" if config.task_type == "multi_label" else "single"
    choices = "\n".join(
        f"    <Choice value={quoteattr(label.name)}"
        + (f" hint={quoteattr(label.description)}" if label.description else "")
        + "/>"
        for label in config.labels
    )
    return (
        "<View>\n"
        f'  <Text name="{TEXT_NAME}" value="$text"/>\n'
        f'  <Choices name={quoteattr(question)} toName="{TEXT_NAME}" choice="{kind}" showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        '  <Header value="LLM reasoning (empty on purpose on some tasks: label from the text alone)" size="6"/>\n'
        # maxSubmissions=1: the prediction's reasoning fills the one slot, so no input box is offered
        f'  <TextArea name="{REASONING_NAME}" toName="{TEXT_NAME}" editable="false" readonly="true" '
        'maxSubmissions="1" rows="2"/>\n'
        "</View>"
    )


def config_labels(label_config: str, question: str) -> list[str]:
    """The Choice values of the Choices tag named ``question`` in a labelling config (XML)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(label_config)
    for tag in root.iter("Choices"):
        if tag.get("name") == question:
            return [str(choice.get("value")) for choice in tag.iter("Choice")]
    return []


def _project_named(client: LabelStudioClient, title: str) -> dict[str, Any] | None:
    found = [p for p in _all(client, "/api/projects/", {"title": title}) if p.get("title") == title]
    return found[0] if found else None


def find_project(client: LabelStudioClient, title: str) -> int | None:
    """The id of the project titled ``title``, None when there is none."""
    project = _project_named(client, title)
    return int(project["id"]) if project is not None else None


def ensure_project(client: LabelStudioClient, config: Any, title: str) -> int:
    """The id of the project titled ``title``, made from the task config if missing.

    When the project's labels differ from the config's (a label added or edited in either), the
    project takes the config's labels: Label Studio's own check refuses removing a label that
    annotations use, and so does this function (ReviewServerError naming the labels and the fix).
    """
    if not 3 <= len(title) <= 50:  # Label Studio's own limits on a project title
        raise ReviewServerError(
            f"Label Studio project title {title!r} must have 3 to 50 characters: pass another --project"
        )
    wanted = labeling_config(config)
    project = _project_named(client, title)
    if project is None:
        # every task is shown to min_submitted annotators (Argilla's distribution setting)
        overlap = {"maximum_annotations": int(config.argilla.min_submitted), "overlap_cohort_percentage": 100}
        return int(client.post("/api/projects/", json={"title": title, "label_config": wanted, **overlap})["id"])
    project_id = int(project["id"])
    have = config_labels(str(project.get("label_config") or ""), config.argilla.question)
    want = [label.name for label in config.labels]
    if have != want:
        removed = [name for name in have if name not in want]
        try:  # the strict check Label Studio's own UI runs before saving a config
            client.post(f"/api/projects/{project_id}/validate/", json={"label_config": wanted})
        except ReviewServerError as exc:
            raise ReviewServerError(
                f"Label Studio project {title!r} has labels the task config removed ({', '.join(removed)}) "
                f"and annotations use them: put them back in the config's labels, or relabel those tasks first ({exc})"
            ) from exc
        client.patch(f"/api/projects/{project_id}/", json={"label_config": wanted})
    return project_id


def _all(client: LabelStudioClient, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every item of a paginated list endpoint (``results`` pages, or a plain list)."""
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        try:
            reply = client.get(path, params={**(params or {}), "page": page, "page_size": PAGE_SIZE})
        except ReviewServerError as exc:
            if "Invalid page" in str(exc):
                return items
            raise
        if isinstance(reply, list):
            return items + reply
        items += reply.get("results") or []
        if not reply.get("next"):
            return items
        page += 1


def project_tasks(
    client: LabelStudioClient, project_id: int, *, with_annotations: bool = False
) -> list[dict[str, Any]]:
    """Every task of a project (``fields=all`` adds annotations and predictions)."""
    tasks: list[dict[str, Any]] = []
    page = 1
    while True:
        params: dict[str, Any] = {"project": project_id, "page": page, "page_size": PAGE_SIZE}
        if with_annotations:
            params["fields"] = "all"
        try:
            reply = client.get("/api/tasks", params=params)
        except ReviewServerError as exc:
            if "Invalid page" in str(exc):  # Label Studio answers 404 past the last page
                return tasks
            raise
        tasks += reply.get("tasks") or []
        if not reply.get("tasks") or len(tasks) >= int(reply.get("total") or 0):
            return tasks
        page += 1


def ensure_priority_view(client: LabelStudioClient, project_id: int) -> int:
    """A Data Manager tab of the project sorted by priority, highest first; returns its id."""
    for view in client.get("/api/dm/views", params={"project": project_id}) or []:
        if (view.get("data") or {}).get("title") == PRIORITY_VIEW_TITLE:
            return int(view["id"])
    data = {"title": PRIORITY_VIEW_TITLE, "ordering": ["-tasks:data.priority"],
            "filters": {"conjunction": "and", "items": []}}  # fmt: skip
    return int(client.post("/api/dm/views", json={"project": project_id, "data": data})["id"])


def review_link(url: str, project_id: int, view_id: int) -> str:
    """The project's Data Manager on the by-priority tab (open a task from there)."""
    return f"{url.rstrip('/')}/projects/{project_id}/data?tab={view_id}"


# -- tasks ------------------------------------------------------------------------------------------
def prediction(row: dict[str, Any], config: Any, score: float | None) -> dict[str, Any] | None:
    """The Label Studio prediction for one pre-label (None for a failed one or a label outside the config)."""
    label = _clean_label(row.get("llm_label"))
    names = {label.name for label in config.labels}
    labels = label if isinstance(label, list) else [label]
    if label is None or not set(labels) <= names or row.get("status", "ok") != "ok":
        return None
    result: list[dict[str, Any]] = [
        {"from_name": config.argilla.question, "to_name": TEXT_NAME, "type": "choices", "value": {"choices": labels}}
    ]
    reasoning = row.get("reasoning")
    if isinstance(reasoning, str) and reasoning.strip():
        result.append({"from_name": REASONING_NAME, "to_name": TEXT_NAME, "type": "textarea",
                       "value": {"text": [reasoning.strip()]}})  # fmt: skip
    version = suggestion_agent(str(row.get("model", "llm")), str(row.get("prompt_hash", "")))
    made: dict[str, Any] = {"model_version": version, "result": result}
    if score is not None:
        made["score"] = float(score)
    return made


def build_tasks(frame: pd.DataFrame, config: Any, round_number: int = 0) -> list[dict[str, Any]]:
    """Label Studio tasks (``{"data", "predictions"}``) for rows of ``routed.parquet``, same order.

    ``data``: ``text`` (a note for an empty text), ``record_id``, ``priority`` (the shown one:
    a blind row's is drawn from the others), ``review_rank`` (1 = first), ``round``. An assisted
    row has one prediction (:func:`prediction`, score = calibrated confidence); a blind row
    (:func:`curation.adapters.argilla_io.is_blind`) none. Nothing else of the model or the route
    is in ``data``: Label Studio shows every data field to every member of the project.
    """
    blind = is_blind(frame)
    shown = shown_priorities(frame)
    ranks = review_ranks(shown)
    tasks = []
    for position, row in enumerate(frame.to_dict("records")):
        text = "" if _missing(row.get("text")) else str(row["text"])
        data = {
            "text": text if text.strip() else EMPTY_TEXT_NOTE,
            "record_id": str(row["id"]),
            "priority": float(shown[position]),
            "review_rank": int(ranks[position]),
            "round": int(round_number),
        }
        predictions = []
        if not blind[position]:
            calibrated = _float_or_none(row.get("calibrated_confidence"))
            score = calibrated if "calibrated_confidence" in row else _float_or_none(row.get("llm_confidence"))
            made = prediction(row, config, score)
            if made is not None:
                predictions.append(made)
        tasks.append({"data": data, "predictions": predictions})
    return tasks


@dataclass
class LabelStudioPushReport:
    """What :func:`push_tasks` did: tasks imported, updated (priority, rank, round), predictions
    removed (blind tasks) and replaced (a new score, label or model version)."""

    project_id: int
    imported: int = 0
    updated: int = 0
    predictions_removed: int = 0
    predictions_updated: int = 0
    blind: int = 0  # tasks pushed blind (set by the caller)
    queue_url: str = ""


def push_tasks(
    client: LabelStudioClient, project_id: int, tasks: list[dict[str, Any]], checkpoint: Path | None = None
) -> LabelStudioPushReport:
    """Import new tasks, update existing ones (found by ``data.record_id``): a rerun duplicates nothing.

    An existing task gets the new ``data`` (priority, rank, round); an existing *blind* task loses
    any prediction it had (a record first pushed assisted, then chosen for a blind audit), since an
    import never deletes one. ``checkpoint`` (JSON ``{record_id: task_id}``) is rewritten after the
    import. Raises ReviewServerError.
    """
    report = LabelStudioPushReport(project_id)
    existing = {
        str((t.get("data") or {}).get("record_id")): t for t in project_tasks(client, project_id, with_annotations=True)
    }
    new = [task for task in tasks if task["data"]["record_id"] not in existing]
    for start in range(0, len(new), 500):
        batch = new[start : start + 500]
        client.post(f"/api/projects/{project_id}/import", json=batch)
        report.imported += len(batch)
    for task in tasks:
        known = existing.get(task["data"]["record_id"])
        if known is None:
            continue
        if {k: (known.get("data") or {}).get(k) for k in task["data"]} != task["data"]:
            client.patch(f"/api/tasks/{known['id']}/", json={"data": {**(known.get("data") or {}), **task["data"]}})
            report.updated += 1
        had = known.get("predictions") or []
        if not task["predictions"]:
            for old in had:
                client.delete(f"/api/predictions/{old['id']}/")
                report.predictions_removed += 1
        elif [_same_prediction(old) for old in had] != [_same_prediction(made) for made in task["predictions"]]:
            # a new calibration, route or model: the prediction shown is replaced, never left stale
            for old in had:
                client.delete(f"/api/predictions/{old['id']}/")
            for made in task["predictions"]:
                client.post("/api/predictions/", json={**made, "task": known["id"]})
            report.predictions_updated += 1
    if checkpoint is not None:  # new tasks' ids are known only after the import: list again then
        listed = project_tasks(client, project_id) if new else list(existing.values())
        write_json(checkpoint, {str((t.get("data") or {}).get("record_id")): int(t["id"]) for t in listed})
    return report


def _same_prediction(made: dict[str, Any]) -> tuple[Any, ...]:
    """What a reviewer sees of a prediction: its model version, score (rounded) and result."""
    score = made.get("score")
    return (made.get("model_version"), None if score is None else round(float(score), 6),
            json.dumps(made.get("result"), sort_keys=True))  # fmt: skip


# -- annotations ------------------------------------------------------------------------------------
def pull_annotations(
    client: LabelStudioClient, project_id: int, labels: list[str], question: str, multi_label: bool = False
) -> tuple[pd.DataFrame, PullReport]:
    """Every annotation of the project as ``record_id, user, label, status, updated_at`` rows.

    ``user`` is the annotator's username (``deleted-user:<id>`` when unknown); ``status``:
    ``submitted``, ``discarded`` (a skipped task, or one submitted with no choice) or ``invalid_label`` (a label outside
    ``labels``: reported in the counts and ``invalid_examples``, kept). Multi-label answers are a
    JSON list, as from Argilla. Raises ReviewServerError.
    """
    users = {int(u["id"]): str(u.get("username") or u.get("email")) for u in client.get("/api/users/") or []}
    allowed = set(labels)
    report = PullReport()
    rows = []
    for task in project_tasks(client, project_id, with_annotations=True):
        report.records += 1
        record_id = str((task.get("data") or {}).get("record_id", task["id"]))
        has_submitted = False
        for annotation in task.get("annotations") or []:
            author = annotation.get("completed_by")
            author_id = int(author["id"]) if isinstance(author, dict) else int(author or 0)
            user = users.get(author_id, f"deleted-user:{author_id}")
            chosen = [
                item for item in annotation.get("result") or []
                if item.get("from_name") == question and item.get("type") == "choices"
            ]  # fmt: skip
            values = [str(v) for item in chosen for v in (item.get("value") or {}).get("choices") or []]
            if annotation.get("was_cancelled") or not values:  # skipped, or submitted with no choice: no answer
                status, value = "discarded", None
            else:
                status = "submitted" if set(values) <= allowed else "invalid_label"
                value = json.dumps(sorted(values)) if multi_label else values[0]
            if status == "invalid_label" and len(report.invalid_examples) < 5:
                report.invalid_examples.append({"record_id": record_id, "user": user, "label": values or None})
            setattr(report, status, getattr(report, status) + 1)
            has_submitted |= status == "submitted"
            rows.append({"record_id": record_id, "user": user, "label": value, "status": status,
                         "updated_at": pd.Timestamp(annotation.get("updated_at")) if annotation.get("updated_at")
                         else pd.NaT})  # fmt: skip
        report.records_with_submitted += has_submitted
    frame = pd.DataFrame(rows, columns=["record_id", "user", "label", "status", "updated_at"])
    report.reviewers = sorted(frame.loc[frame["status"] == "submitted", "user"].unique().tolist())
    return frame, report


def stored_predictions(client: LabelStudioClient, task_id: int) -> list[dict[str, Any]]:
    """The predictions Label Studio stored for a task (``model_version``, ``score``, ``result``)."""
    return list(client.get("/api/predictions/", params={"task": task_id}) or [])


def connect_backend(client: LabelStudioClient, project_id: int, url: str, title: str = "labeltriage") -> int:
    """Connect an ML backend at ``url`` to the project (once); returns its id. Label Studio checks
    ``/health`` and calls ``/setup`` before it answers."""
    for backend in client.get("/api/ml", params={"project": project_id}) or []:
        if str(backend.get("url", "")).rstrip("/") == url.rstrip("/"):
            return int(backend["id"])
    made = client.post("/api/ml", json={"url": url, "project": project_id, "title": title, "is_interactive": False})
    return int(made["id"])


def request_predictions(client: LabelStudioClient, project_id: int, task_ids: list[int]) -> None:
    """Ask the project's ML backend for predictions of ``task_ids`` (Label Studio's own action).

    Label Studio answers "Retrieved N predictions" even when the backend is down and nothing was
    stored: read :func:`stored_predictions` to know.
    """
    client.post(
        "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project_id},
        json={"selectedItems": {"all": False, "included": [int(i) for i in task_ids]}},
    )  # fmt: skip
