"""Outages in one process: Redis stopped or silent, and what each surface answers.

A Redis server of the test's own (tests/services.py) is stopped and started again, or
replaced by a socket that never answers; the live server and Django's test clients
then show what a customer gets: 503 `service_unavailable` with `Retry-After` on /v1 and
the account API, a friendly page on the console, /readyz naming the cache within a
second, one log line per outage and one when it ends. The PostgreSQL side, and both
under load through a real worker, are in tests/test_outages.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import redis
from django.db.backends.postgresql.base import DatabaseWrapper
from django.test import AsyncClient, Client

from accounts.models import ApiKey
from gateway import outages, router
from gateway.models import Model
from tests.services import RedisServer, SilentServer
from tests.test_multiworker import MESSAGES, catalog

__all__ = ["catalog"]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def silent_redis() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def redis_cache(settings, url: str) -> None:
    """Point Django's cache at `url`, with the client options production uses."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "sb",
            "OPTIONS": settings.REDIS_CLIENT_OPTIONS,
        }
    }


def chat(base_url: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": "mw-model", "messages": MESSAGES, "max_tokens": 10},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["type"] == "service_unavailable"
    assert error["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) >= 1


def outage_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if text in record.getMessage()]


def test_a_limited_key_is_answered_503_with_retry_after_while_redis_is_down(
    live_server_url, catalog, make_customer, redis_server, settings
):
    settings.REDIS_URL = redis_server.url
    customer = make_customer(rpm_limit=1_000)
    assert chat(live_server_url, customer.secret).status_code == 200
    redis_server.stop()

    response = chat(live_server_url, customer.secret)

    assert_unavailable(response)


def test_requests_are_refused_at_once_while_redis_does_not_answer(
    live_server_url, catalog, make_customer, silent_redis, settings, monkeypatch
):
    # No probe falls inside the test, however slow the machine: what is left to see is
    # whether a request asked Redis after the first found it silent.
    monkeypatch.setattr(outages, "PROBE_INTERVAL_SECONDS", 600.0)
    settings.REDIS_URL = silent_redis.url
    customer = make_customer(rpm_limit=1_000)

    first = chat(live_server_url, customer.secret)
    asked = silent_redis.connections
    others = [chat(live_server_url, customer.secret) for _ in range(9)]

    for response in [first, *others]:
        assert_unavailable(response)
    # The first waited for the client's timeout; the others are refused without asking.
    assert asked >= 1
    assert silent_redis.connections == asked


def test_an_outage_is_logged_once_and_service_resumes_by_itself(
    live_server_url, catalog, make_customer, redis_server, settings, caplog
):
    settings.REDIS_URL = redis_server.url
    customer = make_customer(rpm_limit=1_000)
    assert chat(live_server_url, customer.secret).status_code == 200
    redis_server.stop()

    for _ in range(20):
        assert_unavailable(chat(live_server_url, customer.secret))
    redis_server.start()
    deadline = time.monotonic() + 10
    while (status := chat(live_server_url, customer.secret).status_code) != 200:
        assert status == 503
        assert time.monotonic() < deadline, "service did not resume after Redis came back"
        time.sleep(0.1)

    assert len(outage_lines(caplog, "redis unavailable")) == 1
    assert len(outage_lines(caplog, "redis back")) == 1
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert [r.getMessage() for r in caplog.records if r.name == "django.request"] == []


def test_the_catalog_is_read_from_the_database_while_the_cache_is_down(
    live_server_url, catalog, redis_server, settings
):
    settings.CATALOG_CACHE_SECONDS = 0
    redis_cache(settings, redis_server.url)
    assert httpx.get(f"{live_server_url}/v1/catalog").status_code == 200
    redis_server.stop()
    Model.objects.create(
        id="added-in-the-outage", context_length=1_000, max_output_tokens=100, input_price=1
    )

    response = httpx.get(f"{live_server_url}/v1/catalog?show_all=true", timeout=10)

    assert response.status_code == 200, response.text
    assert "added-in-the-outage" in {model["id"] for model in response.json()["data"]}


async def test_readyz_names_the_cache_when_redis_does_not_answer(silent_redis, settings):
    redis_cache(settings, silent_redis.url)
    settings.REDIS_URL = silent_redis.url

    # Bounded: the probe has its own short timeout, far below this one.
    response = await asyncio.wait_for(AsyncClient().get("/readyz"), 5)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "ok"
    assert body["cache"].startswith("error: ")


async def test_the_console_shows_a_friendly_page_while_redis_is_down(redis_server, settings):
    redis_cache(settings, redis_server.url)
    settings.REDIS_URL = redis_server.url
    redis_server.stop()

    # Signing in is throttled through the cache (allauth's rate limits).
    response = await AsyncClient().post(
        "/accounts/login/", {"login": "someone@example.com", "password": "wrong-password"}
    )

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert int(response["Retry-After"]) >= 1
    assert response["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY
    page = response.content.decode()
    assert re.search(r"<h1[^>]*>[^<]*temporarily unavailable</h1>", page)
    assert '<a class="button" href="/accounts/login/">Try again</a>' in page
    assert 'lang="en"' in page


def test_the_account_api_answers_json_503_while_redis_is_down(customer, redis_server, settings):
    settings.REDIS_URL = redis_server.url
    _, manager = ApiKey.objects.mint(user=customer.user, name="manager", can_manage=True)
    redis_server.stop()

    response = Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {manager}")

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "service_unavailable"
    assert int(response["Retry-After"]) >= 1


@pytest.mark.parametrize("use", ["recall", "remember"])
async def test_the_routers_conversation_memory_ends_an_outage_when_its_call_was_the_probe(
    redis_server, settings, monkeypatch, use
):
    """A caller that may_try() lets through while Redis is away is the outage's probe:
    when Redis answers it, the outage ends (and the requests refused meanwhile go in)."""
    redis_cache(settings, redis_server.url)
    monkeypatch.setattr(outages, "PROBE_INTERVAL_SECONDS", 0.0)  # the probe is due at once
    outages.note(outages.REDIS, redis.exceptions.ConnectionError("refused"))

    if use == "recall":
        assert await router._recall("router:conversation:probe") is None
    else:
        await router._remember("router:conversation:probe", "some-model")

    assert outages.down(outages.REDIS) is None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_knows_an_outage_from_other_errors(settings):
    with pytest.raises(redis.RedisError) as from_redis:
        redis.Redis(port=_closed_port(), **settings.REDIS_CLIENT_OPTIONS).ping()
    with pytest.raises(psycopg.Error) as from_psycopg:
        psycopg.connect(host="127.0.0.1", port=_closed_port(), connect_timeout=2)
    closed = DatabaseWrapper(
        {
            **settings.DATABASES["default"],
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": _closed_port(),
            "NAME": "switchboard",
            "USER": "postgres",
            "PASSWORD": "",
            "OPTIONS": {"connect_timeout": 2},
            "CONN_HEALTH_CHECKS": False,
            "CONN_MAX_AGE": 0,
            "TIME_ZONE": None,
        },
        alias="closed",
    )
    with pytest.raises(Exception) as from_django:
        closed.ensure_connection()

    assert outages.kind_of(from_redis.value) == outages.REDIS
    assert outages.kind_of(from_psycopg.value) == outages.DATABASE
    assert outages.kind_of(from_django.value) == outages.DATABASE
    # The database answered and refused this statement: not an outage.
    assert outages.kind_of(psycopg.errors.QueryCanceled("statement timeout")) is None
    assert outages.kind_of(psycopg.errors.DeadlockDetected("deadlock detected")) is None
    assert outages.kind_of(ValueError("bad input")) is None
