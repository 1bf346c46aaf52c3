"""`labeltriage push | pull | loop`: wiring between a run directory and Argilla."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from labeltriage.jsonio import write_json

run_dir_argument = click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
config_option = click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Task config (default: the one recorded in RUN_DIR/run.json).",
)


def load_run_config(run_dir: Path, config: Path | None) -> Any:
    from labeltriage.config import ConfigError, load_task_config

    if config is None:
        run_json = run_dir / "run.json"
        recorded = json.loads(run_json.read_text()).get("config") if run_json.exists() else None
        if not recorded:
            raise click.UsageError(f"{run_json} names no task config; pass --config datasets_config/<task>.yaml")
        config = Path(recorded)
    try:
        return load_task_config(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def argilla_client() -> Any:
    """The SDK client: ARGILLA_API_URL / ARGILLA_API_KEY from the environment, else the local stack."""
    import argilla as rg

    from argilla_stack.stack import Stack, StackError

    api_url, api_key = os.environ.get("ARGILLA_API_URL"), os.environ.get("ARGILLA_API_KEY")
    if not (api_url and api_key):
        try:
            api_url, api_key = Stack().credentials()
        except StackError as exc:
            raise click.ClickException(
                f"{exc}, or set ARGILLA_API_URL and ARGILLA_API_KEY for another Argilla server"
            ) from exc
    try:
        return rg.Argilla(api_url=api_url, api_key=api_key, timeout=120)
    except Exception as exc:
        from curation.argilla_io import why_server_refuses

        raise click.ClickException(why_server_refuses(api_url, api_key, exc)) from exc


def _read_routed(run_dir: Path):
    import pandas as pd

    path = run_dir / "routed.parquet"
    if not path.exists():
        raise click.ClickException(f"{path} is missing; run `labeltriage route {run_dir}` first")
    return pd.read_parquet(path)


@click.command()
@run_dir_argument
@config_option
@click.option("--include-auto", is_flag=True, help="Also push auto-accepted records (normally kept out).")
@click.option("--round", "round_number", default=0, show_default=True, help="Round number stored as metadata.")
@click.option("--batch-size", default=500, show_default=True, help="Records per request (the server caps at 500).")
@click.option("--no-vectors", is_flag=True, help="Do not embed texts (no 'find similar' in the UI).")
def push(run_dir: Path, config: Path | None, include_auto: bool, round_number: int, batch_size: int, no_vectors: bool):
    """Push the review queue of RUN_DIR to Argilla: suggestions, reasoning, priority metadata.

    Records routed to human_review and spot_check go to the dataset named in the config's
    `argilla` section; the LLM label is the suggestion (score = calibrated confidence, agent =
    model/prompt_hash). Reruns create no duplicates and resume an interrupted push.

    \b
    Examples:
      labeltriage push runs/r1
      labeltriage push runs/r1 --include-auto --round 1
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from curation import argilla_io
    from curation.loop import run_embeddings

    task = load_run_config(run_dir, config)
    routed = _read_routed(run_dir)
    queue = argilla_io.review_queue(routed, include_auto=include_auto)
    vectors = None
    if not no_vectors:
        all_vectors = run_embeddings(run_dir, routed["text"].astype(str).tolist(), routed["id"].astype(str).tolist())
        vectors = all_vectors[routed.index.get_indexer(queue.index)]
    client = argilla_client()
    try:
        dataset = argilla_io.ensure_dataset(client, task, vector_dimensions=None if no_vectors else 384)
    except argilla_io.ArgillaIOError as exc:
        raise click.ClickException(str(exc)) from exc
    records = argilla_io.build_records(queue, task, round_number=round_number, vectors=vectors)
    with Progress(
        TextColumn("pushing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    ) as progress:
        bar = progress.add_task("push", total=len(records))
        try:
            report = argilla_io.push_records(
                dataset,
                records,
                checkpoint=run_dir / "push_checkpoint.json",
                batch_size=batch_size,
                on_batch=lambda n: progress.advance(bar, n),
            )
        except argilla_io.ArgillaIOError as exc:
            raise click.ClickException(str(exc)) from exc
    report.not_routed_to_review = len(routed) - len(queue)
    if report.checkpoint_note:
        click.echo(f"note: {report.checkpoint_note}")
    write_json(run_dir / "push.json", {"dataset": task.argilla.dataset, **report.__dict__})
    click.echo(
        f"pushed {report.pushed} record(s) to {task.argilla.workspace}/{task.argilla.dataset} "
        f"({report.skipped_already_pushed} already there, {report.not_routed_to_review} auto-accepted kept out)"
    )


@click.command()
@run_dir_argument
@config_option
@click.option(
    "--drop-missing",
    is_flag=True,
    help="Forget submitted responses that earlier pulls saved and the server no longer has (default: keep).",
)
def pull(run_dir: Path, config: Path | None, drop_missing: bool):
    """Pull reviewers' responses into RUN_DIR/responses.parquet (drafts and discarded are counted).

    \b
    Example:
      labeltriage pull runs/r1 && labeltriage agreement runs/r1
    """
    from curation import argilla_io
    from curation.loop import pull_to_run

    task = load_run_config(run_dir, config)
    client = argilla_client()
    dataset = client.datasets(name=task.argilla.dataset, workspace=task.argilla.workspace)
    if dataset is None:
        raise click.ClickException(
            f"no dataset {task.argilla.workspace}/{task.argilla.dataset} in Argilla; run `labeltriage push {run_dir}`"
        )
    try:
        report = pull_to_run(client, dataset, task, run_dir, drop_missing=drop_missing)
    except argilla_io.ArgillaIOError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"pulled {report.submitted} submitted response(s) from {len(report.reviewers)} reviewer(s) on "
        f"{report.records_with_submitted}/{report.records} record(s); not used: {report.draft} draft, "
        f"{report.discarded} discarded, {report.invalid_label} with a label outside the task config's labels"
    )
    for example in report.invalid_examples:
        click.echo(f"  invalid label {example['label']!r} by {example['user']} on record {example['record_id']}")
    if report.labels_removed_from_config or report.labels_added_to_config:
        changes = [f"no longer has {label!r}" for label in report.labels_removed_from_config] + [
            f"adds {label!r}" for label in report.labels_added_to_config
        ]
        click.echo(
            f"warning: the task config ({task.source_path}) {', '.join(changes)} against the Argilla question "
            f"{task.argilla.question!r}; answers with a label the config lacks are not used. Fix: restore the "
            "config's labels, or push to a new dataset (argilla.dataset) for the new label set",
            err=True,
        )
    if report.kept_from_earlier_pulls:
        click.echo(
            f"warning: {report.kept_from_earlier_pulls} submitted response(s) saved by an earlier pull are no longer "
            f"on the server (a reviewer's account or a record deleted?); kept in responses.parquet (on_server = "
            f"false). To forget them: labeltriage pull {run_dir} --drop-missing",
            err=True,
        )
    if report.dropped_from_earlier_pulls:
        click.echo(f"dropped {report.dropped_from_earlier_pulls} response(s) the server no longer has", err=True)


@click.command()
@run_dir_argument
@config_option
@click.option("--rounds", default=1, show_default=True, help="Rounds to run now (polling mode).")
@click.option("--start-round", default=1, show_default=True)
@click.option("--min-agreement", default=0.6, show_default=True, help="Below it a record goes to adjudication.")
@click.option("--watch", is_flag=True, help="Event-driven: run a round every --every new submitted responses.")
@click.option("--every", default=50, show_default=True, help="With --watch: responses per round.")
@click.option("--listen-port", default=0, help="With --watch: port of the webhook listener on 127.0.0.1 (0 = any).")
def loop(
    run_dir: Path,
    config: Path | None,
    rounds: int,
    start_round: int,
    min_agreement: float,
    watch: bool,
    every: int,
    listen_port: int,
):
    """Feedback rounds: pull, agreement, retrain the student, re-prioritise, push metadata.

    Priorities and rounds are updated as metadata only: reviewers' responses are never touched.
    Records whose reviewers disagree get route=adjudication and priority 1. With --watch, an
    Argilla webhook (response events, signed) triggers a round every --every submitted responses
    until --rounds rounds ran or Ctrl-C; the webhook is removed on exit.

    \b
    Examples:
      labeltriage loop runs/r1 --rounds 1
      labeltriage loop runs/r1 --watch --every 25 --rounds 10
    """
    from curation import argilla_io
    from curation.loop import run_round

    task = load_run_config(run_dir, config)
    client = argilla_client()
    dataset = client.datasets(name=task.argilla.dataset, workspace=task.argilla.workspace)
    if dataset is None:
        raise click.ClickException(f"no dataset {task.argilla.dataset} in Argilla; run `labeltriage push {run_dir}`")
    numbers = list(range(start_round, start_round + rounds))

    def one_round(round_number: int) -> None:
        try:
            summary = run_round(client, dataset, task, run_dir, round_number, min_agreement=min_agreement)
        except argilla_io.ArgillaIOError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(
            f"round {round_number}: {summary['pulled']['submitted']} submitted, "
            f"{len(summary['adjudication'])} to adjudicate, {summary['metadata_updated']} priorities updated"
        )

    if not watch:
        for round_number in numbers:
            one_round(round_number)
        return
    _watch(client, dataset, every, listen_port, numbers, one_round)


def _watch(client: Any, dataset: Any, every: int, port: int, numbers: list[int], one_round: Any) -> None:
    import threading

    import argilla as rg

    from curation.webhooks import ResponseWebhookListener

    done = threading.Event()

    remaining = list(numbers)

    def on_batch(n_new: int) -> None:
        if remaining:
            click.echo(f"{n_new} new submitted response(s)")
            one_round(remaining.pop(0))
        if not remaining:
            done.set()

    listener = ResponseWebhookListener(str(dataset.id), every, on_batch, port=port)
    webhook = rg.Webhook(url=listener.url, events=["response.created", "response.updated"], _client=client).create()
    listener.start(webhook.secret)
    click.echo(f"listening on {listener.url} for responses to {dataset.name}; Ctrl-C to stop")
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()
        webhook.delete()
