"""PROMETHEUS_MULTIPROC_DIR for processes other than the web workers.

A cron job run with production's environment (`manage.py sweepholds`) has the variable
set but may find no directory: prometheus_client would crash on the first metric. The
command creates it, or says plainly why it cannot.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, multiproc_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_command_creates_a_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "there"

    result = manage("check", multiproc_dir=missing)

    assert result.returncode == 0, result.stderr
    assert missing.is_dir()


def test_a_directory_that_cannot_be_made_is_named_in_a_clear_error(tmp_path: Path) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")

    result = manage("check", multiproc_dir=in_the_way / "metrics")

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last_line
    assert f"PROMETHEUS_MULTIPROC_DIR={in_the_way / 'metrics'}" in last_line
    assert "FileNotFoundError" not in result.stderr
