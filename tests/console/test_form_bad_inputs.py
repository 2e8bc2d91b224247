"""The console's forms and object pages refuse bad input and move no money.

A full-page form answers 400 with the page again and the problem named next to the
field (`aria-invalid`, an error list); a path naming an object the user cannot see is
a 404; nothing is minted, closed, bought or credited.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiKey, User
from billing.models import RedemptionCode
from chat.models import Conversation
from tests.books import money_snapshot

pytestmark = pytest.mark.django_db

KEY = {"name": "laptop", "spend_cap_period": "month"}


def key_form(**changes: Any) -> dict[str, Any]:
    return {**KEY, **changes}


# (id, POST data for /account/keys/new/, the field named in the error)
BAD_KEY_FORMS: list[tuple[str, dict[str, Any], str]] = [
    ("name-missing", {"spend_cap_period": "month"}, "name"),
    ("name-blank", key_form(name="   "), "name"),
    ("name-too-long", key_form(name="k" * 101), "name"),
    ("name-with-nul", key_form(name="lap\x00top"), "name"),
    ("expires-words", key_form(expires_on="tomorrow"), "expires_on"),
    ("expires-month-13", key_form(expires_on="2030-13-01"), "expires_on"),
    ("expires-february-30", key_form(expires_on="2030-02-30"), "expires_on"),
    ("expires-in-the-past", key_form(expires_on="2020-01-01"), "expires_on"),
    ("expires-the-last-day", key_form(expires_on="9999-12-31"), "expires_on"),
    ("expires-year-10000", key_form(expires_on="10000-01-01"), "expires_on"),
    ("expires-sql", key_form(expires_on="' OR 1=1 --"), "expires_on"),
    ("rpm-zero", key_form(rpm_limit="0"), "rpm_limit"),
    ("rpm-negative", key_form(rpm_limit="-1"), "rpm_limit"),
    ("rpm-words", key_form(rpm_limit="many"), "rpm_limit"),
    ("rpm-fraction", key_form(rpm_limit="1.5"), "rpm_limit"),
    ("rpm-2-to-the-31", key_form(rpm_limit=str(2**31)), "rpm_limit"),
    ("rpm-beyond-int64", key_form(rpm_limit="9" * 20), "rpm_limit"),
    ("rpm-exponent", key_form(rpm_limit="1e3"), "rpm_limit"),
    ("tpm-zero", key_form(tpm_limit="0"), "tpm_limit"),
    ("tpm-2-to-the-31", key_form(tpm_limit=str(2**31)), "tpm_limit"),
    ("tpm-2-to-the-40", key_form(tpm_limit=str(2**40)), "tpm_limit"),
    ("tpm-words", key_form(tpm_limit="lots"), "tpm_limit"),
    ("cap-negative", key_form(spend_cap_usd="-1"), "spend_cap_usd"),
    ("cap-words", key_form(spend_cap_usd="ten"), "spend_cap_usd"),
    ("cap-huge", key_form(spend_cap_usd="1e400"), "spend_cap_usd"),
    ("cap-nan", key_form(spend_cap_usd="NaN"), "spend_cap_usd"),
    ("cap-infinity", key_form(spend_cap_usd="Infinity"), "spend_cap_usd"),
    ("cap-sub-cent", key_form(spend_cap_usd="0.001"), "spend_cap_usd"),
    ("cap-too-many-digits", key_form(spend_cap_usd="12345678901234"), "spend_cap_usd"),
    ("period-unknown", key_form(spend_cap_period="year"), "spend_cap_period"),
    ("model-unknown", key_form(allowed_models=["no-such-model"]), "allowed_models"),
]

# (id, POST data for /chat/new/)
BAD_CONVERSATIONS: list[tuple[str, dict[str, Any]]] = [
    ("model-missing", {}),
    ("model-empty", {"model": ""}),
    ("model-unknown", {"model": "no-such-model"}),
    ("model-with-nul", {"model": "demo\x00"}),
    ("model-huge", {"model": "m" * 10_000}),
]

# (id, POST data for /account/delete/)
BAD_CLOSURES: list[tuple[str, dict[str, Any]]] = [
    ("confirm-missing", {}),
    ("confirm-empty", {"confirm": ""}),
    ("confirm-someone-else", {"confirm": "someone@example.com"}),
    ("confirm-nul", {"confirm": "forms-bad-inputs@example.com\x00"}),
]

# (id, method, path): each a 404 page.
MISSING_OBJECTS: list[tuple[str, str, str]] = [
    ("conversation-zero", "get", "/chat/0/"),
    ("conversation-negative", "get", "/chat/-1/"),
    ("conversation-beyond-int64", "get", "/chat/99999999999999999999/"),
    ("conversation-someone-elses", "get", "/chat/{other_conversation}/"),
    ("delete-conversation-beyond-int64", "post", "/chat/99999999999999999999/delete/"),
    ("delete-someone-elses-conversation", "post", "/chat/{other_conversation}/delete/"),
    ("rename-someone-elses-conversation", "post", "/chat/{other_conversation}/rename/"),
    ("rename-conversation-beyond-int64", "post", "/chat/99999999999999999999/rename/"),
    ("settings-of-someone-elses-conversation", "post", "/chat/{other_conversation}/settings/"),
    ("settings-conversation-zero", "post", "/chat/0/settings/"),
    ("revoke-key-zero", "post", "/account/keys/0/revoke/"),
    ("revoke-key-beyond-int64", "post", "/account/keys/99999999999999999999/revoke/"),
    ("revoke-someone-elses-key", "post", "/account/keys/{other_key}/revoke/"),
    ("usage-record-nul", "get", "/billing/usage/req_%00/"),
    ("usage-record-newline", "get", "/billing/usage/req_%0a/"),
    ("usage-record-too-long", "get", "/billing/usage/" + "r" * 300 + "/"),
    ("usage-record-unknown", "get", "/billing/usage/req_nothing_here/"),
    ("purchase-status-unknown", "get", "/billing/checkout/status/?session_id=cs_nope"),
    ("purchase-status-nul", "get", "/billing/checkout/status/?session_id=%00"),
    ("checkout-success-unknown", "get", "/billing/checkout/success/?session_id=x"),
]

# (id, POST data for /billing/checkout/): an unknown package is a 404.
BAD_PACKAGES: list[tuple[str, dict[str, Any]]] = [
    ("package-missing", {}),
    ("package-empty", {"package": ""}),
    ("package-words", {"package": "starter"}),
    ("package-negative", {"package": "-1"}),
    ("package-unknown", {"package": "999999"}),
    ("package-beyond-int64", {"package": "9" * 20}),
    ("package-fraction", {"package": "1.5"}),
    ("package-nul", {"package": "1\x00"}),
]

# (id, POST data for /billing/redeem/): the page comes back naming the problem.
BAD_CODES: list[tuple[str, dict[str, Any]]] = [
    ("code-missing", {}),
    ("code-empty", {"code": ""}),
    ("code-unknown", {"code": "NOPE-NOPE-NOPE"}),
    ("code-too-long", {"code": "X" * 41}),
    ("code-with-nul", {"code": "AAAA\x00"}),
    ("code-exhausted", {"code": "USED-UP-CODE"}),
]


@pytest.fixture
def other(make_customer: Any) -> dict[str, Any]:
    """Another customer's key and conversation, which the signed-in user must not reach."""
    customer = make_customer()
    conversation = Conversation.objects.create(user=customer.user, model="demo")
    return {"key": customer.api_key, "conversation": conversation}


@pytest.fixture
def signed_in(client: Client, demo_catalog: None, other: dict[str, Any]) -> Iterator[Client]:
    """A signed-in customer's client; afterwards no key was minted or revoked, no
    conversation made, the account still open and no money moved."""
    user = User.objects.create_user("forms-bad-inputs@example.com", "pw-123-secret")
    client.force_login(user)
    RedemptionCode.objects.create(code="USED-UP-CODE", amount_micro_usd=1_000_000, uses=1)
    before = (
        money_snapshot(),
        ApiKey.objects.filter(revoked_at__isnull=True).count(),
        Conversation.objects.count(),
    )
    yield client
    user.refresh_from_db()
    assert user.is_active
    after = (
        money_snapshot(),
        ApiKey.objects.filter(revoked_at__isnull=True).count(),
        Conversation.objects.count(),
    )
    assert after == before


def assert_form_refused(response: Any, field: str | None = None) -> str:
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert 'aria-invalid="true"' in page or 'class="errorlist' in page
    if field is not None:
        assert f'name="{field}"' in page
    return page


@pytest.mark.parametrize(("data", "field"), [pytest.param(d, f, id=n) for n, d, f in BAD_KEY_FORMS])
def test_the_key_form_refuses_bad_input(
    signed_in: Client, data: dict[str, Any], field: str
) -> None:
    response = signed_in.post("/account/keys/new/", data)
    page = assert_form_refused(response, field)
    assert "error-summary" in page
    assert f'href="#id_{field}' in page


@pytest.mark.parametrize("data", [pytest.param(d, id=n) for n, d in BAD_CONVERSATIONS])
def test_a_new_conversation_needs_a_model_on_the_list(
    signed_in: Client, data: dict[str, Any]
) -> None:
    assert_form_refused(signed_in.post("/chat/new/", data), "model")


# (id, query string for the chat sidebar's list): each a 400.
BAD_CHAT_LISTS: list[tuple[str, str]] = [
    ("cursor-words", "before=nonsense"),
    ("cursor-naive-time", "before=2026-01-01T00:00:00~3"),
    ("cursor-bad-id", "before=2026-01-01T00:00:00%2B00:00~x"),
    ("cursor-huge", "before=" + "9" * 200),
    ("cursor-id-beyond-int64", "before=2026-01-01T00:00:00%2B00:00~99999999999999999999"),
    ("cursor-year-zero", "before=0000-01-01T00:00:00%2B00:00~1"),
    ("cursor-nul", "before=%00"),
    ("search-huge", "q=" + "q" * 300),
    ("current-words", "current=abc"),
    ("current-zero", "current=0"),
]


@pytest.mark.parametrize("query", [pytest.param(q, id=n) for n, q in BAD_CHAT_LISTS])
def test_a_bad_chat_list_link_is_a_400(signed_in: Client, query: str) -> None:
    assert signed_in.get(f"/chat/list/?{query}", HTTP_HX_REQUEST="true").status_code == 400
    assert signed_in.get(f"/chat/?{query}").status_code == 400


@pytest.mark.parametrize("data", [pytest.param(d, id=n) for n, d in BAD_CLOSURES])
def test_closing_the_account_needs_its_own_address(signed_in: Client, data: dict[str, Any]) -> None:
    assert_form_refused(signed_in.post("/account/delete/", data), "confirm")


@pytest.mark.parametrize(
    ("method", "template"), [pytest.param(m, p, id=n) for n, m, p in MISSING_OBJECTS]
)
def test_an_object_the_user_cannot_see_is_a_404(
    signed_in: Client, other: dict[str, Any], method: str, template: str
) -> None:
    path = template.format(other_conversation=other["conversation"].pk, other_key=other["key"].pk)
    response = getattr(signed_in, method)(path)
    assert response.status_code == 404


@pytest.mark.parametrize("data", [pytest.param(d, id=n) for n, d in BAD_PACKAGES])
def test_buying_an_unknown_package_is_a_404(signed_in: Client, data: dict[str, Any]) -> None:
    assert signed_in.post("/billing/checkout/", data).status_code == 404


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize("data", [pytest.param(d, id=n) for n, d in BAD_CODES])
def test_a_bad_redemption_code_is_named_and_credits_nothing(
    signed_in: Client, data: dict[str, Any], htmx: bool
) -> None:
    headers = {"HX-Request": "true"} if htmx else {}
    response = signed_in.post("/billing/redeem/", data, headers=headers)
    if htmx:
        # htmx swaps only 2xx answers: the form comes back with its error in place.
        assert response.status_code == 200
        assert 'class="errorlist' in response.content.decode() or "aria-invalid" in str(
            response.content
        )
        assert "HX-Trigger" not in response
    else:
        assert response.status_code == 303
        page = signed_in.get(response["Location"]).content.decode()
        assert 'class="message error"' in page
