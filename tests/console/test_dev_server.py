"""`make run` in development: another HOST/PORT, and one log line per request."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dev_server(tmp_path: Path):
    """`make run PORT=<free port>` on a fresh SQLite file, in its own process group."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        # --old-file: the shared virtualenv is installed already; never reinstall it here.
        server = subprocess.Popen(
            ["make", "--old-file=.venv/.installed", "run", f"PORT={port}", "HOST=127.0.0.1"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield f"http://127.0.0.1:{port}", log
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)


def wait_for(url: str, seconds: float = 120) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


@pytest.mark.django_db
def test_make_run_serves_on_the_port_asked_and_logs_each_request_once(dev_server) -> None:
    url, log = dev_server

    assert wait_for(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/healthz?marker=once", timeout=5).status_code == 200

    deadline = time.monotonic() + 10
    while "marker=once" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    lines = [line for line in log.read_text().splitlines() if "marker=once" in line]
    assert len(lines) == 1, lines
    page = httpx.get(f"{url}/", timeout=5).text
    assert f"{url}/v1" in page
