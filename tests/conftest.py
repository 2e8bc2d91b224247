"""Shared fixtures: users, accounts with credit, keys, and a live ASGI server.

In CI (CI=true or REQUIRE_SERVICES=1) the suite refuses to run unless it is on
PostgreSQL with Redis and Chromium available: a missing service is a failure,
never a skip.
"""

from __future__ import annotations

import functools
import inspect
import os
import shutil
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
from django.conf import settings

from tests.fakes.upstream import FakeUpstream

REQUIRE_SERVICES = os.environ.get("CI") == "true" or os.environ.get("REQUIRE_SERVICES") == "1"


def pytest_sessionstart(session: pytest.Session) -> None:
    if not REQUIRE_SERVICES:
        return
    problems = []
    from django.db import connection

    if connection.vendor != "postgresql":
        problems.append("DATABASE_URL must point at PostgreSQL in CI")
    if not settings.REDIS_URL:
        problems.append("REDIS_URL must be set in CI")
    else:
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL).ping()
        except redis.RedisError as exc:
            problems.append(f"Redis is not reachable: {exc}")
    if not shutil.which("chromium"):
        problems.append("chromium is not installed")
    if problems:
        raise pytest.UsageError("; ".join(problems))


def _returning_its_connections(test: Callable[..., Awaitable[None]]) -> Callable[..., object]:
    """The ORM calls an async test makes itself (DJANGO_ALLOW_ASYNC_UNSAFE) get a
    connection of the test's own context (Django keeps them per context, and
    pytest-asyncio runs each test in a fresh copy), which no fixture can reach to close:
    without this each such test kept one of the process's DB_POOL_MAX connections
    checked out for good, and late in a run the chat socket tests waited on the pool."""

    @functools.wraps(test)
    async def run(**kwargs: object) -> None:
        from django.db import connections

        before = {id(connection) for connection in connections.all(initialized_only=True)}
        try:
            await test(**kwargs)
        finally:
            for connection in connections.all(initialized_only=True):
                if id(connection) not in before and connection.connection is not None:
                    connection.close()

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.obj = _returning_its_connections(item.obj)


@pytest.fixture(scope="session", autouse=True)
def _flush_postgres_with_delete() -> Iterator[None]:
    """Empty tables between transactional tests with DELETE, not TRUNCATE.

    PostgreSQL's TRUNCATE of every table costs ~0.4 s per test; DELETE on the few rows
    a test makes costs ~0.04 s. Django's foreign keys are deferred, so order is free.
    """
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences:
            return truncate(
                self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        return [f"DELETE FROM {self.quote_name(table)};" for table in tables]

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = truncate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    """Per-process caches (catalog, keys, limits, cooldowns) start empty in every test."""
    from django.core.cache import cache

    from gateway import state

    state.reset_process_state()
    cache.clear()
    yield
    state.reset_process_state()


@pytest.fixture(autouse=True)
def _own_settlement_journal(settings: object, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test journals (and the sweeper replays) in a directory of its own, never in
    the checkout's var/settlements."""
    settings.SETTLEMENT_JOURNAL_DIR = tmp_path_factory.mktemp("settlements")  # type: ignore[attr-defined]


@dataclass
class Customer:
    user: object
    account: object
    api_key: object
    secret: str


@pytest.fixture
def make_customer(db):
    from accounts.models import ApiKey, User
    from billing.ledger import account_for, credit_account

    counter = {"n": 0}

    def make(credit_micro_usd: int = 10_000_000, **key_fields: object) -> Customer:
        counter["n"] += 1
        user = User.objects.create_user(f"customer{counter['n']}@example.com", "pw-123-secret")
        account = account_for(user)
        extra = credit_micro_usd - account.balance_micro_usd
        if extra:
            credit_account(
                account=account,
                amount=extra,
                kind="adjustment",
                idempotency_key=f"test-credit:{user.pk}",
                memo="test credit",
            )
        key, secret = ApiKey.objects.mint(user=user, name="test", **key_fields)
        account.refresh_from_db()
        return Customer(user=user, account=account, api_key=key, secret=secret)

    return make


@pytest.fixture
def customer(make_customer) -> Customer:
    return make_customer()


@pytest.fixture
def demo_catalog(db) -> None:
    from django.core.management import call_command

    call_command("synccatalog", "--demo-only", verbosity=0)


@pytest.fixture
def warm_catalog(db) -> Callable[[], None]:
    """Build the catalog snapshot in this thread: /v1 views would otherwise build it on a
    worker thread whose connection cannot see this test's uncommitted rows."""

    def warm() -> None:
        from gateway import state
        from gateway.catalog import get_catalog

        state.reset_process_state()
        get_catalog()

    return warm


class _InFlight:
    """Counts HTTP requests the live server is still handling (streams included)."""

    def __init__(self, app: object) -> None:
        self.app = app
        self.active = 0

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)  # type: ignore[operator]
        finally:
            self.active -= 1


class LiveServer:
    """The real ASGI application under uvicorn, in a thread of this process."""

    def __init__(self) -> None:
        import uvicorn

        from console.asgi import application

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = _InFlight(application)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def wait_until_idle(self, timeout: float = 10) -> None:
        """Requests settle after the client has its last byte, and their refusals reach
        the request log FLUSH_SECONDS later; let both finish."""
        from gateway import refusals

        deadline = time.monotonic() + timeout
        while (self.app.active or refusals.pending()) and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.app.active:
            raise RuntimeError(f"{self.app.active} requests still running on the live server")
        if refusals.pending():
            raise RuntimeError("refused calls still wait to be written to the request log")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def gateway_server(django_db_setup: None) -> Iterator[LiveServer]:
    from django.db import connections

    server = LiveServer()
    server.start()
    yield server
    server.stop()
    # The server's worker threads borrowed pooled connections; give the test database back.
    for connection in connections.all():
        if getattr(connection, "pool", None) is not None:
            connection.close_pool()


@pytest.fixture(scope="session", autouse=True)
def _release_the_test_database(django_db_setup: None, django_db_blocker: object) -> Iterator[None]:
    """Thread-pool threads keep their own connections; end them before the database is
    dropped, or PostgreSQL refuses to drop a database that is still in use."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def live_server_url(gateway_server: LiveServer, transactional_db: None) -> Iterator[str]:
    """Base URL of the live server; the test's requests finish before its data is flushed."""
    yield gateway_server.url
    gateway_server.wait_until_idle()


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    """The fake OpenAI/Anthropic/Gemini upstream (tests/fakes/upstream.py), one per run."""
    server = FakeUpstream()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_upstream(fake_upstream_server: FakeUpstream) -> FakeUpstream:
    """The fake upstream with no scripts and no recorded requests."""
    fake_upstream_server.reset()
    return fake_upstream_server


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium driven by Playwright; fails (never skips) when it is missing.

    Every context it opens reports Content-Security-Policy violations from its pages'
    consoles into `browser.csp_violations`; `_no_csp_violations` fails the test on one.
    """
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed (apt-get install -y chromium)")
    # Playwright's sync API keeps an event loop running in this thread while the browser
    # is open; the ORM (the tests' own queries and the database teardown) must still work.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        violations: list[str] = []
        open_context = instance.new_context

        def new_context(**options: object) -> object:
            context = open_context(**options)
            context.on(
                "console",
                lambda message: (
                    violations.append(f"{message.location.get('url')}: {message.text}")
                    if "Content Security Policy" in message.text
                    else None
                ),
            )
            return context

        patch.setattr(instance, "new_context", new_context)
        patch.setattr(instance, "csp_violations", violations, raising=False)
        yield instance
        instance.close()


def wait_for_htmx(page: object) -> None:
    """Wait, after `page.goto` (which returns at the load event: stylesheets, scripts,
    fonts and images are in), until no htmx request is in flight: htmx marks the element
    (or its indicator) `htmx-request` until the answer is swapped in.

    For checks of the page's DOM this is the end of its loading; Playwright's
    "networkidle" waits for the same and then 500 ms of silence on every page. The
    console pages fetch nothing else after load but the favicon (one link in base.html,
    whose policy tests/console/test_browser_pages.py still waits for).
    """
    page.wait_for_function("() => !document.querySelector('.htmx-request')")  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _no_csp_violations(request: pytest.FixtureRequest) -> Iterator[None]:
    """A browser test fails if any page it opened broke the Content-Security-Policy."""
    if "browser" not in request.fixturenames:
        yield
        return
    violations = request.getfixturevalue("browser").csp_violations
    violations.clear()
    yield
    assert violations == [], "Content-Security-Policy violations:\n" + "\n".join(violations)


@pytest.fixture
def localhost_url(live_server_url: str) -> str:
    """The live server on `localhost` (WebAuthn refuses bare IP addresses)."""
    return live_server_url.replace("127.0.0.1", "localhost")
