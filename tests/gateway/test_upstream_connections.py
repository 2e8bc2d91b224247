"""Streamed upstream calls keep their connection: a stream's last event (OpenAI's
`[DONE]`, Anthropic's `message_stop`, the Responses API's `response.completed`) is
relayed once the upstream's body has ended, so the connection goes back to the pool.

Live: the real ASGI application under uvicorn, and the fake upstream, which counts the
TCP connections it accepts, behind an OpenAI-kind route that serves the Responses API
and an Anthropic-kind one; each door's stream is relayed natively or translated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from billing.models import UsageRecord
from gateway.models import Model, Provider, Route
from tests.conftest import Customer, LiveServer
from tests.fakes.upstream import FakeUpstream, Linger, Ok, default_text, pieces
from tests.gateway.test_chat_completions_sdk import wait_for_record

pytestmark = pytest.mark.django_db(transaction=True)

CALLS = 5
PROMPT = [{"role": "user", "content": "Say something deterministic."}]
CLIENT_TIMEOUT = 10
# Both far longer than the gateway waits for a body's end after the last event
# (STREAM_END_SECONDS) and than the client's timeout: only the gateway giving up on the
# body's end lets a call whose upstream lingers finish in time.
LINGER_SECONDS = 60
UPSTREAM_TIMEOUT = 30


@dataclass(frozen=True)
class Door:
    path: str
    body: dict[str, Any]
    upstream: str
    text: Callable[[list[Any]], str]
    last: Any  # the last event's data, or its type

    def headers(self, secret: str) -> dict[str, str]:
        if self.path == "/v1/messages":
            return {"x-api-key": secret, "anthropic-version": "2023-06-01"}
        return {"authorization": f"Bearer {secret}"}


def chat_text(events: list[Any]) -> str:
    chunks = [event for event in events if isinstance(event, dict) and event["choices"]]
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)


def messages_text(events: list[Any]) -> str:
    deltas = [event["delta"] for event in events if event["type"] == "content_block_delta"]
    return "".join(delta["text"] for delta in deltas if delta["type"] == "text_delta")


def responses_text(events: list[Any]) -> str:
    kind = "response.output_text.delta"
    return "".join(event["delta"] for event in events if event["type"] == kind)


DOORS = {
    "chat-completions": Door(
        "/v1/chat/completions",
        {"model": "gpt-test", "messages": PROMPT, "stream": True},
        "openai-up",
        chat_text,
        "[DONE]",
    ),
    "messages-native": Door(
        "/v1/messages",
        {"model": "claude-test", "max_tokens": 100, "messages": PROMPT, "stream": True},
        "claude-up",
        messages_text,
        "message_stop",
    ),
    "responses-native": Door(
        "/v1/responses",
        {"model": "gpt-test", "input": PROMPT[0]["content"], "stream": True},
        "openai-up",
        responses_text,
        "response.completed",
    ),
}
doors = pytest.mark.parametrize("door", list(DOORS.values()), ids=list(DOORS))


@pytest.fixture
def catalog(fake_upstream: FakeUpstream) -> FakeUpstream:
    """gpt-test → an OpenAI-kind provider serving the Responses API, claude-test → an
    Anthropic-kind one; both on the fake upstream."""
    for model_id, kind, upstream in (
        ("gpt-test", "openai", "openai-up"),
        ("claude-test", "anthropic", "claude-up"),
    ):
        provider = Provider.objects.create(
            name=kind,
            kind=kind,
            base_url=fake_upstream.url + "/v1",
            api_key="k",
            timeout_seconds=UPSTREAM_TIMEOUT,
            serves_responses=kind == "openai",
        )
        model = Model.objects.create(
            id=model_id,
            context_length=200_000,
            max_output_tokens=64_000,
            input_price=2_000_000,
            output_price=8_000_000,
        )
        Route.objects.create(model=model, provider=provider, upstream_model=upstream)
    return fake_upstream


def streamed_call(url: str, door: Door, customer: Customer) -> tuple[str, list[Any]]:
    """One streamed call through `door`: its request id and its events' data."""
    events: list[Any] = []
    with httpx.stream(
        "POST",
        url + door.path,
        json=door.body,
        headers=door.headers(customer.secret),
        timeout=CLIENT_TIMEOUT,
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else orjson.loads(data))
    return response.headers["x-request-id"], events


def assert_complete(door: Door, events: list[Any]) -> None:
    assert door.text(events) == default_text(door.upstream)
    last = events[-1]
    assert (last if last == "[DONE]" else last["type"]) == door.last


def assert_billed_once(request_id: str, door: Door) -> None:
    record = wait_for_record(request_id)
    assert UsageRecord.objects.filter(request_id=request_id).count() == 1
    assert record.status == "ok"
    assert record.completion_tokens == len(pieces(default_text(door.upstream)))


@doors
def test_streamed_calls_in_a_row_share_one_upstream_connection(
    live_server_url: str,
    gateway_server: LiveServer,
    customer: Customer,
    catalog: FakeUpstream,
    door: Door,
) -> None:
    for _ in range(CALLS):
        _, events = streamed_call(live_server_url, door, customer)
        assert_complete(door, events)
        # The call is over (its upstream exchange closed) before the next one starts.
        gateway_server.wait_until_idle()

    assert len(catalog.requests_for(door.upstream)) == CALLS
    assert catalog.connections == 1


@doors
def test_an_upstream_that_keeps_the_body_open_after_the_last_event_costs_only_its_connection(
    live_server_url: str,
    gateway_server: LiveServer,
    customer: Customer,
    catalog: FakeUpstream,
    door: Door,
) -> None:
    catalog.script(door.upstream, Ok(), Linger(LINGER_SECONDS), Ok())
    answers = []
    for _ in range(3):
        started = time.monotonic()
        request_id, events = streamed_call(live_server_url, door, customer)
        answers.append((request_id, events, time.monotonic() - started))
        gateway_server.wait_until_idle()

    for request_id, events, seconds in answers:
        assert_complete(door, events)
        assert_billed_once(request_id, door)
        assert seconds < CLIENT_TIMEOUT
    # The first call's connection served the lingering one, which the gateway then
    # closed: the third call came on a new one.
    assert catalog.connections == 2
