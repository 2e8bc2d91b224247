"""The settlement journal: a database outage never loses a settlement.

settle_or_journal() retries a settlement the database refused on a fresh connection;
when the database stays away it appends the settlement to a local journal, and
replay_journal() (workers, sweepholds) writes it once the database is back, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import OperationalError, connection, connections
from django.utils import timezone

from billing import journal
from billing.journal import replay_journal, schedule_replay, settle_or_journal
from billing.ledger import Reservation, keep_hold, reserve_credits
from billing.models import Account, Hold, LedgerEntry, UsageRecord
from gateway import outages

pytestmark = pytest.mark.django_db(transaction=True)

USAGE = {"model": "demo", "prompt_tokens": 10, "completion_tokens": 20, "status": "ok"}


@pytest.fixture(autouse=True)
def journal_dir(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty journal directory (created on demand), and retries without the waits."""
    settings.SETTLEMENT_JOURNAL_DIR = tmp_path / "var" / "settlements"
    monkeypatch.setattr(journal, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    return settings.SETTLEMENT_JOURNAL_DIR


def journaled(directory: Path) -> list[dict[str, Any]]:
    if not directory.exists():
        return []
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def pending(directory: Path) -> bool:
    """Whether any journal file has content (read without parsing: a writer may be busy)."""
    return any(path.stat().st_size for path in directory.glob("*.jsonl"))


def balanced(account_id: int) -> Account:
    account = Account.objects.get(pk=account_id)
    assert account.ledger_sum() == account.balance_micro_usd
    assert account.held_micro_usd == sum(
        Hold.objects.filter(account_id=account_id).values_list("amount_micro_usd", flat=True)
    )
    return account


def reserve(customer: Any, amount: int, request_id: str) -> Reservation:
    return reserve_credits(
        account_id=customer.account.pk,
        amount=amount,
        request_id=request_id,
        api_key=customer.api_key,
    )


class Outage:
    """The database refuses every statement on this thread's connection, as a server that
    went away does, for the first `statements` ones (all of them by default)."""

    def __init__(self, statements: int | None = None) -> None:
        self.left = statements
        self.refused = 0

    def __call__(self, execute: Any, sql: str, *args: Any) -> Any:
        if self.left is None or self.left > 0:
            if self.left is not None:
                self.left -= 1
            self.refused += 1
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, *args)


@contextlib.contextmanager
def outage(statements: int | None = None) -> Iterator[Outage]:
    refusing = Outage(statements)
    with connection.execute_wrapper(refusing):
        yield refusing


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def unreachable_database() -> Iterator[None]:
    """Point this thread's connection at a database that is not there: a SQLite file in a
    missing directory, a PostgreSQL port nothing listens on (the pool's wait cut short)."""
    saved = {key: connection.settings_dict.get(key) for key in ("NAME", "PORT", "OPTIONS")}
    postgres = connection.vendor == "postgresql"
    connection.close()
    if postgres:
        connection.close_pool()
        connection.settings_dict["PORT"] = str(closed_port())
        options = dict(saved["OPTIONS"] or {})
        options["pool"] = {**options["pool"], "timeout": 0.3}
        connection.settings_dict["OPTIONS"] = options
    else:
        connection.settings_dict["NAME"] = "/nonexistent/switchboard/db.sqlite3"
    try:
        yield
    finally:
        connection.close()
        if postgres:
            connection.close_pool()
        connection.settings_dict.update(saved)
        # The process noticed the outage (gateway.outages): let its probe see it end.
        deadline = time.monotonic() + 5
        while not outages.admit(outages.DATABASE):
            assert time.monotonic() < deadline, "the database never came back"
            time.sleep(0.05)


# --- settle_or_journal ------------------------------------------------------------------


def test_a_settlement_is_written_at_once_when_the_database_answers(
    customer: Any, journal_dir: Path
) -> None:
    start = customer.account.balance_micro_usd

    record = settle_or_journal(
        reservation=reserve(customer, 900, "req_fine"), cost=400, usage=USAGE
    )

    assert record is not None and record.cost_micro_usd == 400
    assert balanced(customer.account.pk).balance_micro_usd == start - 400
    assert journaled(journal_dir) == []


def test_a_settlement_the_database_refused_twice_is_retried_and_charged_once(
    customer: Any, journal_dir: Path
) -> None:
    start = customer.account.balance_micro_usd
    reservation = reserve(customer, 900, "req_flaky")

    with outage(statements=2) as refusing:
        record = settle_or_journal(reservation=reservation, cost=400, usage=USAGE)

    assert refusing.refused == 2
    assert record is not None and record.cost_micro_usd == 400
    assert balanced(customer.account.pk).balance_micro_usd == start - 400
    assert journaled(journal_dir) == []


def test_the_retries_wait_a_little_longer_each_time_and_then_give_up(
    customer: Any, journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(journal, "RETRY_DELAYS", (0.1, 0.3, 0.9))
    monkeypatch.setattr(journal.time, "sleep", waits.append)
    reservation = reserve(customer, 900, "req_waits")

    with outage() as refusing:
        assert settle_or_journal(reservation=reservation, cost=400, usage=USAGE) is None

    assert waits == [0.1, 0.3, 0.9]
    assert refusing.refused == 4
    assert len(journaled(journal_dir)) == 1


def test_a_settlement_during_an_outage_is_journaled_then_replayed_once(
    customer: Any, journal_dir: Path
) -> None:
    start = customer.account.balance_micro_usd
    reservation = reserve(customer, 900, "req_outage")
    usage = {**USAGE, "stream": True, "ttft_ms": 12, "flags": "usage_replaced"}
    before = timezone.now()

    with outage():
        assert settle_or_journal(reservation=reservation, cost=400, usage=usage) is None

    (line,) = journaled(journal_dir)
    assert line["reservation"] == {
        "account_id": customer.account.pk,
        "api_key_id": customer.api_key.pk,
        "request_id": "req_outage",
        "amount": 900,
    }
    assert (line["cost"], line["usage"]) == (400, usage)
    assert not UsageRecord.objects.filter(request_id="req_outage").exists()

    assert replay_journal() == 1
    assert replay_journal() == 0

    record = UsageRecord.objects.get(request_id="req_outage")
    assert (record.cost_micro_usd, record.stream, record.ttft_ms) == (400, True, 12)
    assert record.flags == "usage_replaced"
    assert before <= record.created_at <= timezone.now()
    assert LedgerEntry.objects.filter(idempotency_key="usage:req_outage").count() == 1
    account = balanced(customer.account.pk)
    assert (account.balance_micro_usd, account.held_micro_usd) == (start - 400, 0)
    assert journaled(journal_dir) == [] and list(journal_dir.iterdir()) == []


def test_a_settlement_while_the_database_is_unreachable_is_journaled_and_replayed(
    customer: Any, journal_dir: Path
) -> None:
    start = customer.account.balance_micro_usd
    reservation = reserve(customer, 900, "req_unreachable")

    with unreachable_database():
        assert settle_or_journal(reservation=reservation, cost=400, usage=USAGE) is None

    assert [line["reservation"]["request_id"] for line in journaled(journal_dir)] == [
        "req_unreachable"
    ]
    assert replay_journal() == 1
    assert replay_journal() == 0
    assert balanced(customer.account.pk).balance_micro_usd == start - 400
    assert UsageRecord.objects.filter(request_id="req_unreachable").count() == 1


def test_a_journaled_settlement_already_written_meanwhile_is_not_charged_again(
    customer: Any, journal_dir: Path
) -> None:
    start = customer.account.balance_micro_usd
    reservation = reserve(customer, 900, "req_both")
    with outage():
        settle_or_journal(reservation=reservation, cost=400, usage=USAGE)
    settle_or_journal(reservation=reservation, cost=400, usage=USAGE)

    assert replay_journal() == 1

    assert balanced(customer.account.pk).balance_micro_usd == start - 400
    assert UsageRecord.objects.filter(request_id="req_both").count() == 1


def test_a_settlement_refused_as_bad_input_is_raised_not_journaled(
    customer: Any, journal_dir: Path
) -> None:
    reservation = reserve(customer, 900, "req_bad_input")

    with pytest.raises(ValueError, match="cost"):
        settle_or_journal(reservation=reservation, cost=-1, usage=USAGE)

    assert journaled(journal_dir) == []
    assert Hold.objects.filter(request_id="req_bad_input").exists()


# --- replay_journal -----------------------------------------------------------------


def test_the_replay_settles_the_journals_of_every_process_and_removes_them(
    customer: Any, journal_dir: Path
) -> None:
    start = customer.account.balance_micro_usd
    reservations = [reserve(customer, 500, f"req_proc_{n}") for n in range(3)]
    with outage():
        for reservation in reservations:
            settle_or_journal(reservation=reservation, cost=100, usage=USAGE)
    (mine,) = journal_dir.glob("*.jsonl")
    lines = mine.read_text().splitlines()
    mine.write_text(lines[0] + "\n")
    (journal_dir / "other-host-4242.jsonl").write_text("\n".join(lines[1:]) + "\n")

    assert replay_journal() == 3

    assert list(journal_dir.iterdir()) == []
    assert balanced(customer.account.pk).balance_micro_usd == start - 300


def test_a_line_that_fails_for_another_reason_is_kept_and_logged(
    customer: Any, journal_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start = customer.account.balance_micro_usd
    good, bad = reserve(customer, 500, "req_good"), reserve(customer, 500, "req_bad")
    with outage():
        settle_or_journal(reservation=bad, cost=100, usage=USAGE)
        settle_or_journal(reservation=good, cost=100, usage=USAGE)
    (path,) = journal_dir.glob("*.jsonl")
    first, second = path.read_text().splitlines()
    # A line of another version of the code, with a field this one does not know.
    path.write_text(first.replace('"status":"ok"', '"status":"ok","no_such_field":1') + "\n")
    with path.open("a") as file:
        file.write(second + "\n")
    caplog.set_level(logging.ERROR, logger="billing.journal")

    assert replay_journal() == 1
    assert replay_journal() == 0

    assert [line["reservation"]["request_id"] for line in journaled(journal_dir)] == ["req_bad"]
    assert "req_bad" in caplog.text
    assert balanced(customer.account.pk).balance_micro_usd == start - 100


def test_a_torn_last_line_is_kept_and_the_rest_replayed(customer: Any, journal_dir: Path) -> None:
    reservation = reserve(customer, 500, "req_whole")
    with outage():
        settle_or_journal(reservation=reservation, cost=100, usage=USAGE)
    (path,) = journal_dir.glob("*.jsonl")
    with path.open("a") as file:
        file.write('{"reservation": {"account_id"')

    assert replay_journal() == 1

    assert path.read_text() == '{"reservation": {"account_id"\n'
    assert UsageRecord.objects.filter(request_id="req_whole").exists()


def test_a_replay_that_meets_the_outage_keeps_every_line_it_did_not_write(
    customer: Any, journal_dir: Path
) -> None:
    reservations = [reserve(customer, 500, f"req_w{n}") for n in range(3)]
    with outage():
        for reservation in reservations:
            settle_or_journal(reservation=reservation, cost=1, usage=USAGE)

        assert replay_journal() == 0

    assert len(journaled(journal_dir)) == 3
    assert replay_journal() == 3
    assert journaled(journal_dir) == []


def test_replayers_and_a_writer_at_once_never_lose_or_double_a_settlement(
    make_customer: Any, journal_dir: Path
) -> None:
    customer = make_customer(credit_micro_usd=1_000_000)
    start = customer.account.balance_micro_usd
    reservations = [reserve(customer, 500, f"req_busy_{n}") for n in range(40)]
    writing = threading.Event()
    writing.set()
    replayed: list[int] = []

    def write() -> None:
        try:
            with connection.execute_wrapper(Outage()):
                for reservation in reservations:
                    settle_or_journal(reservation=reservation, cost=100, usage=USAGE)
        finally:
            writing.clear()
            connections.close_all()

    def replay() -> None:
        try:
            for _ in range(2_000):
                replayed.append(replay_journal())
                if not writing.is_set() and not pending(journal_dir):
                    return
                threading.Event().wait(0.005)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write)] + [threading.Thread(target=replay) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert journaled(journal_dir) == []
    assert sum(replayed) == 40
    assert UsageRecord.objects.filter(account_id=customer.account.pk).count() == 40
    account = balanced(customer.account.pk)
    assert (account.balance_micro_usd, account.held_micro_usd) == (start - 4_000, 0)


# --- schedule_replay and the sweeper ----------------------------------------------------


async def test_schedule_replay_writes_the_journal_once_the_database_is_back(
    customer: Any, journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "REPLAY_INTERVAL_SECONDS", 0.05)
    reservation = await sync_to_async(reserve)(customer, 900, "req_later")

    def settle_in_an_outage() -> Any:
        with outage():
            return settle_or_journal(reservation=reservation, cost=400, usage=USAGE)

    assert await sync_to_async(settle_in_an_outage)() is None
    schedule_replay()
    schedule_replay()
    replayers = [t for t in asyncio.all_tasks() if t.get_name() == journal.REPLAY_TASK_NAME]
    assert len(replayers) == 1

    await asyncio.wait_for(replayers[0], timeout=10)

    record = await UsageRecord.objects.aget(request_id="req_later")
    assert record.cost_micro_usd == 400
    assert journaled(journal_dir) == []
    assert (await sync_to_async(balanced)(customer.account.pk)).held_micro_usd == 0


async def test_the_scheduled_replay_keeps_trying_while_the_database_is_away(
    customer: Any, journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "REPLAY_INTERVAL_SECONDS", 0.05)
    reservation = await sync_to_async(reserve)(customer, 900, "req_much_later")

    def settle_in_an_outage() -> Any:
        with outage():
            return settle_or_journal(reservation=reservation, cost=400, usage=USAGE)

    await sync_to_async(settle_in_an_outage)()
    away = unreachable_database()
    await sync_to_async(away.__enter__, thread_sensitive=True)()
    try:
        schedule_replay()
        (replayer,) = [t for t in asyncio.all_tasks() if t.get_name() == journal.REPLAY_TASK_NAME]
        await asyncio.sleep(1)
        assert not replayer.done()
        assert len(journaled(journal_dir)) == 1
    finally:
        await sync_to_async(away.__exit__, thread_sensitive=True)(None, None, None)

    await asyncio.wait_for(replayer, timeout=10)

    assert await UsageRecord.objects.filter(request_id="req_much_later").aexists()
    assert journaled(journal_dir) == []


def test_sweepholds_writes_the_journal_before_it_takes_a_hold_for_interrupted(
    customer: Any, journal_dir: Path
) -> None:
    start = customer.account.balance_micro_usd
    reservation = reserve(customer, 900, "req_finished_in_outage")
    keep_hold(request_id="req_finished_in_outage", cost=100, usage=USAGE)
    with outage():
        settle_or_journal(reservation=reservation, cost=400, usage=USAGE)
    Hold.objects.update(expires_at=timezone.now())
    out = io.StringIO()

    call_command("sweepholds", stdout=out)

    assert "Replayed 1 journaled settlement." in out.getvalue()
    assert "Settled 0 interrupted requests, released 0 expired holds." in out.getvalue()
    record = UsageRecord.objects.get(request_id="req_finished_in_outage")
    assert (record.status, record.cost_micro_usd, record.flags) == ("ok", 400, "")
    assert balanced(customer.account.pk).balance_micro_usd == start - 400
