"""A throwaway PostgreSQL cluster for tests: Debian's server binaries, a data folder in the
test's temporary directory, 127.0.0.1 on a free port, a generated password (SCRAM).

PostgreSQL refuses to run as root, so when the tests run as root (CI) the cluster runs as the
`postgres` system user that Debian's package creates."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@contextmanager
def postgres_cluster(port: int) -> Iterator[str]:
    """Start a cluster; yields ``postgresql+asyncpg://argilla:<pw>@127.0.0.1:<port>/argilla``.

    Its folder is a fresh one under the system's temporary directory (pytest's are private to
    root, which the `postgres` user cannot enter), removed at the end."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries not found; run `make setup` (installs Debian's postgresql)")
    password = secrets.token_urlsafe(16)
    directory = Path(tempfile.mkdtemp(prefix="labeltriage-pg-"))
    data, pwfile, socket_dir = directory / "data", directory / "pw", directory / "sock"
    socket_dir.mkdir(exist_ok=True)
    pwfile.write_text(password)
    if os.geteuid() == 0:
        for path in (directory, pwfile, socket_dir):
            shutil.chown(path, "postgres")
    os.chmod(directory, 0o700)
    run = lambda cmd: subprocess.run(_as_server_user(cmd), check=True, capture_output=True)  # noqa: E731
    run([str(bin_dir / "initdb"), "-D", str(data), "-U", "argilla", f"--pwfile={pwfile}", "-A", "scram-sha-256"])
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={socket_dir}"
    run([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(directory / "log"), "-w", "start"])
    try:
        env = {**os.environ, "PGPASSWORD": password}
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "argilla", "argilla"],
            check=True,
            capture_output=True,
            env=env,
        )
        yield f"postgresql+asyncpg://argilla:{password}@127.0.0.1:{port}/argilla"
    finally:
        subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), capture_output=True
        )
        shutil.rmtree(directory, ignore_errors=True)
