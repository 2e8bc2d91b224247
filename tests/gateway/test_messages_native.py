"""POST /v1/messages toward an Anthropic-kind route: the request passes through natively
(cache marks, thinking, context management and betas preserved) and the upstream's own
message or events come back, billed once like any call; other routes are translated.

Fixtures (the catalog of three route kinds, the SDK clients) and the books checks are
those of tests/gateway/test_messages_sdk.py.
"""

# The fixtures imported from test_messages_sdk are requested by parameter name (F811).
# ruff: noqa: F811

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from gateway.models import Model, Provider, Route
from tests.fakes.upstream import Fail, Ok, default_text
from tests.fakes.wire import AnthropicProtocol
from tests.gateway.test_messages_sdk import (  # noqa: F401 (fixtures used by name)
    HELLO,
    assert_billed_once,
    catalog,
    client,
    final_request_id,
)

pytestmark = pytest.mark.django_db(transaction=True)

CLAUDE_CODE_REQUEST: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 32_000,
    "system": [
        {"type": "text", "text": "You are Claude Code."},
        {"type": "text", "text": "Be careful.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ],
        }
    ],
    "thinking": {"type": "enabled", "budget_tokens": 4_000},
    "cache_control": {"type": "ephemeral"},
    "metadata": {"user_id": "user_abc_session_1"},
    # a beta field: the SDK sends it from client.beta.messages, or as extra_body
    "extra_body": {"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}},
}
# The same request as it goes over the wire.
WIRE_BODY = {
    **{name: value for name, value in CLAUDE_CODE_REQUEST.items() if name != "extra_body"},
    **CLAUDE_CODE_REQUEST["extra_body"],
}
BETA = "interleaved-thinking-2025-05-14,context-management-2025-06-27"


def test_the_body_passes_through_with_its_cache_marks_thinking_and_betas(client, catalog):
    client.messages.create(
        **CLAUDE_CODE_REQUEST,
        speed="fast",
        inference_geo="us",
        service_tier="auto",
        extra_headers={"anthropic-beta": BETA},
    )
    sent = catalog.requests_for("claude-up")[-1]
    expected = {**WIRE_BODY, "model": "claude-up", "stream": False}
    assert sent.json == expected
    assert sent.headers["anthropic-beta"] == BETA
    assert sent.headers["x-api-key"] == "k"


def test_the_upstreams_thinking_and_cache_usage_come_back_as_they_were(client, customer, catalog):
    catalog.script(
        "claude-up",
        Ok(
            text="Hi.",
            reasoning_text="They said hi.",
            prompt_tokens=900,
            cached_tokens=500,
            cache_creation_tokens=300,
        ),
    )
    raw = client.messages.with_raw_response.create(**CLAUDE_CODE_REQUEST)
    message = raw.parse()

    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "They said hi."
    assert message.content[0].signature == AnthropicProtocol.SIGNATURE
    assert message.model == "claude-test"
    assert message.id == "msg_" + raw.headers["x-request-id"].removeprefix("req_")
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (100, 500)
    assert usage.cache_creation_input_tokens == 300
    record = assert_billed_once(raw.headers["x-request-id"], customer.account)
    assert (record.prompt_tokens, record.cached_tokens) == (900, 500)
    assert raw.headers["x-request-cost-micro-usd"] == str(record.cost_micro_usd)


def test_the_upstreams_events_are_relayed_with_our_id_and_the_cost(
    live_server_url, customer, catalog
):
    catalog.script("claude-up", Ok(text="Hi there.", reasoning_text="Greet back."))
    events = []
    with httpx.stream(
        "POST",
        live_server_url + "/v1/messages",
        json={**WIRE_BODY, "stream": True},
        headers={"x-api-key": customer.secret, "anthropic-beta": BETA},
        timeout=10,
    ) as response:
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(orjson.loads(line[6:]))
    kinds = [event["type"] for event in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert "ping" in kinds
    start = events[0]["message"]
    assert start["id"] == "msg_" + request_id.removeprefix("req_")
    assert start["model"] == "claude-test"
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert {"type": "signature_delta", "signature": AnthropicProtocol.SIGNATURE} in deltas
    thinking = "".join(d["thinking"] for d in deltas if d["type"] == "thinking_delta")
    assert thinking == "Greet back."
    assert catalog.requests_for("claude-up")[-1].json["stream"] is True
    record = assert_billed_once(request_id, customer.account)
    final = events[-2]
    assert final["usage"]["output_tokens"] == record.completion_tokens
    assert final["usage"]["cost_micro_usd"] == record.cost_micro_usd
    assert "usage_suspect" not in record.flags


def test_the_sdk_stream_helper_assembles_a_native_stream(client, customer, catalog):
    catalog.script("claude-up", Ok(text="Done.", reasoning_text="Think first."))
    with client.messages.stream(**CLAUDE_CODE_REQUEST) as stream:
        message = stream.get_final_message()
    assert message.content[0].type == "thinking"
    assert message.content[0].signature == AnthropicProtocol.SIGNATURE
    assert message.content[1].text == "Done."
    assert_billed_once(final_request_id(customer), customer.account)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_a_failing_anthropic_route_falls_back_to_a_translated_one(
    client, customer, catalog, streamed
):
    both = Model.objects.create(
        id="claude-both",
        input_price=2_000_000,
        output_price=8_000_000,
        context_length=200_000,
        max_output_tokens=64_000,
    )
    Route.objects.create(
        model=both, provider=Provider.objects.get(name="anthropic"), upstream_model="claude-up"
    )
    Route.objects.create(
        model=both,
        provider=Provider.objects.get(name="openai"),
        upstream_model="openai-up",
        priority=1,
    )
    catalog.script("claude-up", Fail(500))
    request = {**CLAUDE_CODE_REQUEST, "model": "claude-both"}
    if streamed:
        with client.messages.stream(**request) as stream:
            message = stream.get_final_message()
    else:
        message = client.messages.create(**request)
    assert message.content[0].text == default_text("openai-up")
    sent = catalog.requests_for("openai-up")[-1].json
    assert "thinking" not in sent and sent["messages"][0]["role"] == "system"
    record = assert_billed_once(final_request_id(customer), customer.account)
    assert (record.provider, record.attempts) == ("openai", 2)


def test_long_thinking_in_a_plain_answer_is_counted_as_output_not_suspect(
    client, customer, catalog
):
    thinking = " ".join(f"step{i}" for i in range(200))
    catalog.script("claude-up", Ok(text="Hi.", reasoning_text=thinking))
    raw = client.messages.with_raw_response.create(**CLAUDE_CODE_REQUEST)
    record = assert_billed_once(raw.headers["x-request-id"], customer.account)
    assert record.completion_tokens == 201
    assert "usage_suspect" not in record.flags


# Claude Code (2.1.x) sends what its harness learns mid-session (environment, reminders)
# as a system turn inside `messages`, which the Messages API accepts.
SYSTEM_TURN = {
    "role": "system",
    "content": [
        {"type": "text", "text": "# Environment", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "cwd: /tmp"},
    ],
}
WITH_A_SYSTEM_TURN = [
    {"role": "user", "content": "Hi"},
    SYSTEM_TURN,
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Where am I?"},
]


def test_a_system_turn_in_messages_passes_through_to_anthropic_in_place(client, customer, catalog):
    raw = client.messages.with_raw_response.create(
        model="claude-test", max_tokens=100, system="Be brief.", messages=WITH_A_SYSTEM_TURN
    )
    assert raw.parse().content[0].text == default_text("claude-up")
    sent = catalog.requests_for("claude-up")[-1].json
    assert sent["messages"] == WITH_A_SYSTEM_TURN and sent["system"] == "Be brief."
    assert_billed_once(raw.headers["x-request-id"], customer.account)


def test_a_system_turn_in_messages_is_a_system_message_in_place_on_an_openai_route(
    client, customer, catalog
):
    raw = client.messages.with_raw_response.create(
        model="gpt-test", max_tokens=100, system="Be brief.", messages=WITH_A_SYSTEM_TURN
    )
    assert raw.parse().content[0].text == default_text("openai-up")
    sent = catalog.requests_for("openai-up")[-1].json
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "# Environment\n\ncwd: /tmp"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Where am I?"},
    ]
    assert_billed_once(raw.headers["x-request-id"], customer.account)


def test_a_system_turn_in_messages_joins_the_system_instruction_on_a_gemini_route(client, catalog):
    client.messages.create(
        model="gemini-test", max_tokens=100, system="Be brief.", messages=WITH_A_SYSTEM_TURN
    )
    sent = catalog.requests_for("gemini-up")[-1].json
    system = " ".join(part["text"] for part in sent["systemInstruction"]["parts"])
    assert "Be brief." in system and "# Environment\n\ncwd: /tmp" in system
    assert [content["role"] for content in sent["contents"]] == ["user", "model", "user"]
