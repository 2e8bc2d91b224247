"""E-mail alerts (manage.py sendalerts): each sent once per crossing."""

from __future__ import annotations

from datetime import timedelta

from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from billing.alerts import send_alerts
from billing.ledger import credit_account
from billing.models import UsageRecord


def spend(customer, amount, key=None):
    """Usage that lowers the balance, as a settlement would (ledger and record)."""
    n = UsageRecord.objects.count()
    credit_account(
        account=customer.account,
        amount=-amount,
        kind="usage",
        idempotency_key=f"usage:test-{n}",
        memo="test usage",
    )
    UsageRecord.objects.create(
        request_id=f"req_spend_{n}",
        account=customer.account,
        api_key=key or customer.api_key,
        model="m",
        cost_micro_usd=amount,
    )


def test_a_new_account_gets_no_balance_alert(make_customer):
    make_customer(credit_micro_usd=1_000_000)

    assert send_alerts().balance == 0
    assert mail.outbox == []


def test_a_balance_alert_is_sent_once_per_crossing(customer):
    customer.account.alert_balance_below_micro_usd = 5_000_000
    customer.account.save()

    assert send_alerts().balance == 0  # $10 is above $5
    spend(customer, 6_000_000)
    assert send_alerts().balance == 1
    assert send_alerts().balance == 0  # still below: not again
    spend(customer, 1_000_000)
    assert send_alerts().balance == 0

    (message,) = mail.outbox
    assert message.to == [customer.user.email]
    assert "below $5.00" in message.subject
    assert "Your balance is $4.00" in message.body

    credit_account(
        account=customer.account, amount=3_000_000, kind="purchase", idempotency_key="buy-1"
    )
    assert send_alerts().balance == 0  # back above: re-armed, nothing sent
    spend(customer, 2_000_000)
    assert send_alerts().balance == 1
    assert len(mail.outbox) == 2


def test_a_key_at_its_spend_cap_is_alerted_once_per_period(make_customer):
    customer = make_customer(spend_cap_micro_usd=1_000_000, spend_cap_period="day")

    spend(customer, 400_000)
    assert send_alerts().spend_cap == 0
    spend(customer, 600_000)
    assert send_alerts().spend_cap == 1
    assert send_alerts().spend_cap == 0

    (message,) = mail.outbox
    assert "reached its spend cap" in message.subject
    assert "$1.00" in message.body
    tomorrow = timezone.now() + timedelta(days=1)
    assert send_alerts(now=tomorrow).spend_cap == 0  # a new day: nothing spent yet


def test_the_spend_cap_alert_can_be_turned_off(make_customer):
    customer = make_customer(spend_cap_micro_usd=1_000, spend_cap_period="total")
    customer.account.alert_spend_cap = False
    customer.account.save()
    spend(customer, 1_000)

    assert send_alerts().spend_cap == 0


def test_a_key_about_to_expire_is_alerted_once(make_customer):
    soon = timezone.now() + timedelta(days=3)
    customer = make_customer(expires_at=soon)
    make_customer(expires_at=timezone.now() + timedelta(days=30))  # outside the 7-day notice

    assert send_alerts().expiry == 1
    assert send_alerts().expiry == 0
    (message,) = mail.outbox
    assert "expires on" in message.subject
    assert customer.api_key.masked in message.body

    customer.api_key.expires_at = soon + timedelta(days=2)  # moved: a new expiry to warn of
    customer.api_key.save()
    assert send_alerts().expiry == 1


def test_expiry_alerts_follow_the_owners_notice(make_customer):
    customer = make_customer(expires_at=timezone.now() + timedelta(days=3))
    customer.account.alert_key_expiry_days = 2
    customer.account.save()

    assert send_alerts().expiry == 0
    customer.account.alert_key_expiry_days = 0
    customer.account.save()
    assert send_alerts(now=timezone.now() + timedelta(days=2)).expiry == 0


def test_a_mail_that_fails_is_tried_again_next_run(customer, monkeypatch):
    customer.account.alert_balance_below_micro_usd = 20_000_000
    customer.account.save()

    def refuse(*args, **kwargs):
        raise OSError("SMTP is down")

    monkeypatch.setattr("billing.alerts.send_mail", refuse)
    assert send_alerts().balance == 0
    monkeypatch.undo()
    assert send_alerts().balance == 1


def test_the_command_reports_what_it_sent(customer, capsys):
    customer.account.alert_balance_below_micro_usd = 20_000_000
    customer.account.save()

    call_command("sendalerts")

    assert "Sent 1 balance, 0 spend-cap and 0 key-expiry alerts." in capsys.readouterr().out
    assert len(mail.outbox) == 1


def test_revoked_and_web_keys_are_never_alerted(make_customer):
    from accounts.models import ApiKey

    customer = make_customer(expires_at=timezone.now() + timedelta(days=1))
    customer.api_key.revoke()
    ApiKey.objects.mint(
        user=customer.user, name="Web chat", kind="web", expires_at=customer.api_key.expires_at
    )

    assert send_alerts().expiry == 0
