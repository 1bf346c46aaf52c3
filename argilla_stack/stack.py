"""Start, stop and inspect a local Argilla stack: redis-server, argilla-server 2.8.0 and its rq worker.

Everything lives under one home directory::

    <home>/stack.json         what is running (ports, engine, pids); removed by `down`
    <home>/secrets.json       0600: owner and reviewer passwords, API key, Redis password
    <home>/argilla/           ARGILLA_HOME_PATH: SQLite database, embedded search store
    <home>/redis/             Redis working directory
    <home>/logs/              server.log, worker.log, redis.log

Services bind to 127.0.0.1 only. No default credentials: the first `up` generates the owner's
password and API key, a Redis password and the key that signs reviewers' session tokens, and
keeps them in the 0600 secrets file (the same signing key at every start, so a restart logs
nobody out and loses no submit). The home and every folder in it are 0700 and every file 0600:
the database holds the owner's API key, the logs hold reviewers' activity; the services are
started with umask 077 and `up` fixes the modes of a home made before this rule.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import platformdirs

from labeltriage.errors import ReviewServerError
from labeltriage.jsonio import write_json

HOST = "127.0.0.1"
DEFAULT_PORT = 6900
WORKSPACE = "labeltriage"
OWNER = "owner"
ENGINES = ("embedded", "opensearch", "elasticsearch")


def masked_url(url: str | None) -> str | None:
    """A database URL fit to show: the password replaced by ``***``."""
    if not url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: show nothing of it rather than a secret
        return "(unreadable database URL)"


class StackError(ReviewServerError):
    """A stack operation failed; the message says what is wrong and what to do."""


# module a database URL's driver imports -> the pip package that provides it
_DRIVER_PACKAGES = {"psycopg2": "psycopg2-binary", "asyncpg": "asyncpg", "aiosqlite": "aiosqlite"}


def normalized_database_url(url: str) -> str:
    """The URL Argilla will use: ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``.

    Argilla runs on SQLite or PostgreSQL only, through these async drivers (its server rewrites
    ``sqlite://`` and ``postgresql[+psycopg2]://`` the same way, with a warning). Raises
    :class:`StackError` for any other database or driver.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StackError(
            "--database-url is not a database URL; pass e.g. postgresql+asyncpg://user:password@127.0.0.1:5432/argilla"
        ) from exc
    backend, _, driver = parsed.drivername.partition("+")
    accepted = {"sqlite": ("", "aiosqlite"), "postgresql": ("", "asyncpg", "psycopg2")}.get(backend, ())
    if driver not in accepted:
        raise StackError(
            f"Argilla runs on SQLite or PostgreSQL through aiosqlite/asyncpg, not {parsed.drivername!r}; "
            "pass e.g. postgresql+asyncpg://user:password@127.0.0.1:5432/argilla"
        )
    async_driver = "aiosqlite" if backend == "sqlite" else "asyncpg"
    return parsed.set(drivername=f"{backend}+{async_driver}").render_as_string(hide_password=False)


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)  # URL.set(password=None) keeps the password: rebuild without it
    return parsed.render_as_string(hide_password=True).replace(":***@", "@", 1)


def _sync_url(url: str) -> str:
    """The URL without its async driver: what Argilla's migrations (alembic) connect with."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername=make_url(url).get_backend_name()).render_as_string(hide_password=False)


def check_database_drivers(url: str) -> None:
    """Raise :class:`StackError` naming the package when a driver the URL needs does not import.

    Argilla needs two for PostgreSQL: asyncpg for the server and psycopg2 for its migrations."""
    from sqlalchemy.engine import make_url

    for candidate in (url, _sync_url(url)):
        dialect = make_url(candidate).get_dialect()
        try:
            dialect.import_dbapi()
        except ImportError as exc:
            # the module that failed (a missing package), else the driver the URL asks for (a
            # library the driver loads is missing, e.g. libpq: reinstalling the package fixes it)
            module = (exc.name or "").split(".")[0] or make_url(candidate).get_driver_name() or "psycopg2"
            package = _DRIVER_PACKAGES.get(module, module)
            raise StackError(
                f"the database URL {masked_url(url)} needs the Python package {package} ({exc}); "
                f"run `make setup`, or `pip install {package}` in this environment"
            ) from exc


def database_unreachable(url: str, timeout: float = 3.0) -> str | None:
    """Why the database cannot be reached (one line), or None when ``SELECT 1`` answers."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    sync = _sync_url(url)
    if sync.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        database = make_url(sync).database
        return None if database and Path(database).is_file() else f"no database file at {database}"
    connect_args = {"connect_timeout": max(1, round(timeout))}
    engine = create_engine(sync, poolclass=NullPool, hide_parameters=True, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception as exc:  # any driver's error: reported, not raised
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return reason[0] if reason else type(exc).__name__
    finally:
        engine.dispose()
    return None


def default_home() -> Path:
    configured = os.environ.get("LABELTRIAGE_STACK_HOME")
    return Path(configured) if configured else Path(platformdirs.user_data_dir("labeltriage")) / "stack"


@dataclass
class StackState:
    """What `up` started: written to ``stack.json``."""

    port: int
    redis_port: int
    search_engine: str
    search_url: str | None
    database_url: str
    launcher: str = "argilla_stack.launch"
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def process_alive(pid: int) -> bool:
    """True when process ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def read_secrets(path: Path, error: type[ReviewServerError]) -> dict[str, Any]:
    """A 0600 secrets file as a dict (empty when there is none yet). Raises ``error`` when others
    can read it (used by both local servers)."""
    if not path.exists():
        return {}
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise error(f"{path} is readable by others (mode {mode:o}); run: chmod 600 it")
    return dict(json.loads(path.read_text()))


class Stack:
    """One local stack, identified by its home directory."""

    def __init__(self, home: Path | str | None = None):
        self.home = Path(home) if home else default_home()
        self.state_file = self.home / "stack.json"
        self.secrets_file = self.home / "secrets.json"
        self.logs = self.home / "logs"

    # -- secrets ---------------------------------------------------------------------------------
    def secrets(self) -> dict:
        return read_secrets(self.secrets_file, StackError)

    def _save_secrets(self, data: dict) -> None:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json(self.secrets_file, data, mode=0o600)

    def _ensure_secrets(self) -> dict:
        data = self.secrets()
        changed = False
        for key, factory in (
            ("owner_password", lambda: secrets.token_urlsafe(18)),
            ("api_key", lambda: "lt." + secrets.token_urlsafe(32)),
            ("redis_password", lambda: secrets.token_urlsafe(24)),
            ("auth_secret_key", lambda: secrets.token_hex(32)),
        ):
            if key not in data:
                data[key], changed = factory(), True
        data.setdefault("owner_username", OWNER)
        data.setdefault("users", {})
        if changed:
            self._save_secrets(data)
        return data

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> StackState | None:
        if not self.state_file.exists():
            return None
        try:
            return StackState(**json.loads(self.state_file.read_text()))
        except (ValueError, TypeError):
            return None

    def running_processes(self) -> dict[str, int]:
        """Name -> pid of the stack's processes that are still alive (and are ours)."""
        state = self.state()
        if state is None:
            return {}
        return {
            name: pid
            for name, pid in state.pids.items()
            if process_alive(pid) and (state.launcher if name != "redis" else "redis-server") in _cmdline(pid)
        }

    def is_up(self) -> bool:
        state = self.state()
        return state is not None and self._api_ready(state) and set(self.running_processes()) == set(state.pids)

    def _api_ready(self, state: StackState) -> bool:
        try:
            response = httpx.get(f"{state.api_url}/api/v1/version", timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def environment(self, state: StackState, data: dict) -> dict[str, str]:
        """The environment of the server and the worker."""
        argilla_home = self.home / "argilla"
        env = {
            **os.environ,
            "ARGILLA_HOME_PATH": str(argilla_home),
            "ARGILLA_DATABASE_URL": data.get("database_url") or state.database_url,
            "ARGILLA_REDIS_URL": f"redis://:{data['redis_password']}@{HOST}:{state.redis_port}/0",
            "ARGILLA_SEARCH_ENGINE": state.search_engine,
            "ARGILLA_ENABLE_TELEMETRY": "0",
            # signs session tokens: kept across restarts (argilla draws a new one per start otherwise)
            "ARGILLA_AUTH_SECRET_KEY": data["auth_secret_key"],
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "LABELTRIAGE_SEARCH_STORE": str(argilla_home / "search.sqlite3"),
            "PYTHONUNBUFFERED": "1",
            # argilla-server's CLI (typer) prints local variables in tracebacks: a failed migration
            # wrote the database password into migrate.log
            "_TYPER_STANDARD_TRACEBACK": "1",
        }
        if state.search_url:
            env["ARGILLA_ELASTICSEARCH"] = state.search_url
        for name in ("ARGILLA_API_KEY", "ARGILLA_API_URL", "LABELTRIAGE_OWNER_PASSWORD", "LABELTRIAGE_OWNER_API_KEY"):
            env.pop(name, None)
        return env

    # -- commands --------------------------------------------------------------------------------
    def up(
        self,
        port: int = DEFAULT_PORT,
        search_engine: str = "embedded",
        search_url: str | None = None,
        database_url: str | None = None,
        timeout: float = 1800.0,
        log: Callable[..., Any] = print,
        launcher: str = "argilla_stack.launch",
    ) -> StackState:
        """Start the stack and return once the API answers. A second `up` is a no-op.

        ``launcher`` is the module run as ``python -m <launcher> server|worker``; a benchmark may
        pass its own module that registers another engine before delegating to
        :func:`argilla_stack.launch.main` (then ``search_engine`` is that engine's name).
        """
        if search_engine not in ENGINES and launcher == "argilla_stack.launch":
            raise StackError(f"unknown search engine {search_engine!r}; choose one of {', '.join(ENGINES)}")
        if search_engine in ("opensearch", "elasticsearch") and not search_url:
            raise StackError(f"--search-engine {search_engine} needs --search-url (for example http://127.0.0.1:9200)")
        current = self.state()
        if current is not None and self.is_up():
            log(f"stack already running at {current.api_url} (home {self.home})")
            remembered = self.secrets().get("database_url")
            if remembered and (reason := database_unreachable(remembered)):
                log(f"warning: its database {masked_url(remembered)} is unreachable: {reason}")
            return current
        self._stop_leftovers()
        if _port_in_use(port):
            raise StackError(f"port {port} on {HOST} is already in use by another program; pass --port with a free one")
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise StackError(
                "redis-server is not installed; run `make setup` (as root) or `apt-get install redis-server`"
            )
        data = self._ensure_secrets()
        for directory in (self.home / "argilla", self.home / "redis", self.logs):
            directory.mkdir(parents=True, exist_ok=True)
        self.secure_home()
        database = self._database(data, database_url)
        check_database_drivers(database)
        if database.startswith("postgresql") and (reason := database_unreachable(database)):
            raise StackError(
                f"Argilla's database is unreachable at {masked_url(database)}: {reason}. "
                "Fix: start PostgreSQL, or check the URL's host, port, user and password"
            )
        if data.get("database_url") != database:  # remembered once it was reached
            data["database_url"] = database
            self._save_secrets(data)
        state = StackState(
            port=port,
            redis_port=_free_port(),
            search_engine=search_engine,
            search_url=search_url,
            database_url=masked_url(database) or "",  # the real URL (password) lives in secrets.json only
            launcher=launcher,
        )
        env = self.environment(state, data)
        try:
            state.pids["redis"] = self._start_redis(redis_server, state, data)
            self._write_state(state)
            owner_env = {
                **env,
                "LABELTRIAGE_OWNER_USERNAME": data["owner_username"],
                "LABELTRIAGE_OWNER_PASSWORD": data["owner_password"],
                "LABELTRIAGE_OWNER_API_KEY": data["api_key"],
                "LABELTRIAGE_WORKSPACE": WORKSPACE,
            }
            # Argilla's `database migrate`, then the owner: one process, one import of argilla_server
            self._run([sys.executable, "-m", "argilla_stack.launch", "prepare"], owner_env, "prepare")
            server_log = self.logs / "server.log"
            server_log_from = server_log.stat().st_size if server_log.exists() else 0  # this start's lines only
            state.pids["server"] = self._spawn(
                [sys.executable, "-m", launcher, "server", "--host", HOST, "--port", str(port)],
                env,
                "server",
            )
            state.pids["worker"] = self._spawn(
                [sys.executable, "-m", launcher, "worker", "--num-workers", "1"], env, "worker"
            )
            self._write_state(state)
            self._wait_ready(state, timeout, log, server_log_from=server_log_from)
        except BaseException:
            self.down(log=lambda *_: None)
            raise
        self.secure_home()
        log(f"Argilla is up at {state.api_url} (search engine: {search_engine}; home {self.home})")
        log(f"Log in as {data['owner_username']}; password in {self.secrets_file} (or `labeltriage stack env`)")
        return state

    def secure_home(self) -> None:
        """Folders 0700 and files 0600 in the whole home (private to the user who runs the stack)."""
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.home, 0o700)
        for root, dirs, files in os.walk(self.home):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)
            for name in files:
                with contextlib.suppress(FileNotFoundError):  # a temporary file may vanish meanwhile
                    os.chmod(os.path.join(root, name), 0o600)

    def _database(self, data: dict, database_url: str | None) -> str:
        """The stack home's database: the one its first `up` used (kept in the 0600 secrets file).

        A plain `up` after `up --database-url postgresql...` opened an empty SQLite database
        (datasets and reviewers gone); a different URL is refused rather than switched silently."""
        remembered = data.get("database_url")
        database_url = normalized_database_url(database_url) if database_url else None
        if remembered and database_url and _without_password(database_url) == _without_password(remembered):
            return database_url  # a changed password (rotated): remembered once the database answers
        if remembered and database_url and database_url != remembered:
            raise StackError(
                f"the stack home {self.home} uses the database {masked_url(remembered)}, not "
                f"{masked_url(database_url)}: switching would leave its datasets and reviewers behind. Fix: leave "
                "out --database-url (or pass the same one), or use another home (LABELTRIAGE_STACK_HOME)"
            )
        default = f"sqlite+aiosqlite:///{self.home / 'argilla' / 'argilla.db'}?check_same_thread=False"
        return remembered or database_url or default

    def _write_state(self, state: StackState) -> None:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        # 0600 from the start: a PostgreSQL database_url carries its password
        write_json(self.state_file, asdict(state), mode=0o600)

    def _start_redis(self, redis_server: str, state: StackState, data: dict) -> int:
        config = self.home / "redis" / "redis.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(
                f"bind {HOST}\nport {state.redis_port}\nprotected-mode yes\nrequirepass {data['redis_password']}\n"
                f'dir {self.home / "redis"}\nsave ""\nappendonly no\ndaemonize no\n'
            )
        pid = self._spawn([redis_server, str(config)], dict(os.environ), "redis")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not process_alive(pid):
                raise StackError(f"redis-server exited at start; see {self.logs / 'redis.log'}")
            if _port_in_use(state.redis_port):
                return pid
            time.sleep(0.1)
        raise StackError(f"redis-server did not open port {state.redis_port}; see {self.logs / 'redis.log'}")

    def _spawn(self, command: list[str], env: dict[str, str], name: str) -> int:
        log_file = self._open_log(name)
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            umask=0o077,  # the database, store and logs the services create are private
        )
        log_file.close()
        return process.pid

    def _open_log(self, name: str) -> Any:
        fd = os.open(self.logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "ab")

    def _run(self, command: list[str], env: dict[str, str], name: str) -> None:
        with self._open_log(name) as log_file:
            result = subprocess.run(
                command, env=env, stdout=log_file, stderr=subprocess.STDOUT, check=False, umask=0o077
            )
        if result.returncode != 0:
            last = [line for line in self._log_tail(name, 40).splitlines() if line.strip()]
            cause = f": {last[-1].strip()[:300]}" if last else ""
            raise StackError(f"`{name}` failed (exit {result.returncode}){cause}; see {self.logs / (name + '.log')}")

    def _wait_ready(
        self, state: StackState, timeout: float, log: Callable[..., Any] = print, server_log_from: int = 0
    ) -> None:
        deadline = time.monotonic() + timeout
        told = False
        while time.monotonic() < deadline:
            if not told and b"labeltriage: reindexing" in self._log_since("server", server_log_from):
                log("the search store is being rebuilt from Argilla's database; the API answers when it is done")
                told = True
            for name in ("server", "worker", "redis"):
                if not process_alive(state.pids[name]):
                    tail = self._log_tail(name)
                    raise StackError(f"the {name} process exited during start-up; last log lines:\n{tail}")
            if self._api_ready(state):
                return
            time.sleep(0.5)
        raise StackError(f"Argilla did not answer on {state.api_url} within {timeout:.0f} s; see {self.logs}")

    def _log_since(self, name: str, offset: int) -> bytes:
        try:
            with open(self.logs / f"{name}.log", "rb") as handle:
                handle.seek(offset)
                return handle.read()
        except OSError:
            return b""

    def _log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _stop_leftovers(self) -> None:
        """Stop what a crashed stack left running and forget stale pid files."""
        if self.state() is not None:
            self.down(log=lambda *_: None)

    def down(self, log: Callable[..., Any] = print, timeout: float = 20.0) -> list[str]:
        """Stop exactly the processes `up` started. Nothing running is a no-op."""
        state = self.state()
        if state is None:
            log("stack is not running (nothing to stop)")
            return []
        alive = self.running_processes()
        # Worker and server first, Redis last: the server flushes to Redis on shutdown.
        order: list[str] = [name for name in ("worker", "server", "redis") if name in alive]
        for name in order:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(alive[name], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(process_alive(alive[name]) for name in order):
            time.sleep(0.2)
        for name in order:
            if process_alive(alive[name]):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(alive[name], signal.SIGKILL)
        self.state_file.unlink(missing_ok=True)
        log("stopped: " + (", ".join(order) if order else "nothing was running (removed stale state)"))
        return order

    def status(self) -> dict:
        state = self.state()
        if state is None:
            remembered = self.secrets().get("database_url") if self.secrets_file.exists() else None
            return {"running": False, "home": str(self.home), "database_url": masked_url(remembered)}
        alive = self.running_processes()
        database = self.secrets().get("database_url")
        unreachable = database_unreachable(database) if database else "no database recorded in the stack home"
        return {
            "running": self._api_ready(state) and set(alive) == set(state.pids) and unreachable is None,
            "home": str(self.home),
            "api_url": state.api_url,
            "search_engine": state.search_engine,
            "search_url": state.search_url,
            "database_url": masked_url(database or state.database_url),
            "database": "reachable" if unreachable is None else f"unreachable: {unreachable}",
            "processes": {
                name: {
                    "pid": pid,
                    "alive": name in alive,
                    "port": {"server": state.port, "redis": state.redis_port}.get(name),
                }
                for name, pid in state.pids.items()
            },
        }

    def credentials(self) -> tuple[str, str]:
        """(API URL, owner API key) of the running stack."""
        state = self.state()
        if state is None:
            raise StackError("the stack is not running; start it with `labeltriage stack up`")
        data = self.secrets()
        return state.api_url, data["api_key"]

    def add_user(self, username: str, role: str = "annotator", password: str | None = None) -> str:
        """Create a user in the stack's workspace; returns its password (kept in the secrets file)."""
        import argilla as rg

        api_url, api_key = self.credentials()
        try:
            return self._add_user(rg.Argilla(api_url=api_url, api_key=api_key), username, role, password)
        except StackError:
            raise
        except Exception as exc:  # the SDK's errors (server down, database unreachable): one line
            detail = " ".join(str(exc).split())[:300]
            raise StackError(f"could not add user {username!r} at {api_url}: {detail}") from exc

    def _add_user(self, client: Any, username: str, role: str, password: str | None) -> str:
        import argilla as rg

        data = self.secrets()
        password = password or data.get("users", {}).get(username) or secrets.token_urlsafe(12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the SDK warns when the user does not exist yet
            user = client.users(username)
        if user is None:
            user = rg.User(username=username, password=password, role=role, client=client).create()
        workspace = client.workspaces(WORKSPACE)
        if username not in {member.username for member in workspace.users}:
            workspace.add_user(user)
        data.setdefault("users", {})[username] = password
        self._save_secrets(data)
        return password
