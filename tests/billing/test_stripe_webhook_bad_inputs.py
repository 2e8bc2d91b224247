"""POST /billing/stripe/webhook refuses what it cannot act on: a 400 with a plain-text
reason, a log line, and nothing credited, debited or recorded.

The events below carry a valid signature: Stripe signs what it sends, so a malformed
payload is a bug or a replayed secret, and either way no credit may come of it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
import stripe
from django.test import Client

from billing.models import CreditPackage, Purchase
from billing.views import log as webhook_log
from tests.billing.fake_stripe import WEBHOOK_SECRET, event
from tests.books import money_snapshot

pytestmark = pytest.mark.django_db

URL = "/billing/stripe/webhook"
SESSION = {
    "id": "cs_bad_inputs",
    "object": "checkout.session",
    "payment_status": "paid",
    "payment_intent": "pi_bad_inputs",
}
CHARGE = {"id": "ch_1", "object": "charge", "amount": 500, "amount_refunded": 500}
CHARGE["payment_intent"] = "pi_paid"
COMPLETED = event("checkout.session.completed", SESSION, event_id="evt_bad")
REFUNDED = event("charge.refunded", CHARGE, event_id="evt_refund")


def changed(base: dict[str, Any], **fields: Any) -> dict[str, Any]:
    result = dict(base)
    for name, value in fields.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def completed(**session: Any) -> dict[str, Any]:
    return {**COMPLETED, "data": {"object": changed(SESSION, **session)}}


def refunded(**charge: Any) -> dict[str, Any]:
    return {**REFUNDED, "data": {"object": changed(CHARGE, **charge)}}


# (id, the signed payload: a JSON-able value or raw text)
MALFORMED: list[tuple[str, Any]] = [
    ("array", [COMPLETED]),
    ("empty-array", []),
    ("string", "checkout.session.completed"),
    ("number", 42),
    ("null", None),
    ("true", True),
    ("empty-object", {}),
    ("no-type", changed(COMPLETED, type=None)),
    ("type-a-number", {**COMPLETED, "type": 5}),
    ("type-a-list", {**COMPLETED, "type": ["checkout.session.completed"]}),
    ("type-an-object", {**COMPLETED, "type": {"name": "checkout.session.completed"}}),
    ("no-id", changed(COMPLETED, id=None)),
    ("id-a-number", {**COMPLETED, "id": 7}),
    ("id-empty", {**COMPLETED, "id": ""}),
    ("id-with-nul", {**COMPLETED, "id": "evt_\x00"}),
    ("id-with-newline", {**COMPLETED, "id": "evt_1\nevt_2"}),
    ("no-data", changed(COMPLETED, data=None)),
    ("data-a-string", {**COMPLETED, "data": "cs_bad_inputs"}),
    ("data-null", {**COMPLETED, "data": None}),
    ("data-a-list", {**COMPLETED, "data": [SESSION]}),
    ("data-without-object", {**COMPLETED, "data": {}}),
    ("object-a-string", {**COMPLETED, "data": {"object": "cs_bad_inputs"}}),
    ("object-a-list", {**COMPLETED, "data": {"object": [SESSION]}}),
    ("object-null", {**COMPLETED, "data": {"object": None}}),
    ("unknown-type-without-data", {"id": "evt_x", "type": "customer.created"}),
    ("session-without-id", completed(id=None)),
    ("session-id-a-number", completed(id=12)),
    ("session-id-with-nul", completed(id="cs_bad_inputs\x00")),
    ("session-id-empty", completed(id="")),
    ("session-metadata-a-string", completed(metadata="account_id=1")),
    ("session-metadata-a-list", completed(metadata=["1"])),
    ("session-payment-intent-a-number", completed(payment_intent=5)),
    ("charge-amount-a-string", refunded(amount="500")),
    ("charge-amount-a-float", refunded(amount=500.5)),
    ("charge-amount-negative", refunded(amount=-500)),
    ("charge-amount-true", refunded(amount=True)),
    ("charge-refunded-a-string", refunded(amount_refunded="all")),
    ("charge-refunded-negative", refunded(amount_refunded=-1)),
    ("charge-payment-intent-an-object", refunded(payment_intent={"id": "pi_paid"})),
    ("charge-payment-intent-with-nul", refunded(payment_intent="pi_paid\x00")),
    ("not-json", "{nope"),
    ("nan", '{"id": "evt_n", "type": "charge.refunded", "data": {"object": {"amount": NaN}}}'),
    ("deeply-nested", "[" * 100_000 + "]" * 100_000),
]


def sign(body: str, secret: str = WEBHOOK_SECRET) -> str:
    return stripe.WebhookSignature.generate_signature_header(body, secret)


@pytest.fixture
def books(settings: Any, customer: Any) -> Any:
    """A pending purchase and a paid one, the webhook secret set; afterwards nothing moved."""
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    package = CreditPackage.objects.create(
        slug="bad-inputs", name="Bad inputs", price_micro_usd=5_000_000, credit_micro_usd=5_000_000
    )
    for session, intent, status in [
        (SESSION["id"], "", Purchase.Status.PENDING),
        ("cs_paid", "pi_paid", Purchase.Status.PAID),
    ]:
        Purchase.objects.create(
            account=customer.account,
            package=package,
            stripe_session_id=session,
            payment_intent_id=intent,
            price_micro_usd=5_000_000,
            credit_micro_usd=5_000_000,
            status=status,
        )
    before = money_snapshot()
    yield
    assert money_snapshot() == before


def post(client: Client, body: str, signature: str | None) -> Any:
    headers = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
    return client.post(URL, data=body, content_type="application/json", **headers)


def assert_refused(response: Any) -> str:
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/")
    text = response.content.decode()
    assert text.strip()
    return text


@pytest.mark.parametrize("payload", [pytest.param(p, id=n) for n, p in MALFORMED])
def test_a_signed_but_malformed_event_is_refused_and_logged(
    client: Client, books: None, payload: Any, caplog: pytest.LogCaptureFixture
) -> None:
    body = payload if isinstance(payload, str) and payload[:1] in "{[" else json.dumps(payload)
    with caplog.at_level(logging.WARNING, logger=webhook_log.name):
        response = post(client, body, sign(body))
    assert_refused(response)
    assert [r for r in caplog.records if r.name == webhook_log.name]


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("t=1,v1=00", id="wrong"),
        pytest.param("v1=abc", id="no-timestamp"),
        pytest.param("garbage", id="garbage"),
        pytest.param("t=1," * 1_000, id="long"),
    ],
)
def test_an_unsigned_event_is_refused(client: Client, books: None, signature: str | None) -> None:
    body = json.dumps(COMPLETED)
    assert_refused(post(client, body, signature))


def test_an_event_signed_with_another_secret_is_refused(client: Client, books: None) -> None:
    body = json.dumps(COMPLETED)
    assert_refused(post(client, body, sign(body, "whsec_someone_else")))


def test_a_replay_of_an_old_signed_event_is_refused(client: Client, books: None) -> None:
    body = json.dumps(COMPLETED)
    an_hour_ago = int(time.time()) - 3_600
    signature = stripe.WebhookSignature.generate_signature_header(
        body, WEBHOOK_SECRET, timestamp=an_hour_ago
    )
    assert_refused(post(client, body, signature))


def test_the_well_formed_event_the_table_spoils_is_credited(client: Client, customer: Any) -> None:
    from django.conf import settings

    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    package = CreditPackage.objects.create(
        slug="good", name="Good", price_micro_usd=5_000_000, credit_micro_usd=5_000_000
    )
    Purchase.objects.create(
        account=customer.account,
        package=package,
        stripe_session_id=SESSION["id"],
        price_micro_usd=5_000_000,
        credit_micro_usd=5_000_000,
    )
    body = json.dumps(COMPLETED)
    response = post(client, body, sign(body))
    assert response.status_code == 200
    assert response.json()["outcome"] == "credited"
