"""console.lean_urls: /v1 and the probes resolve as through the site's URL conf, every
console URL can still be reversed from an API request, and an API-only worker never
imports the console's views (allauth's providers and passkeys, the chat renderer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from django.urls import resolve, reverse

ROOT = Path(__file__).resolve().parents[2]
LEAN = "console.lean_urls"


def test_every_api_path_resolves_to_the_same_view_as_through_the_site():
    for path in (
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/responses",
        "/v1/models/meta-llama/llama-4:free",
        "/v1/no/such/endpoint",
        "/v1/documents/search",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        lean, site = resolve(path, urlconf=LEAN), resolve(path, urlconf="console.urls")
        assert (lean.func, lean.kwargs) == (site.func, site.kwargs), path


def test_console_urls_reverse_through_the_api_url_conf():
    for name, args in (
        ("account_confirm_email", ["abc:def"]),
        ("billing:index", []),
        ("billing:checkout_success", []),
        ("chat:index", []),
        ("home", []),
        ("v1-chat-completions", []),
    ):
        assert reverse(name, args=args, urlconf=LEAN) == reverse(name, args=args), name


def test_a_worker_that_serves_only_the_api_never_imports_the_console_views():
    """In a fresh interpreter: the ASGI application answers /v1 and the probes, and the
    modules of the console's sign-in and chat pages are still not imported."""
    program = textwrap.dedent(
        """
        import asyncio, json, sys
        import console.asgi

        async def ask(path):
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                "query_string": b"", "root_path": "", "headers": [(b"host", b"127.0.0.1")],
                "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
            }
            inbox = [{"type": "http.request", "body": b"", "more_body": False}]
            sent = []

            async def receive():
                if inbox:
                    return inbox.pop()
                await asyncio.sleep(3600)

            async def send(message):
                sent.append(message)

            await asyncio.wait_for(console.asgi.application(scope, receive, send), 10)
            return sent[0]["status"]

        statuses = [asyncio.run(ask(path)) for path in ("/healthz", "/v1/models", "/v1/nope")]
        loaded = [name for name in ("allauth.urls", "chat.urls", "chat.markdown", "fido2")
                  if name in sys.modules]
        print(json.dumps({"statuses": statuses, "loaded": loaded}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "console.settings",
            "ALLOWED_HOSTS": "127.0.0.1",
        },
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [200, 401, 404]
    assert report["loaded"] == []
