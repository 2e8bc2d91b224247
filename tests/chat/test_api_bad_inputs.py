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


# (json body or raw bytes, status, a phrase the error must contain)
CASES: list[tuple[object, int, str]] = [
    (b"{", 400, "JSON"),
    (b"\xff\xfe not utf-8", 400, "JSON"),
    (b"[1, 2]", 400, "object"),
    (b'"hello"', 400, "object"),
    (b"null", 400, "object"),
    (b"{" * 2000 + b"}" * 2000, 400, "JSON"),
    (b'{"model": "gpt-test", "messages": [], "temperature": NaN}', 400, "JSON"),
    ({}, 400, "messages is required"),
    (without("messages"), 400, "messages is required"),
    (body(messages="hi"), 400, "messages must be"),
    (body(messages=[]), 400, "messages must be"),
    (body(messages={"role": "user", "content": "hi"}), 400, "messages must be"),
    (body(messages=[1]), 400, "messages[0] must be an object"),
    (body(messages=[{"role": "user"}]), 400, "messages[0].content"),
    (body(messages=[{"content": "hi"}]), 400, "messages[0].role"),
    (body(messages=[{"role": "wizard", "content": "hi"}]), 400, "messages[0].role"),
    (body(messages=[{"role": "tool", "content": "hi"}]), 400, "messages[0].role"),
    (body(messages=user(5)), 400, "messages[0].content"),
    (body(messages=user(["hi"])), 400, "messages[0].content"),
    (body(messages=user(None)), 400, "messages[0].content"),
    (body(messages=user("hi", name="x")), 400, "messages[0].name"),
    (body(messages=[*MESSAGES, "again"]), 400, "messages[1]"),
    (body(model=5), 400, "model must be"),
    (body(model=""), 400, "model must be"),
    (body(model="   "), 400, "model must be"),
    (body(model="x" * 300), 400, "model must be"),
    (body(model=["gpt-test"]), 400, "model must be"),
    (body(temperature="hot"), 400, "temperature"),
    (body(temperature=-0.1), 400, "temperature"),
    (body(temperature=2.5), 400, "temperature"),
    (body(temperature=True), 400, "temperature"),
    (body(topP=1.5), 400, "topP"),
    (body(topP="0.5"), 400, "topP"),
    (body(maxTokens=0), 400, "maxTokens"),
    (body(maxTokens=-5), 400, "maxTokens"),
    (body(maxTokens=1.5), 400, "maxTokens"),
    (body(maxTokens="10"), 400, "maxTokens"),
    (body(maxTokens=True), 400, "maxTokens"),
    (b'{"messages": [], "maxTokens": 1000000000000000000000000000000}', 400, "maxTokens"),
    (body(maxTokens=10**12), 400, "maxTokens"),
    (body(maxTokens=5_000), 400, "maxTokens"),  # above the model's output cap
    (body(stopSequences="END"), 400, "stopSequences"),
    (body(stopSequences=["a", "b", "c", "d", "e"]), 400, "stopSequences"),
    (body(stopSequences=[""]), 400, "stopSequences"),
    (body(stopSequences=[1]), 400, "stopSequences"),
    (body(stopSequences={"a": 1}), 400, "stopSequences"),
    (body(ragEnabled="yes"), 400, "ragEnabled"),
    (body(ragEnabled=1), 400, "ragEnabled"),
    (body(stream=True), 400, "stream: unknown field"),
    (body(max_tokens=10), 400, "max_tokens: unknown field"),
    (body(tools=[]), 400, "tools: unknown field"),
    (body(model="no-such-model"), 404, "Model not found"),
]


@pytest.mark.parametrize(("payload", "status", "phrase"), CASES, ids=range(len(CASES)))
def test_a_bad_request_is_a_clear_error_never_a_5xx(
    live_server_url, catalog, customer, payload, status, phrase
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
    assert not UsageRecord.objects.exists()
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
