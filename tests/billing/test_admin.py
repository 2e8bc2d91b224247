"""The books in the admin: a staff superuser can read every money row and change none.

Ledger entries, holds, usage records, purchases and Stripe events are written only by
the billing workflows; the admin lists them and opens them read-only, and refuses (403)
every add, change and delete, the bulk delete action included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.db.models import Model
from django.forms.models import model_to_dict
from django.test import Client

from billing.ledger import reserve_credits, settle
from billing.models import Hold, Purchase, StripeEvent

pytestmark = pytest.mark.django_db

USAGE = {"model": "demo", "prompt_tokens": 3, "completion_tokens": 4, "status": "ok"}


def a_ledger_entry(customer: Any) -> Model:
    return customer.account.entries.first()


def a_hold(customer: Any) -> Model:
    reserve_credits(account_id=customer.account.pk, amount=40_000, request_id="req_held")
    return Hold.objects.get(request_id="req_held")


def a_usage_record(customer: Any) -> Model:
    held = reserve_credits(account_id=customer.account.pk, amount=40_000, request_id="req_done")
    return settle(reservation=held, cost=25_000, usage=USAGE)


def a_purchase(customer: Any) -> Model:
    return Purchase.objects.create(
        account=customer.account,
        stripe_session_id="cs_test_admin",
        price_micro_usd=5_000_000,
        credit_micro_usd=5_000_000,
        status=Purchase.Status.PAID,
    )


def a_stripe_event(customer: Any) -> Model:
    return StripeEvent.objects.create(
        event_id="evt_admin", type="checkout.session.completed", outcome="credited"
    )


# Each money row, made the way the billing workflows make it, and the change an operator
# might try to make to it.
BOOKS: dict[str, tuple[Callable[[Any], Model], dict[str, Any]]] = {
    "ledgerentry": (a_ledger_entry, {"amount_micro_usd": 99_000_000, "memo": "tampered"}),
    "hold": (a_hold, {"amount_micro_usd": 1}),
    "usagerecord": (a_usage_record, {"cost_micro_usd": 0, "status": "error"}),
    "purchase": (a_purchase, {"credit_micro_usd": 99_000_000, "status": "pending"}),
    "stripeevent": (a_stripe_event, {"outcome": "tampered"}),
}


@pytest.fixture(params=sorted(BOOKS))
def book(request: pytest.FixtureRequest, customer: Any) -> tuple[str, Model, dict[str, Any]]:
    make, tampering = BOOKS[request.param]
    return request.param, make(customer), tampering


def snapshot(row: Model) -> dict[str, Any]:
    return model_to_dict(type(row).objects.get(pk=row.pk))


def form_data(row: Model, tampering: dict[str, Any]) -> dict[str, Any]:
    fields = {name: "" if value is None else value for name, value in model_to_dict(row).items()}
    return {**fields, **tampering, "_save": "Save"}


def test_the_change_form_opens_read_only(admin_client: Client, book: Any) -> None:
    name, row, _ = book

    response = admin_client.get(f"/admin/billing/{name}/{row.pk}/change/")

    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert response.context["title"].startswith("View ")
    content = response.content.decode()
    assert 'name="_save"' not in content
    assert 'name="_continue"' not in content
    assert "deletelink" not in content


def test_the_list_shows_the_row_without_add_or_delete(admin_client: Client, book: Any) -> None:
    name, row, _ = book

    response = admin_client.get(f"/admin/billing/{name}/")

    assert response.status_code == 200
    assert f"/admin/billing/{name}/{row.pk}/change/" in response.content.decode()
    assert response.context["has_add_permission"] is False
    model_admin = admin.site.get_model_admin(type(row))
    assert "delete_selected" not in model_admin.get_actions(response.wsgi_request)
    assert "delete_selected" not in response.content.decode()


def test_posting_a_change_is_refused_and_the_row_is_unchanged(
    admin_client: Client, book: Any
) -> None:
    name, row, tampering = book
    before = snapshot(row)

    response = admin_client.post(
        f"/admin/billing/{name}/{row.pk}/change/", form_data(row, tampering)
    )

    assert response.status_code == 403
    assert snapshot(row) == before


def test_deleting_is_refused_and_the_row_stays(admin_client: Client, book: Any) -> None:
    name, row, _ = book
    before = snapshot(row)

    assert admin_client.get(f"/admin/billing/{name}/{row.pk}/delete/").status_code == 403
    response = admin_client.post(f"/admin/billing/{name}/{row.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert snapshot(row) == before


def test_the_bulk_delete_action_does_not_exist(admin_client: Client, book: Any) -> None:
    name, row, _ = book
    before = snapshot(row)

    response = admin_client.post(
        f"/admin/billing/{name}/",
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )

    assert response.status_code in (200, 302)
    assert snapshot(row) == before
    assert type(row).objects.filter(pk=row.pk).exists()


def test_adding_is_refused(admin_client: Client, book: Any) -> None:
    name, _, _ = book

    assert admin_client.get(f"/admin/billing/{name}/add/").status_code == 403
    assert admin_client.post(f"/admin/billing/{name}/add/", {}).status_code == 403


def test_the_account_page_shows_its_ledger_read_only(admin_client: Client, customer: Any) -> None:
    entry = customer.account.entries.first()

    response = admin_client.get(f"/admin/billing/account/{customer.account.pk}/change/")

    assert response.status_code == 200
    (ledger,) = response.context["inline_admin_formsets"]
    assert ledger.has_add_permission is False
    assert ledger.has_change_permission is False
    assert ledger.has_delete_permission is False
    assert entry.memo in response.content.decode()


def test_saving_an_account_leaves_its_ledger_alone(admin_client: Client, customer: Any) -> None:
    account = customer.account
    entry = account.entries.first()
    before = [model_to_dict(row) for row in account.entries.all()]

    response = admin_client.post(
        f"/admin/billing/account/{account.pk}/change/",
        {
            "unlimited": "on",
            "entries-TOTAL_FORMS": 2,
            "entries-INITIAL_FORMS": 1,
            "entries-0-id": entry.pk,
            "entries-0-account": account.pk,
            "entries-0-amount_micro_usd": 99_000_000,
            "entries-0-DELETE": "on",
            "entries-1-account": account.pk,
            "entries-1-kind": "grant",
            "entries-1-amount_micro_usd": 99_000_000,
            "entries-1-idempotency_key": "forged",
        },
    )

    assert response.status_code == 302
    account.refresh_from_db()
    assert account.unlimited is True
    assert [model_to_dict(row) for row in account.entries.all()] == before
    assert account.balance_micro_usd == account.ledger_sum()
