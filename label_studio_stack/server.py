"""Install, start, stop and inspect a local Label Studio (the second review tool; Argilla is the default).

Everything but the program lives under one home directory, ``<stack home>/label-studio``::

    state.json      what is running (port, pid); removed by `down`
    secrets.json    0600: the owner's and reviewers' e-mail, password and personal access token
    data/           LABEL_STUDIO_BASE_DATA_DIR: SQLite database, Django secret key, uploads
    logs/           label-studio.log
    settings/       Label Studio's Django settings plus a 60 s SQLite lock wait (rewritten by `up`)

The program is Label Studio |version| from PyPI in a virtualenv of its own (about 1 GB, shared by
every home: ``LABELTRIAGE_LABEL_STUDIO_VENV`` or the user cache directory), since its pins clash
with Argilla's. It binds to 127.0.0.1 only; no default account: `up` generates the owner's password,
creates the owner through Label Studio's own start options (read from the environment, never the
command line, so it is not in ``ps``), and keeps the owner's personal access token (Label Studio
1.23 turns legacy tokens off; a personal access token is exchanged for a 5-minute access token)
in the 0600 secrets file. Sign-up without an invitation is off; reviewers join by the
organisation's invitation link (:meth:`LabelStudioServer.add_user`).

Facts used here were measured on Label Studio 1.23.2: the first start migrates the database
(30-60 s), later starts take a few seconds; Label Studio refuses ML backends and webhooks on
127.0.0.1 unless ``ML_BLOCK_LOCAL_IP`` and ``SSRF_PROTECTION_ENABLED`` are off (the backend
and Label Studio both listen on 127.0.0.1 only); a user may hold one personal access token.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import platformdirs

from argilla_stack.stack import process_alive, read_secrets
from labeltriage.errors import ReviewServerError
from labeltriage.jsonio import write_json

LABEL_STUDIO_VERSION = "1.23.2"
HOST = "127.0.0.1"
DEFAULT_PORT = 8080
OWNER_EMAIL = "owner@labeltriage.local"
USER_DOMAIN = "labeltriage.local"
START_TIMEOUT_S = 300.0  # first start migrates the database (33-55 s measured; slower while a model runs)


class LabelStudioError(ReviewServerError):
    """A Label Studio server operation failed; the message says what is wrong and what to do."""


def venv_dir() -> Path:
    """Where Label Studio's own virtualenv lives (``LABELTRIAGE_LABEL_STUDIO_VENV`` overrides)."""
    configured = os.environ.get("LABELTRIAGE_LABEL_STUDIO_VENV")
    if configured:
        return Path(configured)
    return Path(platformdirs.user_cache_dir("labeltriage")) / f"label-studio-{LABEL_STUDIO_VERSION}"


def default_home() -> Path:
    """``<stack home>/label-studio`` (the stack home: ``LABELTRIAGE_STACK_HOME`` or the user data dir)."""
    from argilla_stack.stack import default_home as stack_home

    return stack_home() / "label-studio"


def install(log: Callable[..., Any] = print) -> Path:
    """Install Label Studio into :func:`venv_dir` once; returns its ``label-studio`` program.

    Idempotent (a marker file names the installed version). Raises LabelStudioError naming the
    pip log when the install fails.
    """
    venv = venv_dir()
    program = venv / "bin" / "label-studio"
    marker = venv / ".labeltriage-installed"
    if program.exists() and marker.is_file() and marker.read_text().strip() == LABEL_STUDIO_VERSION:
        return program
    venv.parent.mkdir(parents=True, exist_ok=True)
    log(f"installing label-studio=={LABEL_STUDIO_VERSION} into {venv} (about 1 GB, 1-3 minutes, once)")
    pip_log = venv.parent / f"label-studio-{LABEL_STUDIO_VERSION}-install.log"
    with open(pip_log, "wb") as out:
        steps = (
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
             f"label-studio=={LABEL_STUDIO_VERSION}"],
        )  # fmt: skip
        for command in steps:
            if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False).returncode != 0:
                raise LabelStudioError(f"installing Label Studio failed: see {pip_log}; fix it and run again")
    marker.write_text(LABEL_STUDIO_VERSION)
    return program


def _csrf_session(base_url: str, path: str, form: dict[str, str]) -> tuple[httpx.Client, httpx.Response]:
    """GET a Label Studio form page (CSRF cookie), POST the form: 302 means it was accepted."""
    client = httpx.Client(base_url=base_url, timeout=60)
    client.get(path)
    reply = client.post(
        path, data={**form, "csrfmiddlewaretoken": client.cookies.get("csrftoken") or ""},
        headers={"Referer": base_url + path},
    )  # fmt: skip
    return client, reply


SQLITE_LOCK_WAIT_S = 60  # Django's SQLite default is 5 s: a longer write made an annotation fail with 500
SETTINGS_MODULE = "labeltriage_label_studio_settings"
# Label Studio's own settings, plus the SQLite lock wait; written into the server's home at each start
_SETTINGS_SOURCE = f"""# Written by labeltriage (label_studio_stack.server) at each start; edits are overwritten.
import os

# Label Studio's settings module reads django.conf.settings while it is imported: point Django at it
# (it is complete enough by then), not at this module, which is not yet
os.environ["DJANGO_SETTINGS_MODULE"] = "label_studio.core.settings.label_studio"
from label_studio.core.settings.label_studio import *  # noqa: E402,F401,F403
from label_studio.core.settings.label_studio import DATABASES  # noqa: E402

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # the same dict Django's settings hold
    DATABASES["default"].setdefault("OPTIONS", {{}})["timeout"] = {SQLITE_LOCK_WAIT_S}
"""


class LabelStudioServer:
    """One local Label Studio, identified by its home directory."""

    def __init__(self, home: Path | str | None = None):
        self.home = Path(home) if home else default_home()
        self.state_file = self.home / "state.json"
        self.secrets_file = self.home / "secrets.json"
        self.data_dir = self.home / "data"
        self.log_file = self.home / "logs" / "label-studio.log"

    # -- secrets -----------------------------------------------------------------------------------
    def secrets(self) -> dict[str, Any]:
        """The 0600 secrets file (empty before the first `up`). Raises LabelStudioError when others can read it."""
        return read_secrets(self.secrets_file, LabelStudioError)

    def _save_secrets(self, data: dict[str, Any]) -> None:
        write_json(self.secrets_file, data, mode=0o600)

    def _ensure_home(self) -> dict[str, Any]:
        for folder in (self.home, self.data_dir, self.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            folder.chmod(0o700)
        data = self.secrets()
        if "owner_password" not in data:
            data.update(owner_email=OWNER_EMAIL, owner_password=secrets.token_urlsafe(18), users={})
            self._save_secrets(data)
        return data

    # -- state -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any] | None:
        """What `up` started (``port``, ``pid``, ``url``), None when nothing was started."""
        if not self.state_file.exists():
            return None
        return dict(json.loads(self.state_file.read_text()))

    @property
    def url(self) -> str:
        """The server's address. Raises LabelStudioError when it is not running."""
        state = self.state()
        if state is None or not process_alive(int(state["pid"])):
            raise LabelStudioError(f"Label Studio is not running (home {self.home}): run `labeltriage label-studio up`")
        return str(state["url"])

    def is_up(self) -> bool:
        """True when the server answers /health."""
        state = self.state()
        return state is not None and process_alive(int(state["pid"])) and self._healthy(str(state["url"]))

    @staticmethod
    def _healthy(url: str) -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def environment(self, data: dict[str, Any]) -> dict[str, str]:
        """The server's environment: data folder, owner account, no sign-up, local backends allowed."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("LABEL_STUDIO_", "DJANGO_"))}
        env.update(
            LABEL_STUDIO_BASE_DATA_DIR=str(self.data_dir),
            LABEL_STUDIO_USERNAME=str(data["owner_email"]),
            LABEL_STUDIO_PASSWORD=str(data["owner_password"]),
            LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
            # both servers listen on 127.0.0.1 only; Label Studio refuses a backend there otherwise
            ML_BLOCK_LOCAL_IP="false",
            SSRF_PROTECTION_ENABLED="false",
            LATEST_VERSION_CHECK="false",  # no call to pypi.org at each start
            COLLECT_ANALYTICS="false",
            # Label Studio's settings with a longer SQLite lock wait (_SETTINGS_SOURCE, written by `up`)
            DJANGO_SETTINGS_MODULE=SETTINGS_MODULE,
            PYTHONPATH=str(self.home / "settings"),
        )
        return env

    # -- up / down ---------------------------------------------------------------------------------
    def up(self, port: int | None = None, log: Callable[..., Any] = print) -> str:
        """Install if needed, start on 127.0.0.1:``port`` and make the owner's token.

        ``port``: None for the port of the last start (8080 the first time). Returns the URL.
        Idempotent: a running server is left as it is (another ``port`` is refused). Raises
        LabelStudioError (port taken, server exited: the message quotes its log; the secrets file
        lost while the database remains).
        """
        database = self.data_dir / "label_studio.sqlite3"
        if not self.secrets_file.exists() and database.exists():
            raise LabelStudioError(
                f"{database} was made with a secrets file that is gone ({self.secrets_file}): restore it, or "
                f"`labeltriage label-studio down` and move {self.data_dir} away to start afresh (its projects and "
                "annotations stay in that folder)"
            )
        if self.is_up():
            url = self.url
            if port and url != f"http://{HOST}:{port}":
                raise LabelStudioError(
                    f"Label Studio already runs at {url}: `labeltriage label-studio down` first to move it"
                )
            return url
        program = install(log)
        data = self._ensure_home()
        settings = self.home / "settings"
        settings.mkdir(mode=0o700, exist_ok=True)
        (settings / f"{SETTINGS_MODULE}.py").write_text(_SETTINGS_SOURCE)
        port = port or int(data.get("port") or DEFAULT_PORT)  # the port it ran on last
        url = f"http://{HOST}:{port}"
        if self._healthy(url):
            raise LabelStudioError(f"port {port} is taken by another server: pass --port")
        log(f"starting Label Studio on {url} (home {self.home})")
        command = [str(program), "start", "--no-browser", "--internal-host", HOST, "--port", str(port)]
        old_umask = os.umask(0o077)  # database, secret key and log are the owner's only
        try:
            with open(self.log_file, "ab") as out:
                process = subprocess.Popen(
                    command, env=self.environment(data), stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
        finally:
            os.umask(old_umask)
        write_json(self.state_file, {"port": port, "pid": process.pid, "url": url}, mode=0o600)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._healthy(url):
            if process.poll() is not None:
                self.state_file.unlink(missing_ok=True)
                raise LabelStudioError(f"Label Studio exited ({process.returncode}); its log:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.down(log=lambda *_: None)
                raise LabelStudioError(
                    f"Label Studio did not answer within {START_TIMEOUT_S:.0f} s; see {self.log_file}"
                )
            time.sleep(0.5)
        try:
            self._ensure_token(url, "owner", str(data["owner_email"]), str(data["owner_password"]))
        except LabelStudioError:
            self.down(log=lambda *_: None)  # a server nobody can log in to is no use running
            raise
        if data.get("port") != port:
            self._save_secrets({**self.secrets(), "port": port})
        return url

    def _log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def down(self, log: Callable[..., Any] = print, timeout: float = 20.0) -> bool:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` s). True when one was stopped."""
        state = self.state()
        if state is None:
            return False
        pid = int(state["pid"])
        stopped = False
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if process_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            stopped = True
            log(f"stopped Label Studio (pid {pid})")
        self.state_file.unlink(missing_ok=True)
        return stopped

    def status(self) -> dict[str, Any]:
        """``running``, ``url``, ``home``, ``program`` (installed or not) and the reviewers' names."""
        state = self.state() or {}
        data = self.secrets()
        return {
            "running": self.is_up(),
            "url": state.get("url"),
            "home": str(self.home),
            "program": str(venv_dir() / "bin" / "label-studio"),
            "installed": (venv_dir() / ".labeltriage-installed").is_file(),
            "owner": data.get("owner_email"),
            "reviewers": sorted(data.get("users", {})),
        }

    # -- credentials -------------------------------------------------------------------------------
    def credentials(self) -> tuple[str, str]:
        """``(url, owner's personal access token)``. Raises LabelStudioError when not running."""
        url = self.url
        token = self.secrets().get("owner_token")
        if not token:
            raise LabelStudioError(f"no owner token in {self.secrets_file}: run `labeltriage label-studio up`")
        return url, str(token)

    def _ensure_token(self, url: str, who: str, email: str, password: str, invite: str | None = None) -> str:
        """Log ``email`` in (signing up through ``invite`` when new) and keep its personal access token."""
        data = self.secrets()
        key = "owner_token" if who == "owner" else None
        existing = data.get("owner_token") if key else data.get("users", {}).get(who, {}).get("token")
        if existing:
            return str(existing)
        session, reply = _csrf_session(url, "/user/login/", {"email": email, "password": password})
        if reply.status_code != 302 and invite:
            session, reply = _csrf_session(url, f"/user/signup/?token={invite}", {"email": email, "password": password})
        if reply.status_code != 302:
            raise LabelStudioError(f"Label Studio did not accept the login of {email} (HTTP {reply.status_code})")
        made = session.post(
            "/api/token/", headers={"X-CSRFToken": session.cookies.get("csrftoken") or "", "Referer": url + "/"}
        )
        if made.status_code == 409:  # one token per user: ours was lost with the secrets file
            raise LabelStudioError(
                f"{email} already has an access token that {self.secrets_file} lost: revoke it in Label Studio "
                f"(Account & Settings), or delete {self.data_dir} to start afresh"
            )
        if made.status_code != 201:
            raise LabelStudioError(
                f"Label Studio refused a token for {email}: HTTP {made.status_code} {made.text[:200]}"
            )
        token = str(made.json()["token"])
        data = self.secrets()
        if key:
            data[key] = token
        else:
            data.setdefault("users", {})[who] = {"email": email, "password": password, "token": token}
        self._save_secrets(data)
        return token

    def add_user(self, username: str, password: str | None = None) -> tuple[str, str]:
        """A reviewer account (``<username>@labeltriage.local``) joined through the invitation link.

        Returns ``(password, personal access token)``; the password is generated unless given and
        both are kept in the secrets file. Idempotent per username. Raises LabelStudioError.
        """
        known = self.secrets().get("users", {}).get(username)
        if known:
            return str(known["password"]), str(known["token"])
        url, owner_token = self.credentials()
        from curation.adapters.labelstudio_io import LabelStudioClient

        invite = LabelStudioClient(url, owner_token).get("/api/invite")["token"]
        password = password or secrets.token_urlsafe(15)
        token = self._ensure_token(url, username, f"{username}@{USER_DOMAIN}", password, invite=str(invite))
        return password, token
