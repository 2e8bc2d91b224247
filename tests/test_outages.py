"""Redis, then PostgreSQL, stopped under load and started again: what a real worker answers.

A uvicorn worker (tests/test_multiworker.py's Worker, production settings) serves a
steady load of chat completions, streamed and not, from LOAD_CLIENTS clients, while
the test stops a dependency for OUTAGE_SECONDS and starts it again. Redis is a server
of the test's own; PostgreSQL is a cluster of the test's own (tests/services.py),
migrated and given its customer and catalog through `manage.py`, never the shared ones.

What must hold: every answer is 200 or 503 `service_unavailable` with Retry-After (no
other 5xx, no connection dropped), none takes longer than BOUND_SECONDS, /readyz names
what is down within a second, the worker logs one line when the outage starts and one
when it ends (no tracebacks), service resumes by itself, and every 200 answer has its
usage record once the database is back (the settlement journal replays).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import psycopg
import pytest

from billing.models import UsageRecord
from tests.services import PostgresCluster, RedisServer
from tests.test_multiworker import MESSAGES, ROOT, Worker, catalog, worker_env

__all__ = ["catalog"]

LOAD_CLIENTS = 12
OUTAGE_SECONDS = 3.0
# DB_POOL_TIMEOUT (2 s) for a request already waiting on the pool when the database
# went, plus room for a loaded two-core machine.
BOUND_SECONDS = 5.0
MAX_REQUESTS = 20_000


@dataclass(frozen=True, slots=True)
class Answer:
    started: float
    seconds: float
    status: int  # 0 when no HTTP answer came
    retry_after: str | None
    error_type: str | None
    error_message: str | None  # what a refusal said: which dependency or upstream
    request_id: str | None
    complete: bool  # a 200 whose body is a whole completion (a stream up to [DONE])


class Load:
    """LOAD_CLIENTS clients calling chat completions back to back, in a thread."""

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret
        self.answers: list[Answer] = []
        self._stopping = False
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[Answer]:
        self._stopping = True
        self._thread.join(timeout=BOUND_SECONDS * 3)
        assert not self._thread.is_alive(), "the load did not stop"
        return self.answers

    def first_ok_after(self, moment: float) -> Answer | None:
        return next(
            (a for a in list(self.answers) if a.started >= moment and a.status == 200), None
        )

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=LOAD_CLIENTS)
        async with httpx.AsyncClient(timeout=BOUND_SECONDS * 2, limits=limits) as client:
            await asyncio.gather(*(self._client(client, n) for n in range(LOAD_CLIENTS)))

    async def _client(self, client: httpx.AsyncClient, n: int) -> None:
        calls = 0
        while not self._stopping and len(self.answers) < MAX_REQUESTS:
            calls += 1
            self.answers.append(await self._call(client, stream=(n + calls) % 2 == 0))

    async def _call(self, client: httpx.AsyncClient, *, stream: bool) -> Answer:
        body = {"model": "mw-model", "messages": MESSAGES, "max_tokens": 10, "stream": stream}
        started = time.monotonic()
        try:
            async with client.stream(
                "POST",
                f"{self.url}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {self.secret}"},
            ) as response:
                content = await response.aread()
        except httpx.HTTPError:
            return Answer(started, time.monotonic() - started, 0, None, None, None, None, False)
        error_type = error_message = None
        if response.status_code != 200:
            try:
                error = orjson.loads(content)["error"]
                error_type, error_message = error["type"], error["message"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                error_type = f"not an error object: {content[:100]!r}"
        complete = response.status_code == 200 and (
            content.endswith(b"data: [DONE]\n\n") and b'"error"' not in content
            if stream
            else b'"choices"' in content
        )
        return Answer(
            started,
            time.monotonic() - started,
            response.status_code,
            response.headers.get("Retry-After"),
            error_type,
            error_message,
            response.headers.get("x-request-id"),
            complete,
        )


@dataclass(frozen=True, slots=True)
class Readiness:
    seconds: float
    status: int
    body: dict


def readyz(url: str) -> Readiness:
    started = time.monotonic()
    response = httpx.get(f"{url}/readyz", timeout=BOUND_SECONDS)
    return Readiness(time.monotonic() - started, response.status_code, response.json())


def until_unready(url: str, dependency: str, seconds: float = 5) -> list[Readiness]:
    """/readyz, polled until it names `dependency` as down (each answer timed)."""
    seen: list[Readiness] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(readyz(url))
        if seen[-1].status == 503 and seen[-1].body[dependency].startswith("error"):
            return seen
        time.sleep(0.1)
    pytest.fail(f"/readyz never named {dependency} as down: {seen[-3:]}")


def until_recovered(load: Load, since: float, seconds: float = 15) -> Answer:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (answer := load.first_ok_after(since)) is not None:
            return answer
        time.sleep(0.05)
    pytest.fail(f"no request succeeded within {seconds} s of the dependency coming back")


def check_answers(answers: list[Answer], *, outage: tuple[float, float]) -> dict[str, object]:
    """The invariants every answer must meet; returns the figures."""
    statuses: dict[int, int] = {}
    for answer in answers:
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
    unexpected = [a for a in answers if a.status not in (200, 503)]
    assert unexpected == [], f"answers other than 200 and 503: {statuses}"
    refused = [a for a in answers if a.status == 503]
    assert all(a.retry_after and int(a.retry_after) >= 1 for a in refused)
    assert {a.error_type for a in refused} <= {"service_unavailable"}
    assert all(a.complete for a in answers if a.status == 200)
    slowest = max(a.seconds for a in answers)
    assert slowest < BOUND_SECONDS, f"a request took {slowest:.1f} s"
    during = [a for a in answers if outage[0] + 0.5 <= a.started < outage[1]]
    assert any(a.status == 503 for a in during), "the outage was never felt"
    return {
        "answered": len(answers),
        "ok": statuses.get(200, 0),
        "503": statuses.get(503, 0),
        "other_5xx": sum(n for status, n in statuses.items() if status >= 500 and status != 503),
        "slowest_s": round(slowest, 2),
    }


def assert_served_since(recovered: Answer, answers: list[Answer], log: str) -> None:
    """Service resumed: every request started half a second after the first one served
    once the dependency was back was served too (else the refusals and the log)."""
    late = [a for a in answers if a.started >= recovered.started + 0.5 and a.status != 200]
    assert late == [], (recovered, late[:3], log[-3000:])


def outage_lines(log: str, dependency: str) -> tuple[int, int]:
    return (
        len(re.findall(rf"\b{dependency} unavailable\b", log)),
        len(re.findall(rf"\b{dependency} back\b", log)),
    )


@pytest.fixture(scope="module", autouse=True)
def collected_static() -> None:
    """The workers run with DEBUG off, so their pages need collectstatic's manifest (as
    `make prod` makes it), or every page is a 500 for want of its stylesheet."""
    done = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--skip-checks"],
        cwd=ROOT,
        env={**os.environ, "DEBUG": "false"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def web_chat(worker: Worker, user: object) -> list[str]:
    """One question through the chat page's websocket; the frames sent back."""
    from django.test import Client
    from websockets.asyncio.client import connect

    from chat.models import Conversation

    conversation = Conversation.objects.create(user=user, model="mw-model")
    browser = Client()
    browser.force_login(user)
    session = browser.cookies["sessionid"].value

    async def ask() -> list[str]:
        frames: list[str] = []
        async with connect(
            f"ws://127.0.0.1:{worker.port}/ws/chat/{conversation.pk}/",
            origin=worker.url,
            additional_headers={"Cookie": f"sessionid={session}"},
            open_timeout=BOUND_SECONDS,
        ) as socket:
            await socket.send('{"message": "Hello?"}')
            for _ in range(100):
                frames.append(str(await asyncio.wait_for(socket.recv(), BOUND_SECONDS)))
                if "Answer complete" in frames[-1]:
                    break
        return frames

    return asyncio.run(ask())


@pytest.mark.django_db(transaction=True)
def test_redis_stopped_under_load(tmp_path, catalog, make_customer):
    """On this run's database (SQLite or PostgreSQL), with a Redis of the test's own."""
    redis_server = RedisServer(tmp_path / "redis.log")
    redis_server.start()
    customer = make_customer(
        credit_micro_usd=100_000_000, rpm_limit=1_000_000, tpm_limit=1_000_000_000
    )
    env = worker_env(tmp_path, redis_server.url, SETTLEMENT_JOURNAL_DIR=str(tmp_path / "journal"))
    worker = Worker(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        load = Load(worker.url, customer.secret)
        load.start()
        time.sleep(1.5)

        redis_server.stop()
        stopped = time.monotonic()
        unready = until_unready(worker.url, "cache")
        home = httpx.get(f"{worker.url}/", timeout=BOUND_SECONDS)
        chatted = web_chat(worker, customer.user)
        time.sleep(max(0.0, stopped + OUTAGE_SECONDS - time.monotonic()))
        redis_server.start()
        back = time.monotonic()
        recovered = until_recovered(load, back)
        time.sleep(1.0)
        answers = load.stop()
        ready_again = readyz(worker.url)
    finally:
        worker.stop()
        redis_server.stop()

    figures = check_answers(answers, outage=(stopped, back))
    assert all(r.seconds < 1 for r in unready), unready
    assert unready[-1].body["database"] == "ok"
    assert home.status_code == 200  # the site's pages need the database, not Redis
    assert "Answer complete" in chatted[-1]  # and so does the web chat
    assert ready_again.status == 200
    log = worker.log.read_text()
    assert_served_since(recovered, answers, log)
    assert outage_lines(log, "redis") == (1, 1), log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    ok_ids = [a.request_id for a in answers if a.status == 200]
    recorded = UsageRecord.objects.filter(request_id__in=ok_ids).count()
    figures |= {
        "recovered_s": round(recovered.started + recovered.seconds - back, 2),
        "records_lost": len(ok_ids) - recorded,
    }
    print(f"\nRedis stopped {OUTAGE_SECONDS:g} s under load: {figures}")
    assert recorded == len(ok_ids)


SETUP = """
from accounts.models import ApiKey, User
from billing.ledger import account_for, credit_account
from gateway.models import Model, Provider, Route

user = User.objects.create_user("outages@example.com", "pw-123-secret")
account = account_for(user)
credit_account(
    account=account,
    amount=100_000_000 - account.balance_micro_usd,
    kind="adjustment",
    idempotency_key="outages-credit",
    memo="outage test credit",
)
_, secret = ApiKey.objects.mint(
    user=user, name="outages", rpm_limit=1_000_000, tpm_limit=1_000_000_000
)
provider = Provider.objects.create(
    name="upstream", kind="openai", base_url=os.environ["UPSTREAM_URL"], timeout_seconds=5
)
model = Model.objects.create(
    id="mw-model", context_length=8_000, max_output_tokens=1_000, input_price=0,
    output_price=1_000_000,
)
Route.objects.create(model=model, provider=provider, upstream_model="mw-upstream")
print(secret)
"""


def manage(env: dict[str, str], *args: str) -> str:
    """manage.py with the worker's settings (DEBUG on: the test's SECRET_KEY is the
    development one, which production's system check refuses)."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**env, "DEBUG": "true"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def chat_socket_status(worker: Worker) -> int:
    """The HTTP status a chat websocket's handshake is refused with (101: accepted)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def open_socket() -> int:
        try:
            async with connect(
                f"ws://127.0.0.1:{worker.port}/ws/chat/1/",
                origin=worker.url,
                additional_headers={"Cookie": "sessionid=no-such-session"},
                open_timeout=BOUND_SECONDS,
            ):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    return asyncio.run(open_socket())


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    postgres = PostgresCluster("sboutages")
    try:
        postgres.create()
        postgres.start()
        postgres.psql("CREATE DATABASE switchboard")
        yield postgres
    finally:
        postgres.drop()


def unsettled(cluster: PostgresCluster, request_ids: list[str]) -> set[str]:
    with psycopg.connect(cluster.url("switchboard")) as db:
        rows = db.execute(
            "SELECT request_id FROM billing_usagerecord WHERE request_id = ANY(%s)",
            [request_ids],
        ).fetchall()
    return set(request_ids) - {row[0] for row in rows}


def assert_books_balance(cluster: PostgresCluster, ok_ids: list[str]) -> None:
    with psycopg.connect(cluster.url("switchboard")) as db:
        accounts = db.execute(
            "SELECT a.balance_micro_usd, a.held_micro_usd,"
            " (SELECT coalesce(sum(e.amount_micro_usd), 0) FROM billing_ledgerentry e"
            "  WHERE e.account_id = a.id),"
            " (SELECT coalesce(sum(h.amount_micro_usd), 0) FROM billing_hold h"
            "  WHERE h.account_id = a.id)"
            " FROM billing_account a"
        ).fetchall()
        held_for = {row[0] for row in db.execute("SELECT request_id FROM billing_hold").fetchall()}
    for balance, held, ledger, holds in accounts:
        assert ledger == balance
        assert held == holds
    # A call that answered 200 was settled; a hold can only be left by a refused one.
    assert held_for.isdisjoint(ok_ids)


def test_postgres_stopped_under_load(tmp_path, fake_upstream, cluster):
    redis_server = RedisServer(tmp_path / "redis.log")
    redis_server.start()
    journal = tmp_path / "journal"
    env = worker_env(
        tmp_path,
        redis_server.url,
        DATABASE_URL=cluster.url("switchboard"),
        SETTLEMENT_JOURNAL_DIR=str(journal),
    )
    manage(env, "migrate", "--noinput")
    secret = manage({**env, "UPSTREAM_URL": f"{fake_upstream.url}/v1"}, "shell", "-c", SETUP)
    worker = Worker(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        load = Load(worker.url, secret.strip().splitlines()[-1])
        load.start()
        time.sleep(1.5)

        cluster.stop()
        stopped = time.monotonic()
        unready = until_unready(worker.url, "database")
        page = httpx.get(f"{worker.url}/pricing/", timeout=BOUND_SECONDS)
        socket_refused = chat_socket_status(worker)
        time.sleep(max(0.0, stopped + OUTAGE_SECONDS - time.monotonic()))
        cluster.start()
        back = time.monotonic()
        recovered = until_recovered(load, back)
        time.sleep(1.0)
        answers = load.stop()
        ready_again = readyz(worker.url)
        ok_ids = [a.request_id for a in answers if a.status == 200 and a.request_id]
        deadline = time.monotonic() + 15  # the worker replays its journal every few seconds
        while (missing := unsettled(cluster, ok_ids)) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        worker.stop()
        redis_server.stop()
    if missing:
        manage(env, "sweepholds")  # replays what the worker left in the journal
    lost = unsettled(cluster, ok_ids)

    figures = check_answers(answers, outage=(stopped, back))
    assert all(r.seconds < 1 for r in unready), unready
    assert page.status_code == 503
    assert socket_refused == 403  # a chat socket is turned away, not broken mid-handshake
    assert "temporarily unavailable" in page.text
    assert int(page.headers["Retry-After"]) >= 1
    assert ready_again.status == 200
    log = worker.log.read_text()
    assert_served_since(recovered, answers, log)
    assert outage_lines(log, "database") == (1, 1), log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    figures |= {
        "recovered_s": round(recovered.started + recovered.seconds - back, 2),
        "replayed_by_sweepholds": len(missing),
        "records_lost": len(lost),
    }
    print(f"\nPostgreSQL stopped {OUTAGE_SECONDS:g} s under load: {figures}")
    assert lost == set()
    assert_books_balance(cluster, ok_ids)
    assert not list(journal.glob("*.jsonl"))
