"""Label Studio as the review tool: push, pull, a feedback round and the ML backend, over a run directory.

The same steps as Argilla's in :mod:`labeltriage.api`, writing the same run files, so
``agreement`` and ``publish`` work unchanged on answers given in Label Studio:

    >>> import labeltriage as lt
    >>> lt.push_label_studio("runs/r1")          # tasks with predictions, sorted tab by priority
    >>> lt.pull_label_studio("runs/r1")          # annotations -> responses.parquet
    >>> lt.agreement("runs/r1"); lt.publish("runs/r1")

Where a label comes from: ``route`` -> :func:`curation.adapters.labelstudio_io.build_tasks`
(prediction = the LLM label, score = calibrated confidence) -> annotations ->
:func:`curation.adapters.labelstudio_io.pull_annotations` -> responses.parquet -> publish.

The server: ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` (a personal access token) when set,
else the local one `labeltriage label-studio up` started (:mod:`label_studio_stack.server`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labeltriage.errors import ReviewServerError
from labeltriage.rundir import RunDir

if TYPE_CHECKING:
    from curation.adapters.argilla_io import PullReport
    from curation.adapters.labelstudio_backend import MLBackend, Predictor
    from curation.adapters.labelstudio_io import LabelStudioClient, LabelStudioPushReport
    from curation.adapters.loop import RoundResult

PathLike = str | Path
PUSH_FILE = "label_studio_push.json"


def connect_label_studio(url: str | None = None, token: str | None = None) -> LabelStudioClient:
    """A client for ``url``/``token``, else ``LABEL_STUDIO_URL``/``LABEL_STUDIO_API_KEY``, else the
    local server of `labeltriage label-studio up`. Raises ReviewServerError (not running, token refused)."""
    from curation.adapters.labelstudio_io import LabelStudioClient
    from label_studio_stack.server import LabelStudioServer

    url = url or os.environ.get("LABEL_STUDIO_URL")
    token = token or os.environ.get("LABEL_STUDIO_API_KEY")
    if not url or not token:
        local_url, local_token = LabelStudioServer().credentials()
        url, token = url or local_url, token or local_token
    return LabelStudioClient(url, token)


def project_title(run: RunDir, project: str | None = None) -> str:
    """The run's Label Studio project: ``project`` if given, else the one the run was pushed to
    (label_studio_push.json), else the task config's ``argilla.dataset``."""
    pushed = (run.json(PUSH_FILE, default={}) or {}).get("project")
    return project or (str(pushed) if pushed else run.task_config().argilla.dataset)


def _project(client: LabelStudioClient, run: RunDir, project: str | None) -> tuple[Any, int]:
    from curation.adapters.labelstudio_io import ensure_project

    task = run.task_config()
    return task, ensure_project(client, task, project_title(run, project))


def push_label_studio(
    run_dir: PathLike | RunDir,
    *,
    config: PathLike | None = None,
    client: LabelStudioClient | None = None,
    project: str | None = None,
    include_auto: bool = False,
    round_number: int | None = None,
) -> LabelStudioPushReport:
    """Push the run's review queue to a Label Studio project (made from the task config if missing).

    The same queue as :func:`labeltriage.api.push` (human_review, spot_check blind, review audits
    blind as ``<id>::audit``); assisted tasks carry the LLM label as a prediction scored with the
    calibrated confidence and the reasoning; blind ones nothing of the model. A rerun updates
    priorities and duplicates nothing. ``project``: the project's title (default: the config's
    ``argilla.dataset``). Writes label_studio_push.json (with the queue link, sorted by
    priority). Raises ReviewServerError, RunDirError.
    """
    from curation.adapters import argilla_io, labelstudio_io
    from labeltriage.api import last_round
    from labeltriage.jsonio import write_json
    from labeltriage.reasoning import reasoning_for_review
    from labeltriage.trust import enforce_certificate

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir, config)
    enforce_certificate(run)  # a void certificate's records join the review queue
    routed = run.routed_for_review()  # before the project is made: a run not routed leaves nothing behind
    queue = argilla_io.review_queue(routed, include_auto=include_auto)
    client = client or connect_label_studio()
    task, project_id = _project(client, run, project)
    queue, _ = reasoning_for_review(run, queue)  # review_only: the assisted tasks' reasoning, asked now
    round_number = last_round(run) if round_number is None else round_number
    tasks = labelstudio_io.build_tasks(queue, task, round_number=round_number)
    blind = argilla_io.is_blind(queue)
    run.record_shown(set(queue.loc[~blind, "id"].astype(str)), set(queue.loc[blind, "id"].astype(str)))
    report = labelstudio_io.push_tasks(client, project_id, tasks, checkpoint=run / "label_studio_tasks.json")
    report.blind = int(blind.sum())
    view = labelstudio_io.ensure_priority_view(client, project_id)
    report.queue_url = labelstudio_io.review_link(client.url, project_id, view)
    write_json(run / PUSH_FILE, {"project": project_title(run, project), **report.__dict__})
    return report


def pull_label_studio(
    run_dir: PathLike | RunDir,
    *,
    config: PathLike | None = None,
    client: LabelStudioClient | None = None,
    project: str | None = None,
    drop_missing: bool = False,
) -> PullReport:
    """Pull every annotation of the run's Label Studio project into responses.parquet and pull.json.

    The same long format and history rules as :func:`labeltriage.api.pull` (a submitted answer
    the server lost is kept with ``on_server = False`` unless ``drop_missing``); a skipped task is
    ``discarded``, a label outside the config ``invalid_label`` (counted, kept). Raises
    ReviewServerError (no project: push first).
    """
    from curation.adapters.labelstudio_io import find_project, pull_annotations
    from curation.adapters.loop import save_pulled

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir, config)
    client = client or connect_label_studio()
    task = run.task_config()
    if project is None and not (run / PUSH_FILE).is_file():  # another run's project would be pulled
        raise ReviewServerError(
            f"{run.path} was never pushed to Label Studio (no {PUSH_FILE}): `labeltriage label-studio push "
            f"{run.path}` first, or name the project with --project"
        )
    title = project_title(run, project)
    project_id = find_project(client, title)
    if project_id is None:
        raise ReviewServerError(
            f"Label Studio has no project {title!r}: push first (`labeltriage label-studio push {run.path}`)"
        )
    frame, report = pull_annotations(
        client, project_id, [label.name for label in task.labels], task.argilla.question,
        multi_label=task.task_type == "multi_label",
    )  # fmt: skip
    return save_pulled(frame, report, run.path, drop_missing=drop_missing)


def round_label_studio(
    run_dir: PathLike | RunDir,
    *,
    config: PathLike | None = None,
    client: LabelStudioClient | None = None,
    project: str | None = None,
    round_number: int | None = None,
    min_agreement: float = 0.6,
) -> RoundResult:
    """One feedback round on Label Studio: pull, retrain the student, re-prioritise, update the tasks.

    As :func:`labeltriage.api.loop`'s round (:func:`curation.adapters.loop.reprioritised_queue`):
    tasks get the new priority, rank and round in ``data``; disagreements go first. The blind
    audits' verdict runs too. Writes loop.json. Raises ReviewServerError.
    """
    from curation.adapters import labelstudio_io
    from curation.adapters.loop import RoundResult, reprioritised_queue
    from labeltriage.api import last_round
    from labeltriage.jsonio import write_json
    from labeltriage.trust import audit_verdict

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir, config)
    client = client or connect_label_studio()
    number = last_round(run) + 1 if round_number is None else round_number
    report = pull_label_studio(run, client=client, project=project)
    task, project_id = _project(client, run, project)
    queue, adjudicate, info = reprioritised_queue(run.path, task, min_agreement)
    tasks = labelstudio_io.build_tasks(queue, task, round_number=number)
    pushed = labelstudio_io.push_tasks(client, project_id, tasks)
    result = RoundResult(number, report, info, sorted(adjudicate), pushed.updated)
    verdict = audit_verdict(run, number)
    result.audit = verdict.to_dict() if verdict is not None else None
    write_json(run / "loop.json", result.to_dict(), default=str)
    return result


def label_studio_predictor(run_dir: PathLike | RunDir, *, config: PathLike | None = None) -> tuple[Predictor, str]:
    """``(predict, model_version)`` for :class:`curation.adapters.labelstudio_backend.MLBackend` from a run.

    A task whose ``data.record_id`` is a record of the run gets that record's pre-label (label,
    reasoning, calibrated confidence as ``score``), with no model call; a blind one (spot check,
    review audit, drawn gold, anything ever pushed blind: :meth:`RunDir.routed_for_review`) gets
    no prediction at all; a task from elsewhere is pre-labelled by the run's model (the backend
    and model the run was pre-labelled with, run.json) through the run's cache (a text is never
    labelled twice) and scored by the run's calibrator when there is one. The run's files are read
    again whenever one changes (a new route, draw or calibration applies at once, while the backend
    runs). ``model_version`` is the pre-labels' ``model/prompt_hash``, as on pushed predictions.
    """
    import pandas as pd

    from curation.adapters import argilla_io, labelstudio_io
    from curation.calibration import load_calibrator
    from pipelines.prelabeller import with_overrides

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir, config)
    recorded = run.json("run.json", default={}) or {}
    task = with_overrides(run.task_config(), recorded.get("backend"), recorded.get("model"))
    watched = ("prelabels.parquet", "routed.parquet", "gold_draw.json", "blind_shown.json", "calibrator.json")
    state: dict[str, Any] = {}
    labeller: list[Any] = []  # built on the first unseen text: loading the model takes seconds

    def current() -> dict[str, Any]:
        stamp = tuple((run / name).stat().st_mtime_ns if (run / name).is_file() else 0 for name in watched)
        if state.get("stamp") != stamp:
            prelabels = run.table("prelabels.parquet", required_columns=("id", "llm_label", "status"))
            rows = {str(r["id"]): r for r in prelabels.to_dict("records")}
            if (run / "routed.parquet").is_file():  # its blind flag includes drawn gold and records shown blind
                routed = run.routed_for_review(("id", "route"))
                rows |= {str(r["id"]): r for r in routed.to_dict("records")}
                blind = set(routed.loc[argilla_io.is_blind(routed), "id"].astype(str))
            else:
                blind = set((run.json("gold_draw.json", default={}) or {}).get("ids") or []) | run.shown()[1]
            calibrator = load_calibrator(run / "calibrator.json") if (run / "calibrator.json").is_file() else None
            state.update(stamp=stamp, rows=rows, blind=blind, calibrator=calibrator)
        return state

    def score(row: dict[str, Any], calibrator: Any) -> float | None:
        if "calibrated_confidence" in row and row["calibrated_confidence"] == row["calibrated_confidence"]:
            return float(row["calibrated_confidence"])
        raw = row.get((calibrator.meta.get("confidence_column") if calibrator else None) or "llm_confidence")
        if calibrator is None or raw is None or raw != raw:
            return None
        return float(calibrator.transform([float(raw)])[0])

    def predict(tasks: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        now = current()
        results: list[list[dict[str, Any]]] = [[] for _ in tasks]
        unseen: list[tuple[int, str]] = []
        for k, item in enumerate(tasks):
            data = item.get("data") or {}
            rid = str(data.get("record_id") or "")
            if rid in now["blind"] or rid.endswith(argilla_io.REVIEW_AUDIT_SUFFIX):
                continue  # blind: nothing of the model, ever
            if rid in now["rows"]:
                made = labelstudio_io.prediction(now["rows"][rid], task, score(now["rows"][rid], now["calibrator"]))
                results[k] = [made] if made is not None else []
            else:
                unseen.append((k, str(data.get("text") or data.get(task.text_column) or "")))
        if unseen:
            if not labeller:
                from pipelines.prelabeller import Prelabeller

                labeller.append(Prelabeller(task, run.path, show_progress=False))
            frame = pd.DataFrame({"id": [f"label-studio-task-{k}" for k, _ in unseen], "text": [t for _, t in unseen]})
            answered = labeller[0].run(frame).frame
            for (k, _), row in zip(unseen, answered.to_dict("records"), strict=True):
                made = labelstudio_io.prediction(row, task, score(row, now["calibrator"]))
                results[k] = [made] if made is not None else []
        return results

    first: dict[str, Any] = next(iter(current()["rows"].values()), {})
    version = argilla_io.suggestion_agent(str(first.get("model", "llm")), str(first.get("prompt_hash", "")))
    return predict, version


def serve_backend(
    run_dir: PathLike | RunDir,
    *,
    config: PathLike | None = None,
    port: int = 0,
    on_batch: Callable[[int], None] | None = None,
    every: int = 25,
) -> MLBackend:
    """An ML backend for the run (not started: ``with serve_backend(run) as backend: ...``, or
    ``backend.serve_forever()``). ``on_batch(n)`` runs every ``every`` annotation events (the CLI
    runs a feedback round there)."""
    from curation.adapters.labelstudio_backend import MLBackend

    predict, version = label_studio_predictor(run_dir, config=config)
    return MLBackend(predict, version, port=port, on_batch=on_batch, every=every)


def run_backend(
    run_dir: PathLike | RunDir,
    *,
    config: PathLike | None = None,
    project: str | None = None,
    port: int = 9090,
    every: int = 25,
    say: Callable[[str], None] = print,
) -> None:
    """Serve the run's ML backend, connect it to the project, run a feedback round every ``every``
    annotations (0: none) until KeyboardInterrupt (the CLI's `label-studio backend`)."""
    import threading

    from curation.adapters.labelstudio_io import connect_backend, find_project

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir, config)
    title = project_title(run, project)

    def on_batch(n_new: int) -> None:
        say(f"{n_new} new annotation(s): feedback round")
        round_label_studio(run, project=project)

    server = serve_backend(run, port=port, on_batch=on_batch if every else None, every=max(every, 1)).start()
    try:
        client = connect_label_studio()  # Label Studio checks the backend's /health while connecting: serve first
        project_id = find_project(client, title)
        if project_id is not None:
            connect_backend(client, project_id, server.url)
            say(f"connected to Label Studio project {title!r} ({client.url}/projects/{project_id})")
        else:
            say(f"no project {title!r} yet: connect {server.url} in the project's Model settings")
        say(f"ML backend on {server.url} (model version {server.model_version}); Ctrl-C stops it")
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
