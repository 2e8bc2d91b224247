"""Real services a test starts itself, on ports of its own, for outage tests.

- `RedisServer`: a `redis-server` subprocess (no persistence) that can be stopped and
  started again on the same port;
- `SilentServer`: a socket that accepts connections into its backlog and never answers,
  the way a host behind a broken network looks to a client: only its timeouts help;
- `PostgresCluster`: a PostgreSQL cluster made with `pg_createcluster` (trust
  authentication on 127.0.0.1, run as the postgres user, so this works as root in CI),
  started and stopped with `pg_ctlcluster`, dropped with `pg_dropcluster --stop`.

Never the shared Redis or PostgreSQL: stopping those would break every other test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port


def _wait(check: object, what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"{what} within {seconds} s")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class RedisServer:
    """redis-server on a free port of 127.0.0.1, in the foreground as a subprocess."""

    def __init__(self, log: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("these tests start their own Redis: install redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _wait(lambda: _answers(self.port), f"redis-server did not listen on {self.port}", 10)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None


class SilentServer:
    """A listening socket whose connections open and are never answered; it counts them
    (`connections`), so a test can tell whether a client asked again."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(128)
        self.port = self.socket.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return  # closed
            self._accepted.append(connection)

    @property
    def connections(self) -> int:
        return len(self._accepted)

    def close(self) -> None:
        self.socket.close()
        for connection in self._accepted:
            connection.close()


def _postgres_version() -> str:
    versions = sorted(
        (path.parent.parent.name for path in Path("/usr/lib/postgresql").glob("*/bin/postgres")),
        key=lambda version: float(version),
    )
    if not versions or shutil.which("pg_createcluster") is None:
        pytest.fail(
            "these tests start their own PostgreSQL cluster: install postgresql "
            "(pg_createcluster, pg_ctlcluster)"
        )
    return versions[-1]


class PostgresCluster:
    """A PostgreSQL cluster of this test run's own, on a free port of 127.0.0.1."""

    def __init__(self, name: str) -> None:
        self.version = _postgres_version()
        self.name = f"{name}{os.getpid()}"
        self.port = free_port()

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create(self) -> None:
        self._run(
            "pg_createcluster",
            self.version,
            self.name,
            "--port",
            str(self.port),
            "-o",
            "fsync=off",
            "--",
            "--auth-host=trust",
            "--auth-local=trust",
        )

    def start(self) -> None:
        self._run("pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, "start")
        _wait(lambda: _answers(self.port), f"PostgreSQL did not listen on {self.port}", 20)

    def stop(self) -> None:
        self._run(
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            self.version,
            self.name,
            "stop",
            "-m",
            "fast",
        )

    def drop(self) -> None:
        subprocess.run(
            ["pg_dropcluster", "--stop", self.version, self.name],
            capture_output=True,
            timeout=60,
            check=False,
        )

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-At",
            "-c",
            sql,
        )

    def _run(self, *command: str) -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")
        return done.stdout
