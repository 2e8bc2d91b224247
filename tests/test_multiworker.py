"""Two uvicorn worker processes on one database and one Redis: what must stay true.

Each test starts two separate uvicorn processes (two ports, so a test can choose which
worker it talks to) with production settings, on this test run's database (pytest-
django's test database) and Redis, in front of the fake upstream. CI runs them on
PostgreSQL and Redis; on SQLite they run too, with the local Redis when REDIS_URL is
unset. Without any Redis they fail with a clear message: workers share limits, caches
and revocations only through it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import ApiKey
from billing.models import Account, Hold, LedgerEntry, UsageRecord
from gateway.models import Model, Provider, Route
from tests.conftest import free_port
from tests.fakes.upstream import Ok
from tests.xdist_workers import local_redis_url

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [{"role": "user", "content": "Hello from the multi-worker test."}]
METRICS_TOKEN = "multiworker-metrics-token"
# Input is free and each answer reports exactly MAX_TOKENS output tokens at 1 micro-USD
# each, so the worst case held and the cost charged are both PRICE micro-USD.
MAX_TOKENS = 10
PRICE = 10


def database_url() -> str:
    """The URL of the database this test run uses (pytest-django's test database)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """One uvicorn process serving console.asgi on its own port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "console.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--lifespan",
            "off",
            "--no-access-log",
        ]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"worker exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"worker on {self.url} did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


@pytest.fixture
def shared_redis() -> str:
    """The Redis the workers share: this run's REDIS_URL, else the local server (a
    database of its own, emptied first). No Redis at all fails before any worker starts:
    limits, caches and revocations are only shared between workers through it."""
    import redis

    url = settings.REDIS_URL or local_redis_url()
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"the workers need a shared Redis at {url}: {exc}")
    if not settings.REDIS_URL:
        client.flushdb()
    client.close()
    return url


def worker_env(tmp_path: Path, redis_url: str, **extra: str) -> dict[str, str]:
    """Production settings for a worker on this test run's database and Redis."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": settings.SECRET_KEY,
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "DB_POOL_MAX": "10",
        # 200 requests in flight queue for 10 connections a worker: on a loaded machine a
        # wait can pass the 2 s default, and the worker then takes the database for away
        # (503s). What these tests check is the money, not the pool's patience.
        "DB_POOL_TIMEOUT": "15",
        "CATALOG_CACHE_SECONDS": "0.5",
        "METRICS_TOKEN": METRICS_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@pytest.fixture
def workers(transactional_db, tmp_path, shared_redis) -> Iterator[tuple[Worker, Worker]]:
    env = worker_env(tmp_path, shared_redis)
    pair = (Worker(env, tmp_path / "a.log"), Worker(env, tmp_path / "b.log"))
    try:
        for worker in pair:
            worker.wait_ready()
        yield pair
    finally:
        for worker in pair:
            worker.stop()


@pytest.fixture
def catalog(fake_upstream) -> None:
    provider = Provider.objects.create(
        name="upstream", kind="openai", base_url=fake_upstream.url + "/v1", timeout_seconds=5
    )
    model = Model.objects.create(
        id="mw-model",
        context_length=8_000,
        max_output_tokens=1_000,
        input_price=0,
        output_price=1_000_000,
    )
    Route.objects.create(model=model, provider=provider, upstream_model="mw-upstream")


def chat(base_url: str, secret: str, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": "mw-model", "messages": MESSAGES, "max_tokens": MAX_TOKENS, **extra},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def assert_books_balance(account: Account) -> None:
    account.refresh_from_db()
    assert account.held_micro_usd == 0
    assert not Hold.objects.filter(account=account).exists()
    assert account.ledger_sum() == account.balance_micro_usd
    assert account.balance_micro_usd >= 0


def test_a_rate_limit_holds_across_workers_not_per_worker(workers, catalog, make_customer):
    customer = make_customer(rpm_limit=6)
    a, b = workers

    statuses = [chat((a, b)[i % 2].url, customer.secret).status_code for i in range(12)]

    assert statuses.count(200) == 6
    assert statuses.count(429) == 6
    assert statuses[:6] == [200] * 6


def test_concurrent_requests_on_both_workers_never_overspend(
    workers, catalog, make_customer, fake_upstream
):
    fake_upstream.script("mw-upstream", *[Ok(completion_tokens=MAX_TOKENS)] * 200)
    customer = make_customer(credit_micro_usd=10 * PRICE)
    a, b = workers

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            calls = [
                client.post(
                    f"{(a, b)[i % 2].url}/v1/chat/completions",
                    json={"model": "mw-model", "messages": MESSAGES, "max_tokens": MAX_TOKENS},
                    headers={"Authorization": f"Bearer {customer.secret}"},
                )
                for i in range(200)
            ]
            return [response.status_code for response in await asyncio.gather(*calls)]

    statuses = asyncio.run(burst())

    assert statuses.count(200) == 10
    assert statuses.count(402) == 190
    ok = UsageRecord.objects.filter(account=customer.account, status=UsageRecord.Status.OK)
    assert ok.count() == 10
    assert sum(record.cost_micro_usd for record in ok) == 10 * PRICE
    customer.account.refresh_from_db()
    assert customer.account.balance_micro_usd == 0
    assert_books_balance(customer.account)


def test_a_key_revoked_through_one_worker_is_refused_by_the_other_within_seconds(
    workers, catalog, make_customer
):
    customer = make_customer()
    _, manager = ApiKey.objects.mint(user=customer.user, name="manager", can_manage=True)
    a, b = workers
    assert chat(a.url, customer.secret).status_code == 200
    assert chat(b.url, customer.secret).status_code == 200

    revoked = httpx.delete(
        f"{a.url}/api/v1/keys/{customer.api_key.pk}",
        headers={"Authorization": f"Bearer {manager}"},
    )

    assert revoked.status_code == 200, revoked.text
    assert chat(a.url, customer.secret).status_code == 401
    deadline = time.monotonic() + 5
    status = chat(b.url, customer.secret).status_code
    while status == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
        status = chat(b.url, customer.secret).status_code
    assert status == 401
    assert "revoked" in chat(b.url, customer.secret).json()["error"]["message"]


def test_a_stream_through_two_workers_is_billed_exactly_once(workers, catalog, customer):
    a, _ = workers
    request = {
        "model": "mw-model",
        "messages": MESSAGES,
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    with httpx.stream(
        "POST",
        f"{a.url}/v1/chat/completions",
        json=request,
        headers={"Authorization": f"Bearer {customer.secret}"},
        timeout=30,
    ) as response:
        body = b"".join(response.iter_bytes())
        request_id = response.headers["x-request-id"]

    assert response.status_code == 200
    assert body.endswith(b"data: [DONE]\n\n")
    deadline = time.monotonic() + 5
    while not UsageRecord.objects.filter(request_id=request_id).exists():
        assert time.monotonic() < deadline, "the stream was never settled"
        time.sleep(0.05)
    record = UsageRecord.objects.get(request_id=request_id)
    assert record.stream
    assert record.status == UsageRecord.Status.OK
    entries = LedgerEntry.objects.filter(idempotency_key=f"usage:{request_id}")
    assert entries.count() == 1
    assert entries.get().amount_micro_usd == -record.cost_micro_usd
    assert f'"cost_micro_usd":{record.cost_micro_usd}'.encode() in body
    assert_books_balance(customer.account)


def test_metrics_from_either_worker_count_the_calls_both_answered(workers, catalog, customer):
    a, b = workers
    assert chat(a.url, customer.secret).status_code == 200
    assert chat(b.url, customer.secret).status_code == 200

    scraped = httpx.get(f"{b.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})

    assert scraped.status_code == 200
    completions = {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
        if sample.name == "switchboard_completions_total"
    }
    labels = (("model", "mw-model"), ("status", "ok"), ("stream", "false"))
    assert completions[labels] == 2


def test_a_web_chat_answer_streamed_by_one_worker_is_billed_once(
    workers, catalog, customer, fake_upstream
):
    from django.test import Client
    from websockets.asyncio.client import connect

    from chat.models import Conversation, Message

    fake_upstream.script("mw-upstream", Ok(text="one two three four five", delay=0.01))
    conversation = Conversation.objects.create(user=customer.user, model="mw-model")
    browser = Client()
    browser.force_login(customer.user)
    session = browser.cookies["sessionid"].value
    worker = workers[1]

    async def ask() -> list[str]:
        frames: list[str] = []
        async with connect(
            f"ws://127.0.0.1:{worker.port}/ws/chat/{conversation.pk}/",
            origin=worker.url,
            additional_headers={"Cookie": f"sessionid={session}"},
            open_timeout=10,
        ) as socket:
            await socket.send('{"message": "Count to five."}')
            for _ in range(200):
                frame = str(await asyncio.wait_for(socket.recv(), timeout=15))
                frames.append(frame)
                if "Answer complete" in frame:
                    return frames
        raise AssertionError("the answer never completed")

    frames = asyncio.run(ask())

    assert any("five" in frame for frame in frames)
    records = UsageRecord.objects.filter(account=customer.account)
    assert [(r.source, r.status) for r in records] == [("web", "ok")]
    entries = LedgerEntry.objects.filter(account=customer.account, kind=LedgerEntry.Kind.USAGE)
    assert [e.amount_micro_usd for e in entries] == [-records[0].cost_micro_usd]
    answer = Message.objects.get(conversation=conversation, role="assistant")
    assert answer.request_id == records[0].request_id
    assert_books_balance(customer.account)
