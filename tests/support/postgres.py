"""A throwaway PostgreSQL cluster for tests: Debian's server binaries, a data folder in a fresh
temporary directory, 127.0.0.1 on a free port, a generated password (SCRAM).

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
from dataclasses import dataclass
from pathlib import Path


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@dataclass
class PostgresCluster:
    """A running cluster: ``url`` is ``postgresql+asyncpg://argilla:<password>@127.0.0.1:<port>/argilla``."""

    bin_dir: Path
    directory: Path
    port: int
    password: str

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://argilla:{self.password}@127.0.0.1:{self.port}/argilla"

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.directory / "data"), *args]
        subprocess.run(_as_server_user(command), check=True, capture_output=True)

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.directory / 'sock'}"
        )
        self._pg_ctl("-o", options, "-l", str(self.directory / "log"), "-w", "start")

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as in a crash or an operator's restart."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def postgres_cluster(port: int) -> Iterator[PostgresCluster]:
    """Make and start a cluster with a database ``argilla`` owned by user ``argilla``.

    Its folder is a fresh one under the system's temporary directory (pytest's are private to
    root, which the `postgres` user cannot enter), removed at the end."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries not found; run `make setup` (installs Debian's postgresql)")
    directory = Path(tempfile.mkdtemp(prefix="labeltriage-pg-"))
    cluster = PostgresCluster(bin_dir, directory, port, secrets.token_urlsafe(16))
    pwfile, socket_dir = cluster.directory / "pw", cluster.directory / "sock"
    socket_dir.mkdir(exist_ok=True)
    pwfile.write_text(cluster.password)
    if os.geteuid() == 0:
        for path in (cluster.directory, pwfile, socket_dir):
            shutil.chown(path, "postgres")
    os.chmod(cluster.directory, 0o700)
    initdb = [str(bin_dir / "initdb"), "-D", str(cluster.directory / "data"), "-U", "argilla"]
    initdb += [f"--pwfile={pwfile}", "-A", "scram-sha-256"]
    subprocess.run(_as_server_user(initdb), check=True, capture_output=True)
    cluster.start()
    try:
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "argilla", "argilla"],
            check=True,
            capture_output=True,
            env={**os.environ, "PGPASSWORD": cluster.password},
        )
        yield cluster
    finally:
        subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(cluster.directory / "data"), "-m", "fast", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(cluster.directory, ignore_errors=True)
