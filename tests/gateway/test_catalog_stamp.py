"""A catalog change made by another process (`loadcatalog` beside a running server)
reaches this process's snapshot within CATALOG_CACHE_SECONDS, with or without Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from gateway.catalog import get_catalog

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
TOML = """
[[model]]
id = "from-elsewhere"
input_usd_per_mtok = 1
output_usd_per_mtok = 2
routes = [{ provider = "demo" }]
"""


def this_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def load_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(TOML)
    env = {**os.environ, "DATABASE_URL": this_database_url()}
    if not django_settings.REDIS_URL:
        env.pop("REDIS_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "loadcatalog", str(path)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_a_loadcatalog_run_elsewhere_reaches_the_snapshot(
    demo_catalog: None, tmp_path: Path, settings: Any
) -> None:
    settings.CATALOG_CACHE_SECONDS = 0.2
    assert get_catalog().resolve("from-elsewhere") is None

    load_in_another_process(tmp_path)

    deadline = time.monotonic() + 5
    while get_catalog().resolve("from-elsewhere") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert get_catalog().resolve("from-elsewhere") is not None


def test_without_a_change_the_snapshot_is_not_rebuilt(demo_catalog: None, settings: Any) -> None:
    settings.CATALOG_CACHE_SECONDS = 0
    first = get_catalog()

    assert get_catalog() is first
