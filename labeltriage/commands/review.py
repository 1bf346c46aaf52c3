"""`labeltriage push | pull | loop`: options -> `labeltriage.api` -> rendered results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from labeltriage.commands.params import config_option, run_dir_argument
from labeltriage.render import render_pull, render_push, render_round


@click.command()
@run_dir_argument
@config_option
@click.option("--include-auto", is_flag=True, help="Also push auto-accepted records (normally kept out).")
@click.option(
    "--round",
    "round_number",
    type=int,
    default=None,
    help="Round number stored as metadata [default: the last loop round, else 0].",
)
@click.option("--batch-size", default=500, show_default=True, help="Records per request (the server caps at 500).")
@click.option("--no-vectors", is_flag=True, help="Do not embed texts (no 'find similar' in the UI).")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help="Push at most N records not pushed before: blind audits first, then by priority (default: all).",
)
def push(run_dir: Path, no_vectors: bool, **options: Any) -> None:
    """Push the review queue of RUN_DIR to Argilla: suggestions, reasoning, priority metadata.

    Records routed to human_review and spot_check go to the dataset named in the config's
    `argilla` section; the LLM label is the suggestion (score = calibrated confidence, agent =
    model/prompt_hash). Reruns create no duplicates and resume an interrupted push.

    \b
    Examples:
      labeltriage push runs/r1
      labeltriage push runs/r1 --include-auto --round 1
      labeltriage push runs/r1 --limit 15000        # the 15,000 records that matter most first
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from labeltriage import api

    # the bar starts with the first batch: an error before it is one line, with no blank line above
    progress = Progress(TextColumn("pushing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
    bars: list = []

    def advance(n: int) -> None:
        if not bars:
            progress.start()
            bars.append(progress.add_task("push", total=None))
        progress.advance(bars[0], n)

    try:
        report = api.push(run_dir, vectors=not no_vectors, on_batch=advance, **options)
    finally:
        if bars:  # stopping a Progress that never started prints an empty line
            progress.stop()
    render_push(report, api.RunDir(run_dir, options["config"]).task_config())


@click.command()
@run_dir_argument
@config_option
@click.option(
    "--drop-missing",
    is_flag=True,
    help="Forget submitted responses that earlier pulls saved and the server no longer has (default: keep).",
)
def pull(run_dir: Path, config: Path | None, drop_missing: bool) -> None:
    """Pull reviewers' responses into RUN_DIR/responses.parquet (drafts and discarded are counted).

    \b
    Example:
      labeltriage pull runs/r1 && labeltriage agreement runs/r1
    """
    from labeltriage import api

    run = api.RunDir(run_dir, config)
    render_pull(api.pull(run, drop_missing=drop_missing), run)


@click.command()
@run_dir_argument
@config_option
@click.option("--rounds", default=1, show_default=True, help="Rounds to run now (polling mode).")
@click.option(
    "--start-round", type=int, default=None, help="First round's number [default: the one after the last, else 1]."
)
@click.option("--min-agreement", default=0.6, show_default=True, help="Below it a record goes to adjudication.")
@click.option("--watch", "watch_mode", is_flag=True, help="Event-driven: a round every --every submitted responses.")
@click.option("--every", default=50, show_default=True, help="With --watch: responses per round.")
@click.option("--listen-port", default=0, help="With --watch: port of the webhook listener on 127.0.0.1 (0 = any).")
def loop(run_dir: Path, watch_mode: bool, every: int, listen_port: int, **options: Any) -> None:
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
    from labeltriage import api

    if watch_mode:
        api.watch(run_dir, every=every, listen_port=listen_port, on_event=click.echo, on_round=render_round,
                  **options)  # fmt: skip
    else:
        api.loop(run_dir, on_round=render_round, **options)
    fresh = api.reviews_not_yet_examples(run_dir, config=options.get("config"))
    if fresh:
        click.echo(
            f"retrieval: {fresh} reviewed label(s) are not examples yet; rerun `labeltriage prelabel` with the same "
            f"config, input, --examples and --output {run_dir} (only records whose examples change are asked "
            "again), then calibrate, route and push"
        )
