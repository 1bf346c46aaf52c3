"""`labeltriage stack ...`: wiring for `argilla_stack.stack`."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from argilla_stack.stack import DEFAULT_PORT, ENGINES, Stack
from labeltriage.jsonio import dumps

home_option = click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=None,
    help="Stack home directory (default: $LABELTRIAGE_STACK_HOME or the user data dir).",
)


@click.group()
def stack() -> None:
    """Start, stop and inspect the local Argilla stack (server, worker, Redis, search engine).

    \b
    Examples:
      labeltriage stack up                      # embedded search engine, SQLite, port 6900
      labeltriage stack up --port 6901 --database-url postgresql+asyncpg://u:p@127.0.0.1/argilla
      labeltriage stack up --search-engine opensearch --search-url http://127.0.0.1:9200
      eval "$(labeltriage stack env)"           # ARGILLA_API_URL / ARGILLA_API_KEY for the SDK
      labeltriage stack add-user alice --role annotator
      labeltriage stack status
      labeltriage stack down
    """


@stack.command()
@home_option
@click.option("--port", default=DEFAULT_PORT, show_default=True, help="Port of the Argilla API and UI on 127.0.0.1.")
@click.option("--search-engine", type=click.Choice(ENGINES), default="embedded", show_default=True)
@click.option("--search-url", default=None, help="Elasticsearch/OpenSearch URL (with those engines).")
@click.option("--database-url", default=None, help="SQLAlchemy URL; default SQLite in the stack home.")
def up(home: Path | None, port: int, search_engine: str, search_url: str | None, database_url: str | None) -> None:
    """Start the stack; returns when the API answers."""
    Stack(home).up(port=port, search_engine=search_engine, search_url=search_url, database_url=database_url)


@stack.command()
@home_option
def down(home: Path | None) -> None:
    """Stop exactly the processes `up` started."""
    Stack(home).down()


@stack.command()
@home_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(home: Path | None, as_json: bool) -> None:
    """Show each process, its port, the search engine and the database (password masked).

    Exits 1 when the stack runs but is not healthy (a process dead, the API or the database not
    answering), else 0."""
    info = Stack(home).status()
    if as_json:
        click.echo(dumps(info))
        return
    if "api_url" not in info:
        remembered = f"; its database: {info['database_url']}" if info.get("database_url") else ""
        click.echo(f"stack is not running (home {info['home']}{remembered})")
        return
    click.echo(f"{'running' if info['running'] else 'NOT HEALTHY'}: {info['api_url']}  engine={info['search_engine']}")
    for name, proc in info["processes"].items():
        port = f" port {proc['port']}" if proc["port"] else ""
        click.echo(f"  {name:<7} pid {proc['pid']:<8}{'alive' if proc['alive'] else 'DEAD'}{port}")
    click.echo(f"  database {info['database_url']}: {info['database']}")
    if not info["running"]:
        raise SystemExit(1)  # scripts can test it: NOT HEALTHY exits 1


@stack.command()
@home_option
def env(home: Path | None) -> None:
    """Print `export` lines for the Argilla SDK (use with eval)."""
    api_url, api_key = Stack(home).credentials()
    click.echo(f"export ARGILLA_API_URL={shlex.quote(api_url)}")
    click.echo(f"export ARGILLA_API_KEY={shlex.quote(api_key)}")


@stack.command("add-user")
@home_option
@click.argument("username")
@click.option("--role", type=click.Choice(["annotator", "admin", "owner"]), default="annotator", show_default=True)
def add_user(home: Path | None, username: str, role: str) -> None:
    """Create a reviewer account in the stack's workspace and print its password once."""
    password = Stack(home).add_user(username, role=role)
    click.echo(f"user {username} ({role}) ready; password: {password}")
