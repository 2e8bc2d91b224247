"""The ASGI entry point (console.asgi) as a worker process imports it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
FREEZE_COUNTS = """
import gc
before = gc.get_freeze_count()
import console.asgi
print(before, gc.get_freeze_count())
"""


def test_importing_it_freezes_what_the_worker_built_at_startup():
    # In a fresh interpreter: this process's own freeze count depends on what ran before.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings"}
    result = subprocess.run(
        [sys.executable, "-c", FREEZE_COUNTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    before, after = map(int, result.stdout.split())
    assert before == 0
    assert after > 0
