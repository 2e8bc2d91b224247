"""A request's page: attempts and fallbacks, cost line items, the hold and the charge,
the chat it came from, and its stored messages (when the account keeps them)."""

from __future__ import annotations

import time
from datetime import timedelta

import openai
import pytest
from django.core.management import call_command
from django.utils import timezone

from billing.models import RequestContent, UsageRecord
from chat.models import Conversation, Message
from tests.fakes.upstream import Fail
from tests.gateway.test_chat_completions_sdk import catalog as sdk_catalog
from tests.gateway.test_chat_completions_sdk import wait_for_record

# gpt-test on primary, then mirror (the SDK tests' catalog).
catalog = sdk_catalog

MESSAGES = [{"role": "user", "content": "Say <script>alert(1)</script> & more"}]


def wait_for_content(record):
    """The messages are written just after the settlement commits, in the same thread."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if content := RequestContent.objects.filter(usage=record).first():
            return content
        time.sleep(0.02)
    raise AssertionError(f"no stored messages for {record.request_id}")


def sdk(live_server_url, secret):
    return openai.OpenAI(
        base_url=live_server_url + "/v1", api_key=secret, max_retries=0, timeout=10
    )


@pytest.mark.django_db(transaction=True)
def test_a_fallback_shows_each_route_tried_with_its_timings(
    live_server_url, catalog, customer, client
):
    catalog.script("primary-model", Fail(500))

    raw = sdk(live_server_url, customer.secret).chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES
    )

    record = wait_for_record(raw.headers["x-request-id"])
    failed, answered = record.route_log
    assert (failed["provider"], failed["ok"]) == ("primary", False)
    assert failed["error"] == "primary answered HTTP 500"
    assert (answered["provider"], answered["ok"]) == ("mirror", True)
    assert answered["start_ms"] >= failed["start_ms"] + failed["duration_ms"]
    assert record.finish_reason == "stop"
    client.force_login(customer.user)
    html = client.get(f"/billing/usage/{record.request_id}/").content.decode()
    assert "1. primary" in html and "2. mirror" in html
    assert "fell back to the next route" in html
    assert "Input" in html and "Output" in html  # line items
    assert "Held while it ran" in html
    assert f"({record.cost_micro_usd} micro-USD)" in html
    assert f"({record.reserved_micro_usd} micro-USD, released at the end)" in html


@pytest.mark.django_db(transaction=True)
def test_an_account_that_keeps_prompts_gets_them_stored_and_shown_escaped(
    live_server_url, catalog, customer, client
):
    customer.account.store_content = True
    customer.account.save(update_fields=["store_content"])

    raw = sdk(live_server_url, customer.secret).chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES, stream=True
    )
    answer = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)

    record = wait_for_record(raw.headers["x-request-id"])
    content = wait_for_content(record)
    assert content.messages == MESSAGES
    assert content.response == answer
    client.force_login(customer.user)
    html = client.get(f"/billing/usage/{record.request_id}/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert "<script>alert(1)" not in html
    assert answer.split()[0] in html


@pytest.mark.django_db(transaction=True)
def test_an_account_with_storage_off_keeps_nothing(live_server_url, catalog, customer):
    raw = sdk(live_server_url, customer.secret).chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES
    )

    wait_for_record(raw.headers["x-request-id"])
    assert not RequestContent.objects.exists()


def test_settling_without_content_touches_no_content_table(customer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.ledger import reserve_credits
    from gateway.calls import _settle_and_stamp

    reservation = reserve_credits(
        account_id=customer.account.pk, amount=1_000, request_id="req_off", api_key=None
    )
    with CaptureQueriesContext(connection) as queries:
        _settle_and_stamp(reservation, 500, {"model": "m"}, None)

    assert UsageRecord.objects.filter(request_id="req_off").exists()
    assert not any("requestcontent" in q["sql"] for q in queries.captured_queries)


@pytest.fixture
def kept(customer):
    record = UsageRecord.objects.create(
        request_id="req_kept",
        account=customer.account,
        api_key=customer.api_key,
        model="gpt-test",
        status="ok",
    )
    RequestContent.objects.create(
        usage=record,
        account=customer.account,
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]}
        ],
        response="hello",
    )
    return record


def test_the_owner_sees_the_stored_turns(client, customer, kept):
    client.force_login(customer.user)

    response = client.get("/billing/usage/req_kept/")

    assert [(t.role, t.text) for t in response.context["turns"]] == [("user", "hi\n[image_url]")]
    assert "Erase these messages" in response.content.decode()


def test_the_owner_erases_one_requests_messages(client, customer, kept):
    client.force_login(customer.user)

    response = client.post("/billing/usage/req_kept/erase/")

    assert response.status_code == 303
    assert not RequestContent.objects.exists()
    assert UsageRecord.objects.filter(request_id="req_kept").exists()


def test_another_user_cannot_read_or_erase_them(client, make_customer, kept):
    stranger = make_customer()
    stranger.user.is_staff = True
    stranger.user.save()
    client.force_login(stranger.user)

    assert client.get("/billing/usage/req_kept/").status_code == 404
    assert client.post("/billing/usage/req_kept/erase/").status_code == 404
    client.post("/billing/usage/content/erase/")
    assert RequestContent.objects.count() == 1


def test_the_owner_erases_everything_at_once(client, customer, kept):
    client.force_login(customer.user)

    response = client.post("/billing/usage/content/erase/")

    assert response.status_code == 303
    assert not RequestContent.objects.exists()


def test_erasing_is_post_only(client, customer, kept):
    client.force_login(customer.user)

    assert client.get("/billing/usage/req_kept/erase/").status_code == 405
    assert RequestContent.objects.count() == 1


def test_content_past_the_retention_is_pruned(customer, kept, settings):
    settings.PROMPT_RETENTION_DAYS = 30
    fresh = UsageRecord.objects.create(request_id="req_fresh", account=customer.account, model="m")
    RequestContent.objects.create(usage=fresh, account=customer.account, messages=[])
    RequestContent.objects.filter(usage=kept).update(created_at=timezone.now() - timedelta(days=31))

    call_command("prunecontent")

    assert list(RequestContent.objects.values_list("usage__request_id", flat=True)) == ["req_fresh"]


def test_a_refused_request_says_nothing_was_held(client, customer):
    UsageRecord.objects.create(
        request_id="req_no",
        account=customer.account,
        api_key=customer.api_key,
        model="gpt-test",
        status="refused",
        http_status=402,
        error_code="insufficient_credits",
        error="Insufficient credits",
        attempts=0,
    )
    client.force_login(customer.user)

    html = client.get("/billing/usage/req_no/").content.decode()

    assert "402 insufficient_credits" in html
    assert "refused before any upstream was called" in html


def test_a_web_chat_request_links_to_its_conversation(client, customer, make_customer):
    UsageRecord.objects.create(
        request_id="req_web", account=customer.account, model="demo", source="web"
    )
    conversation = Conversation.objects.create(user=customer.user, model="demo")
    answer = Message.objects.create(
        conversation=conversation, role="assistant", content="hi", request_id="req_web"
    )
    client.force_login(customer.user)

    html = client.get("/billing/usage/req_web/").content.decode()
    response = client.get("/chat/request/req_web/")

    assert 'href="/chat/request/req_web/"' in html
    assert response.status_code == 302
    assert response["Location"] == f"/chat/{conversation.pk}/#message-{answer.pk}"
    client.force_login(make_customer().user)
    assert client.get("/chat/request/req_web/").status_code == 404


def test_the_settings_page_turns_storage_and_alerts_on(client, customer):
    client.force_login(customer.user)
    assert client.get("/billing/usage/settings/").status_code == 200

    response = client.post(
        "/billing/usage/settings/",
        {
            "store_content": "on",
            "alert_balance_below_usd": "2.50",
            "alert_key_expiry_days": "3",
        },
    )

    assert response.status_code == 303
    customer.account.refresh_from_db()
    assert customer.account.store_content is True
    assert customer.account.alert_balance_below_micro_usd == 2_500_000
    assert customer.account.alert_key_expiry_days == 3
    assert customer.account.alert_spend_cap is False


@pytest.mark.parametrize(
    "data",
    [
        {"alert_balance_below_usd": "-1", "alert_key_expiry_days": "7"},
        {"alert_balance_below_usd": "abc", "alert_key_expiry_days": "7"},
        {"alert_balance_below_usd": "1.001", "alert_key_expiry_days": "7"},
        {"alert_key_expiry_days": "999"},
        {"alert_key_expiry_days": ""},
    ],
)
def test_bad_settings_are_refused_with_the_reason(client, customer, data):
    client.force_login(customer.user)

    response = client.post("/billing/usage/settings/", data)

    assert response.status_code == 400
    assert 'class="error-summary"' in response.content.decode()
    customer.account.refresh_from_db()
    assert customer.account.alert_balance_below_micro_usd is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/billing/usage/settings/"),
        ("post", "/billing/usage/req_kept/erase/"),
        ("post", "/billing/usage/content/erase/"),
        ("get", "/chat/request/req_kept/"),
    ],
)
def test_anonymous_visitors_are_sent_to_sign_in(client, kept, method, path):
    assert "/accounts/login/" in getattr(client, method)(path)["Location"]
    assert RequestContent.objects.count() == 1
