"""What a fresh worker imports before it sells anything: not the stripe package (about
10 MB of every worker's memory; billing/checkout.py imports it where it is used)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys
import django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns
import console.asgi
print(",".join(sorted(name for name in sys.modules if name.split(".")[0] == "stripe")))
"""


def test_a_worker_with_its_urlconf_loaded_has_not_imported_stripe():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""
