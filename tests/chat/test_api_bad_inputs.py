"""Every bad request to the chat API gets a clear `{"error": "…"}` and never a 5xx.

Through the live server (the full site stack the API runs on), with a funded key: none
of these reaches the upstream or bills anything.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from billing.models import UsageRecord
from tests.gateway.test_chat_completions_sdk import MESSAGES, assert_books_balance, catalog

__all__ = ["catalog"]

pytestmark = pytest.mark.django_db(transaction=True)

OK = {"model": "gpt-test", "messages": MESSAGES}


def body(**changes: object) -> dict[str, object]:
    return {**OK, **changes}


def without(name: str) -> dict[str, object]:
    return {k: v for k, v in OK.items() if k != name}


def user(content: object, **extra: object) -> list[dict[str, object]]:
    return [{"role": "user", "content": content, **extra}]


# (name, json body or raw bytes, status, a phrase the error must contain)
BAD_BODIES: list[tuple[str, object, int, str]] = [
    ("not-json", b"{", 400, "JSON"),
    ("not-utf8", b"\xff\xfe not utf-8", 400, "JSON"),
    ("array", b"[1, 2]", 400, "object"),
    ("string", b'"hello"', 400, "object"),
    ("null", b"null", 400, "object"),
    ("nested-too-deep", b"{" * 2000 + b"}" * 2000, 400, "JSON"),
    ("nan", b'{"model": "gpt-test", "messages": [], "temperature": NaN}', 400, "JSON"),
    ("empty-object", {}, 400, "messages is required"),
    ("no-messages", without("messages"), 400, "messages is required"),
    ("messages-string", body(messages="hi"), 400, "messages must be"),
    ("messages-empty", body(messages=[]), 400, "messages must be"),
    ("messages-object", body(messages={"role": "user", "content": "hi"}), 400, "messages must be"),
    ("message-number", body(messages=[1]), 400, "messages[0] must be an object"),
    ("message-no-content", body(messages=[{"role": "user"}]), 400, "messages[0].content"),
    ("message-no-role", body(messages=[{"content": "hi"}]), 400, "messages[0].role"),
    ("role-unknown", body(messages=[{"role": "wizard", "content": "hi"}]), 400, "messages[0].role"),
    ("role-tool", body(messages=[{"role": "tool", "content": "hi"}]), 400, "messages[0].role"),
    ("content-number", body(messages=user(5)), 400, "messages[0].content"),
    ("content-array", body(messages=user(["hi"])), 400, "messages[0].content"),
    ("content-null", body(messages=user(None)), 400, "messages[0].content"),
    ("message-extra-field", body(messages=user("hi", name="x")), 400, "messages[0].name"),
    ("message-string-after", body(messages=[*MESSAGES, "again"]), 400, "messages[1]"),
    ("model-number", body(model=5), 400, "model must be"),
    ("model-empty", body(model=""), 400, "model must be"),
    ("model-blank", body(model="   "), 400, "model must be"),
    ("model-too-long", body(model="x" * 300), 400, "model must be"),
    ("model-array", body(model=["gpt-test"]), 400, "model must be"),
    ("temperature-string", body(temperature="hot"), 400, "temperature"),
    ("temperature-negative", body(temperature=-0.1), 400, "temperature"),
    ("temperature-high", body(temperature=2.5), 400, "temperature"),
    ("temperature-bool", body(temperature=True), 400, "temperature"),
    ("top-p-high", body(topP=1.5), 400, "topP"),
    ("top-p-string", body(topP="0.5"), 400, "topP"),
    ("max-tokens-zero", body(maxTokens=0), 400, "maxTokens"),
    ("max-tokens-negative", body(maxTokens=-5), 400, "maxTokens"),
    ("max-tokens-fraction", body(maxTokens=1.5), 400, "maxTokens"),
    ("max-tokens-string", body(maxTokens="10"), 400, "maxTokens"),
    ("max-tokens-bool", body(maxTokens=True), 400, "maxTokens"),
    (
        "max-tokens-huge-json",
        b'{"messages": [], "maxTokens": 1000000000000000000000000000000}',
        400,
        "maxTokens",
    ),
    ("max-tokens-huge", body(maxTokens=10**12), 400, "maxTokens"),
    ("max-tokens-above-model-cap", body(maxTokens=5_000), 400, "maxTokens"),
    ("stop-string", body(stopSequences="END"), 400, "stopSequences"),
    ("stop-five", body(stopSequences=["a", "b", "c", "d", "e"]), 400, "stopSequences"),
    ("stop-empty", body(stopSequences=[""]), 400, "stopSequences"),
    ("stop-number", body(stopSequences=[1]), 400, "stopSequences"),
    ("stop-object", body(stopSequences={"a": 1}), 400, "stopSequences"),
    ("rag-string", body(ragEnabled="yes"), 400, "ragEnabled"),
    ("rag-number", body(ragEnabled=1), 400, "ragEnabled"),
    ("stream-field", body(stream=True), 400, "stream: unknown field"),
    ("max-tokens-snake-case", body(max_tokens=10), 400, "max_tokens: unknown field"),
    ("tools-field", body(tools=[]), 400, "tools: unknown field"),
    ("unknown-model", body(model="no-such-model"), 404, "Model not found"),
]


@pytest.mark.parametrize(
    ("name", "payload", "status", "phrase"), BAD_BODIES, ids=[row[0] for row in BAD_BODIES]
)
def test_a_bad_request_is_a_clear_error_never_a_5xx(
    live_server_url, catalog, customer, name, payload, status, phrase
):
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    response = httpx.post(
        live_server_url + "/chat/stream",
        headers={"Authorization": f"Bearer {customer.secret}", "Content-Type": "application/json"},
        content=raw,
        timeout=10,
    )

    assert response.status_code == status, response.text
    error = response.json()
    assert isinstance(error["error"], str)
    assert phrase in error["error"]
    assert catalog.requests == []
    # A call the lifecycle refuses is in the request log as refused, never billed.
    assert not UsageRecord.objects.exclude(status=UsageRecord.Status.REFUSED).exists()
    assert_books_balance(customer.account)


def test_a_body_over_the_size_limit_is_a_413(live_server_url, catalog, customer, settings):
    response = httpx.post(
        live_server_url + "/chat/stream",
        headers={"Authorization": f"Bearer {customer.secret}"},
        json=body(messages=user("x" * (settings.MAX_REQUEST_BYTES + 10))),
        timeout=10,
    )

    assert response.status_code == 413
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_another_method_is_a_405_naming_post(live_server_url, catalog, customer, method):
    response = httpx.request(
        method,
        live_server_url + "/chat/stream",
        headers={"Authorization": f"Bearer {customer.secret}"},
    )

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert set(response.json()) == {"error"}


def test_a_signed_in_form_post_is_refused_as_not_json(live_server_url, catalog, customer):
    from tests.chat.test_api_stream import CSRF, signed_in

    response = httpx.post(
        live_server_url + "/chat/stream",
        data={"messages": "hi"},
        cookies=signed_in(customer.user),
        headers={"X-CSRFToken": CSRF},
        timeout=10,
    )

    assert response.status_code == 400
    assert set(response.json()) == {"error"}
