"""Process entry points of the stack: ``python -m argilla_stack.launch server|worker|prepare|sync``.

Each imports `argilla_stack.engine` first, which registers the embedded engine with Argilla's
registry, then runs the stock argilla-server code unchanged. Configuration comes from the
environment (``ARGILLA_*``, ``LABELTRIAGE_*``) that `argilla_stack.stack` prepares; secrets never
appear on a command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import re
import sys
from typing import Any

import argilla_stack.engine  # noqa: F401  (registers the "embedded" engine)
from argilla_stack.engine import ENGINE_NAME, get_store, store_path
from argilla_stack.store import StoreCorruptError


def _remove_store_files() -> None:
    path = store_path()
    stamp = path.with_name(f"{path.stem}-generation.json")
    for candidate in [path.with_name(path.name + suffix) for suffix in ("", "-wal", "-shm")] + [stamp]:
        if candidate.exists():
            candidate.unlink()


async def sync_store(verbose: bool = True) -> dict[str, int]:
    """Bring the embedded store in line with Argilla's database; returns records reindexed per dataset.

    A missing or corrupt store is rebuilt whole. Otherwise each dataset whose record or response
    count differs between the database and the store (a crash between the database commit and the
    index write, a store restored from an old copy) is reindexed, and indexes of deleted datasets
    are dropped.
    """
    from argilla_server.cli.search_engine.reindex import Reindexer
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import Dataset, Record, Response
    from argilla_server.search_engine import SearchEngine
    from sqlalchemy import func, select

    store = get_store()
    try:
        store.check()
    except StoreCorruptError as exc:
        print(f"labeltriage: {exc}; rebuilding it from Argilla's database", file=sys.stderr)
        store.close()
        _remove_store_files()
    reindexed: dict[str, int] = {}
    async with AsyncSessionLocal() as db:
        db_records = dict((await db.execute(select(Record.dataset_id, func.count()).group_by(Record.dataset_id))).all())
        db_responses = dict(
            (await db.execute(select(Record.dataset_id, func.count()).join(Response).group_by(Record.dataset_id))).all()
        )
        dataset_ids = [row[0] for row in (await db.execute(select(Dataset.id))).all()]
        store_records = store.dataset_counts()
        store_responses = dict(
            store.query(
                "SELECT r.dataset_id, count(*) FROM responses rs JOIN records r ON r.rid = rs.rid GROUP BY r.dataset_id"
            )
        )
        async with SearchEngine.get_by_name(ENGINE_NAME) as engine:
            for dataset_id in dataset_ids:
                key = str(dataset_id)
                in_db = (db_records.get(dataset_id, 0), db_responses.get(dataset_id, 0))
                in_store = (store_records.get(key), store_responses.get(key, 0))
                if in_store == in_db:
                    continue
                if verbose:
                    print(
                        f"labeltriage: reindexing dataset {dataset_id} ({in_db[0]} records in the database, "
                        f"{in_store[0] or 0} in the search store)",
                        file=sys.stderr,
                        flush=True,
                    )
                dataset = await Reindexer.reindex_dataset(db, engine, dataset_id)
                count = 0
                async for batch in Reindexer.reindex_dataset_records(db, engine, dataset):
                    count += len(batch)
                reindexed[key] = count
                if verbose:
                    print(f"labeltriage: reindexed dataset {dataset.name} ({count} records)", file=sys.stderr)
            known = {str(dataset_id) for dataset_id in dataset_ids}
            for key in store_records:
                if key not in known:
                    store.delete_index(key)
    # asyncpg connections belong to the event loop that opened them: return them to the pool
    # owner now, or uvicorn's loop inherits connections of this finished loop ("attached to a
    # different loop"; aiosqlite does not bind, so only PostgreSQL shows it)
    from argilla_server.database import async_engine

    await async_engine.dispose()
    return reindexed


def _migrate_database() -> None:
    """Argilla's ``database migrate`` (alembic upgrade to head), in this process: one import of
    argilla_server (about 5 s on 2 cores) serves both start-up steps."""
    from argilla_server.cli.database.migrate import migrate_db

    migrate_db(revision="head")


def _create_owner() -> None:
    username = os.environ["LABELTRIAGE_OWNER_USERNAME"]
    if not asyncio.run(_create_owner_in_one_loop(username)):
        print(
            f"the database already has an owner {username!r} made by another stack home (its API key differs): "
            "use that home (its secrets.json), or a new database for this home"
        )
        raise SystemExit(2)
    print(f"owner user {username!r} ready")


async def _create_owner_in_one_loop(username: str) -> bool:
    """Create the owner (Argilla skips an existing user) and say whether its API key is ours.

    One event loop for both steps, and the engine disposed in it: asyncpg connections belong to
    the loop that opened them."""
    from argilla_server.cli.database.users.create import _create
    from argilla_server.database import AsyncSessionLocal, async_engine
    from argilla_server.models import User, UserRole
    from sqlalchemy import select

    api_key = os.environ["LABELTRIAGE_OWNER_API_KEY"]
    try:
        # Argilla's command prints the new user, API key included: keep that out of the logs.
        with contextlib.redirect_stdout(io.StringIO()):
            await _create(
                first_name=username,
                username=username,
                role=UserRole.owner,
                password=os.environ["LABELTRIAGE_OWNER_PASSWORD"],
                api_key=api_key,
                workspace=[os.environ.get("LABELTRIAGE_WORKSPACE", "labeltriage")],
            )
        async with AsyncSessionLocal() as db:
            stored = (await db.execute(select(User.api_key).where(User.username == username))).scalar_one_or_none()
    finally:
        await async_engine.dispose()
    return bool(stored == api_key)


def load_vector_settings_with_vectors() -> None:
    """Make ``Vector.vector_settings`` load eagerly (``selectin``) instead of lazily.

    argilla-server 2.8.0's ``GET /api/v1/records/{id}`` loads a record's vectors but not their
    settings, and its response schema then reads ``vector.vector_settings.name``: a lazy load
    outside the async greenlet (``sqlalchemy.exc.MissingGreenlet``), so the endpoint answers 500
    for every record with a vector, whatever the search engine. Loading the settings with the
    vectors (one extra ``SELECT ... IN`` per batch, mostly identity-map hits) fixes every such
    path without editing the installed server. Must run before SQLAlchemy configures the mappers.
    """
    from argilla_server.models import Vector

    mapper = Vector.__mapper__
    if mapper.configured:
        raise RuntimeError("load_vector_settings_with_vectors() must run before the mappers are configured")
    prop = mapper._props["vector_settings"]
    prop.lazy = "selectin"
    prop.strategy_key = (("lazy", "selectin"),)


# How long a statement waits for SQLite's write lock before "database is locked" (argilla-server's
# default is 5 s). A submit's transaction holds the lock while the search index is updated; 20
# simultaneous submits, or a long write by the worker, kept it past 5 s and reviewers got 500
# (9 of 60 on a 2-core AMD EPYC): their answer lost. PostgreSQL is not concerned.
SQLITE_LOCK_WAIT_S = 60


def configure_database_engines() -> None:
    """Replace argilla-server's two SQLAlchemy engines with ones that pre-ping and hide parameters.

    argilla-server 2.8.0 builds its engines at import without ``pool_pre_ping``: after a
    PostgreSQL restart every pooled connection is dead and the next request fails with 500. And
    without ``hide_parameters`` a failed statement's message carries its parameters, the
    owner's API key among them (the user lookup of every authenticated request), into the 500
    body and server.log. The new engines keep the server's own arguments (pool size) but wait
    up to :data:`SQLITE_LOCK_WAIT_S` for SQLite's write lock; the session factories every server
    module imported are rebound to them (``sessionmaker.configure``). Must run before the first connection.
    """
    from argilla_server import database
    from argilla_server.settings import settings
    from sqlalchemy import create_engine
    from sqlalchemy.ext.asyncio import create_async_engine

    args = {**settings.database_engine_args, "pool_pre_ping": True, "hide_parameters": True}
    if settings.database_is_sqlite:  # wait for the write lock rather than answer 500 (SQLITE_LOCK_WAIT_S)
        args["connect_args"] = {**args.get("connect_args", {}), "timeout": SQLITE_LOCK_WAIT_S}
    database.async_engine = create_async_engine(settings.database_url, **args)
    database.sync_engine = create_engine(database.database_url_sync(), **args)
    database.AsyncSessionLocal.configure(bind=database.async_engine)
    database.SyncSessionLocal.configure(bind=database.sync_engine)


async def database_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why Argilla's database does not answer ``SELECT 1`` (one line), or None when it does."""
    from argilla_server.database import async_engine
    from sqlalchemy import text

    try:
        async with asyncio.timeout(timeout):
            async with async_engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as exc:  # every driver's connection error: reported, not raised
        lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    return None


def answer_database_outages_with_503(app: Any) -> None:
    """Answer 503 "Argilla's database is unreachable" when a request fails because it is.

    Without this a stopped PostgreSQL gives 500 with the driver's text, which the SDK reports as
    "cannot reach Argilla" (the wrong diagnosis). On a database or connection error the handler
    pings the database; only when the ping fails too does it answer 503 with that reason, else
    the server's own handler answers as before.
    """
    from argilla_server.errors.error_handler import APIErrorHandler
    from fastapi.responses import JSONResponse
    from sqlalchemy.exc import DBAPIError

    async def database_error(request: Any, exc: Exception) -> Any:
        reason = await database_unreachable_reason()
        if reason is None:
            return await APIErrorHandler.common_exception_handler(request, exc)
        return JSONResponse(
            status_code=503,
            content={"detail": f"Argilla's database is unreachable: {reason}"},
            headers={"Retry-After": "5"},
        )

    kinds: list[type[BaseException]] = [DBAPIError, OSError]
    with contextlib.suppress(ImportError):  # asyncpg's own errors escape SQLAlchemy at connect time
        import asyncpg

        kinds += [asyncpg.PostgresError, asyncpg.InterfaceError]
    for inner in _mounted_apps(app):
        for kind in kinds:
            inner.add_exception_handler(kind, database_error)


def _mounted_apps(app: Any) -> list[Any]:
    """The app and the FastAPI apps mounted in it, two levels deep (argilla mounts /api, then /api/v1)."""
    from starlette.routing import Mount

    found = []
    for candidate in [app] + [route.app for route in getattr(app, "routes", []) if isinstance(route, Mount)]:
        for inner in [candidate] + [r.app for r in getattr(candidate, "routes", []) if isinstance(r, Mount)]:
            if hasattr(inner, "add_exception_handler"):
                found.append(inner)
    return found


_UNIQUE_VIOLATION = re.compile(r"UNIQUE constraint failed: ([\w.]+)|violates unique constraint \"(\w+)\"")


def answer_unique_violations_with_conflict(app: Any) -> None:
    """Answer a unique-constraint violation on the API with 409 Conflict, not 500.

    argilla-server 2.8.0 checks "does this user's response exist?" and then inserts it; two
    concurrent submits of the same record by the same user both pass the check and the second
    insert hits the unique constraint (``response_record_id_user_id_uq``): an ``IntegrityError``
    that the server answers with 500, while the data stays right. The row exists, which is what
    409 says (and what the server answers when the requests are not concurrent). Other integrity
    errors keep the server's own handling. SQL parameters never reach the response.
    """
    from argilla_server.errors.error_handler import APIErrorHandler
    from fastapi.responses import JSONResponse
    from sqlalchemy.exc import IntegrityError

    async def integrity_error(request: Any, exc: Exception) -> Any:
        match = _UNIQUE_VIOLATION.search(str(getattr(exc, "orig", exc)))
        if match is None:
            return await APIErrorHandler.common_exception_handler(request, exc)
        what = match.group(1) or match.group(2)
        return JSONResponse(
            status_code=409,
            content={"detail": f"already exists (unique {what}): a concurrent request created it first"},
        )

    for inner in _mounted_apps(app):
        inner.add_exception_handler(IntegrityError, integrity_error)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m argilla_stack.launch")
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=6900)
    worker = sub.add_parser("worker")
    worker.add_argument("--num-workers", type=int, default=1)
    sub.add_parser("prepare", help="migrate the database, then create the owner")
    sub.add_parser("sync")
    args = parser.parse_args(argv)

    embedded = os.environ.get("ARGILLA_SEARCH_ENGINE") == ENGINE_NAME
    configure_database_engines()
    if args.command in ("server", "worker"):
        load_vector_settings_with_vectors()
    if args.command == "server":
        import uvicorn

        if embedded:
            asyncio.run(sync_store())
        from argilla_server import app

        answer_unique_violations_with_conflict(app)
        answer_database_outages_with_503(app)
        uvicorn.run(app, host=args.host, port=args.port, access_log=False)
    elif args.command == "worker":
        from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION
        from rq.worker_pool import WorkerPool

        WorkerPool(
            connection=REDIS_CONNECTION, queues=[DEFAULT_QUEUE.name, HIGH_QUEUE.name], num_workers=args.num_workers
        ).start()
    elif args.command == "prepare":
        _migrate_database()
        _create_owner()
    elif args.command == "sync":
        print(asyncio.run(sync_store()))


if __name__ == "__main__":
    main()
