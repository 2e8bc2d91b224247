"""`manage.py check --database default` proves the books, or fails.

Each proof fires on a row made inconsistent behind the ledger's back (a raw UPDATE),
stays quiet on books the workflows wrote, and a database the check cannot reach is an
error with a non-zero exit, never "no issues".
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import ERROR, WARNING
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db.models import F

from billing.checks import check_books
from billing.ledger import credit_account, reserve_credits, settle
from billing.models import Account, Hold, LedgerEntry
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
USAGE = {"model": "demo", "prompt_tokens": 3, "completion_tokens": 4, "status": "ok"}


def books() -> list[Any]:
    return check_books(databases=["default"])


def check_command(*args: str) -> str:
    out = io.StringIO()
    call_command("check", "--database", "default", *args, stdout=out, stderr=out)
    return out.getvalue()


@pytest.fixture
def busy(make_customer: Any) -> Any:
    """A customer with a settled request and one still in flight."""
    customer = make_customer()
    done = reserve_credits(account_id=customer.account.pk, amount=40_000, request_id="req_done")
    settle(reservation=done, cost=25_000, usage=USAGE)
    reserve_credits(account_id=customer.account.pk, amount=30_000, request_id="req_live")
    reserve_credits(account_id=customer.account.pk, amount=20_000, request_id="req_live_2")
    customer.account.refresh_from_db()
    assert customer.account.held_micro_usd == 50_000
    return customer


@pytest.mark.django_db
def test_books_the_workflows_wrote_pass_every_check(busy: Any, make_customer: Any) -> None:
    make_customer()

    assert books() == []
    assert "System check identified no issues" in check_command()


@pytest.mark.django_db
def test_a_balance_changed_without_a_ledger_entry_is_an_error(
    busy: Any, make_customer: Any
) -> None:
    honest = make_customer()
    Account.objects.filter(pk=busy.account.pk).update(balance_micro_usd=F("balance_micro_usd") + 1)

    (error,) = books()

    assert error.id == "billing.E001" and error.level == ERROR
    assert error.msg.startswith(f"Account {busy.account.pk}:")
    assert f"Account {honest.account.pk}:" not in error.msg
    with pytest.raises(SystemCheckError, match=r"billing\.E001"):
        check_command()


@pytest.mark.django_db
def test_held_credit_no_hold_explains_is_an_error(busy: Any, make_customer: Any) -> None:
    honest = make_customer()
    Account.objects.filter(pk=busy.account.pk).update(held_micro_usd=F("held_micro_usd") + 7)

    (error,) = books()

    assert error.id == "billing.E002" and error.level == ERROR
    assert error.msg.startswith(f"Account {busy.account.pk}:")
    assert "50007" in error.msg and "50000" in error.msg
    assert f"Account {honest.account.pk}:" not in error.msg
    with pytest.raises(SystemCheckError, match=r"billing\.E002"):
        check_command()


@pytest.mark.django_db
def test_a_hold_changed_behind_the_account_is_an_error(busy: Any) -> None:
    Hold.objects.filter(request_id="req_live").update(amount_micro_usd=1)

    assert [issue.id for issue in books()] == ["billing.E002"]


@pytest.mark.django_db
def test_credit_held_with_no_hold_at_all_is_an_error(make_customer: Any) -> None:
    idle = make_customer()
    Account.objects.filter(pk=idle.account.pk).update(held_micro_usd=5)

    (error,) = books()

    assert error.id == "billing.E002" and error.msg.startswith(f"Account {idle.account.pk}:")


@pytest.mark.django_db
def test_a_negative_balance_is_a_warning_that_can_be_made_to_fail(make_customer: Any) -> None:
    customer = make_customer(credit_micro_usd=1_000)
    credit_account(
        account=customer.account,
        amount=-5_000,
        kind=LedgerEntry.Kind.REFUND,
        idempotency_key="re_after_spending",
    )

    (warning,) = books()

    assert warning.id == "billing.W001" and warning.level == WARNING
    assert warning.msg.startswith(f"Account {customer.account.pk}:")
    assert "-4000" in warning.msg
    assert "billing.W001" in check_command()
    with pytest.raises(SystemCheckError, match=r"billing\.W001"):
        check_command("--fail-level", "WARNING")


@pytest.mark.django_db
def test_a_balance_pushed_below_zero_by_hand_fires_both_checks(customer: Any) -> None:
    Account.objects.filter(pk=customer.account.pk).update(balance_micro_usd=-1)

    assert sorted(issue.id for issue in books()) == ["billing.E001", "billing.W001"]


@pytest.mark.django_db
def test_checks_without_a_database_leave_it_alone(customer: Any) -> None:
    Account.objects.filter(pk=customer.account.pk).update(balance_micro_usd=-1, held_micro_usd=3)

    assert check_books(databases=None) == []
    assert check_books() == []


def manage(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "DB_POOL_TIMEOUT": "2"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def closed_port_url() -> str:
    return f"postgres://postgres@127.0.0.1:{free_port()}/switchboard?connect_timeout=2"


def test_an_unreachable_postgres_fails_the_check() -> None:
    result = manage("check", "--database", "default", database_url=closed_port_url())

    assert result.returncode != 0
    assert "billing.E003" in result.stderr
    assert "identified no issues" not in result.stdout + result.stderr


def test_a_check_without_database_does_not_wait_for_one() -> None:
    result = manage("check", database_url=closed_port_url())

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "Connection refused" not in result.stderr
