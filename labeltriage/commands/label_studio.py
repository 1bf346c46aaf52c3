"""`labeltriage label-studio ...`: wiring for `label_studio_stack.server` and `labeltriage.label_studio`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from label_studio_stack.server import DEFAULT_PORT, LabelStudioServer
from labeltriage.commands.params import config_option, run_dir_argument
from labeltriage.jsonio import dumps

home_option = click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=None,
    help="Label Studio home (default: <stack home>/label-studio; the stack home is $LABELTRIAGE_STACK_HOME).",
)
project_option = click.option(
    "--project", default=None, help="Project title [default: the one RUN_DIR was pushed to, else argilla.dataset]."
)


@click.group(name="label-studio")
def label_studio() -> None:
    """Review in Label Studio instead of Argilla: a local server, push, pull, feedback rounds, ML backend.

    \b
    Examples:
      labeltriage label-studio up                    # installs Label Studio once (~1 GB), 127.0.0.1:8080
      labeltriage label-studio add-user alice        # a reviewer account; prints its password once
      labeltriage label-studio push runs/r1          # tasks with the LLM's prediction, score, reasoning
      labeltriage label-studio backend runs/r1       # ML backend: predictions for tasks added in the UI
      labeltriage label-studio pull runs/r1          # annotations -> runs/r1/responses.parquet
      labeltriage agreement runs/r1 && labeltriage publish runs/r1 --repo-id me/reviews
      labeltriage label-studio down

    An existing Label Studio: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (a personal access token).
    """


@label_studio.command()
@home_option
@click.option("--port", type=int, default=None, help=f"Port on 127.0.0.1 [default: the last one, else {DEFAULT_PORT}].")
def up(home: Path | None, port: int | None) -> None:
    """Install (once) and start a local Label Studio; makes the owner's account and token."""
    server = LabelStudioServer(home)
    url = server.up(port=port, log=lambda message: click.echo(message, err=True))
    data = server.secrets()
    click.echo(f"Label Studio is up at {url}; log in as {data['owner_email']} (password in {server.secrets_file})")


@label_studio.command()
@home_option
def down(home: Path | None) -> None:
    """Stop the local Label Studio (its data stays)."""
    if not LabelStudioServer(home).down(log=click.echo):
        click.echo("Label Studio was not running")


@label_studio.command()
@home_option
def status(home: Path | None) -> None:
    """Whether the local Label Studio runs, where, and its reviewers (JSON); exits 1 when it is not running."""
    found = LabelStudioServer(home).status()
    click.echo(dumps(found))
    if not found["running"]:
        raise SystemExit(1)


@label_studio.command("add-user")
@home_option
@click.argument("username")
def add_user(home: Path | None, username: str) -> None:
    """A reviewer account (USERNAME@labeltriage.local), joined by invitation; prints its password.

    The password and the reviewer's token are kept in the home's 0600 secrets file.
    """
    password, _token = LabelStudioServer(home).add_user(username)
    click.echo(f"user {username}@labeltriage.local ready; password: {password}")


@label_studio.command()
@run_dir_argument
@config_option
@project_option
@click.option("--include-auto", is_flag=True, help="Also push auto-accepted records (normally kept out).")
@click.option("--round", "round_number", type=int, default=None, help="Round stored on the tasks [default: the last].")
def push(run_dir: Path, **options: Any) -> None:
    """Push RUN_DIR's review queue to a Label Studio project (made from the task config)."""
    from labeltriage.label_studio import push_label_studio
    from labeltriage.render import render_label_studio_push

    render_label_studio_push(push_label_studio(run_dir, **options))


@label_studio.command()
@run_dir_argument
@config_option
@project_option
@click.option("--drop-missing", is_flag=True, help="Forget submitted answers the server no longer has.")
def pull(run_dir: Path, **options: Any) -> None:
    """Pull the annotations of RUN_DIR's Label Studio project into responses.parquet."""
    from labeltriage.label_studio import pull_label_studio
    from labeltriage.render import render_pull
    from labeltriage.rundir import RunDir

    run = RunDir(run_dir, options.get("config"))
    render_pull(pull_label_studio(run, **options), run, command="label-studio pull")


@label_studio.command()
@run_dir_argument
@config_option
@project_option
@click.option("--min-agreement", default=0.6, show_default=True, help="Below it a record goes first (adjudication).")
def loop(run_dir: Path, **options: Any) -> None:
    """One feedback round: pull, retrain the student, re-prioritise the project's tasks."""
    from labeltriage.label_studio import round_label_studio
    from labeltriage.render import render_round

    render_round(round_label_studio(run_dir, **options))


@label_studio.command()
@run_dir_argument
@config_option
@project_option
@click.option("--port", default=9090, show_default=True, help="Port of the backend on 127.0.0.1.")
@click.option("--every", default=25, show_default=True, help="Annotations per feedback round (0: no rounds).")
def backend(run_dir: Path, config: str | None, project: str | None, port: int, every: int) -> None:
    """Serve RUN_DIR's pre-labeller as a Label Studio ML backend and connect it to the project.

    Tasks of the run get their pre-label (no model call); new tasks are pre-labelled by the
    run's model through the run's cache; blind tasks get nothing. Every --every annotations a feedback round runs
    (pull, retrain, re-prioritise). Ctrl-C stops it.
    """
    from labeltriage.label_studio import run_backend

    run_backend(run_dir, config=config, project=project, port=port, every=every, say=click.echo)
