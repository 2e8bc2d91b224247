"""POST /v1/messages refuses bad input with a 4xx in Anthropic's error shape, never a 5xx,
and touches no money: no hold, no ledger entry, no usage record, no upstream called.

The committed `world` (catalog and customers) and the books checks are those of
tests/gateway/test_bad_inputs.py.
"""

# The fixtures imported from test_bad_inputs are requested by parameter name (F811).
# ruff: noqa: F811

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.test import AsyncClient

from tests.gateway.test_bad_inputs import (  # noqa: F401 (fixtures used by name)
    Customer,
    customer,
    customers,
    upstream_calls,
    world,
)

PATH = "/v1/messages"
VALID: dict[str, Any] = {
    "model": "demo",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "Hi"}],
}
MISSING = object()
TOOL = {"name": "lookup", "input_schema": {"type": "object"}}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
}

pytestmark = pytest.mark.django_db


def body(**changes: Any) -> dict[str, Any]:
    """The valid request with some fields replaced (MISSING drops a field)."""
    result = dict(VALID)
    for name, value in changes.items():
        if value is MISSING:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def turn(content: Any, role: str = "user") -> dict[str, Any]:
    return body(messages=[{"role": role, "content": content}])


def after_tool_use(result: dict[str, Any]) -> dict[str, Any]:
    """A tool_use turn followed by the user turn holding `result`."""
    use = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}
    return body(
        tools=[TOOL],
        messages=[
            {"role": "user", "content": "Look it up."},
            {"role": "assistant", "content": [use]},
            {"role": "user", "content": [result]},
        ],
    )


IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}

# (id, request body: raw bytes or a JSON-able dict, expected status)
BAD_BODIES: list[tuple[str, bytes | dict[str, Any], int]] = [
    ("not-json", b"{model: demo}", 400),
    ("truncated-json", b'{"model": "demo", "messages": [{"role": "us', 400),
    ("empty-body", b"", 400),
    ("json-array-body", b'[{"model": "demo"}]', 400),
    ("json-string-body", b'"hello"', 400),
    ("bad-utf8", b'{"model": "demo\xff", "max_tokens": 1, "messages": []}', 400),
    ("missing-model", body(model=MISSING), 400),
    ("model-is-a-number", body(model=7), 400),
    ("model-is-blank", body(model="  "), 400),
    ("missing-max-tokens", body(max_tokens=MISSING), 400),
    ("max-tokens-zero", body(max_tokens=0), 400),
    ("max-tokens-string", body(max_tokens="100"), 400),
    ("max-tokens-float", body(max_tokens=10.5), 400),
    ("max-tokens-bool", body(max_tokens=True), 400),
    ("max-tokens-above-the-models-cap", body(max_tokens=64_000), 400),
    ("missing-messages", body(messages=MISSING), 400),
    ("empty-messages", body(messages=[]), 400),
    ("messages-is-a-string", body(messages="Hi"), 400),
    ("message-not-an-object", body(messages=["Hi"]), 400),
    ("system-turn-with-an-image", turn([IMAGE], role="system"), 400),
    ("system-turn-with-no-blocks", turn([], role="system"), 400),
    ("system-turn-content-a-number", turn(5, role="system"), 400),
    ("tool-role-in-messages", turn("Hi", role="tool"), 400),
    ("message-without-role", body(messages=[{"content": "Hi"}]), 400),
    ("message-without-content", body(messages=[{"role": "user"}]), 400),
    ("content-is-a-number", turn(5), 400),
    ("content-is-an-object", turn({"type": "text", "text": "Hi"}), 400),
    ("content-empty-list", turn([]), 400),
    ("block-not-an-object", turn(["Hi"]), 400),
    ("block-without-type", turn([{"text": "Hi"}]), 400),
    ("text-block-without-text", turn([{"type": "text"}]), 400),
    ("text-block-text-a-number", turn([{"type": "text", "text": 1}]), 400),
    ("unknown-block-type", turn([{"type": "hologram"}]), 400),
    ("document-block", turn([{"type": "document", "source": {"type": "text", "data": "x"}}]), 400),
    (
        "image-bad-media-type",
        turn([{**IMAGE, "source": {**IMAGE["source"], "media_type": "x"}}]),
        400,
    ),
    ("image-without-source", turn([{"type": "image"}]), 400),
    ("image-empty-data", turn([{**IMAGE, "source": {**IMAGE["source"], "data": ""}}]), 400),
    ("image-unknown-source", turn([{"type": "image", "source": {"type": "file"}}]), 400),
    ("image-in-assistant-turn", turn([IMAGE], role="assistant"), 400),
    (
        "tool-use-in-user-turn",
        turn([{"type": "tool_use", "id": "t", "name": "lookup", "input": {}}]),
        400,
    ),
    (
        "tool-result-in-assistant-turn",
        turn([{"type": "tool_result", "tool_use_id": "t", "content": "x"}], role="assistant"),
        400,
    ),
    (
        "tool-use-without-id",
        turn([{"type": "tool_use", "name": "lookup", "input": {}}], role="assistant"),
        400,
    ),
    (
        "tool-use-input-a-string",
        turn([{"type": "tool_use", "id": "t", "name": "lookup", "input": "{}"}], role="assistant"),
        400,
    ),
    ("tool-result-without-id", after_tool_use({"type": "tool_result", "content": "x"}), 400),
    (
        "tool-result-content-a-number",
        after_tool_use({"type": "tool_result", "tool_use_id": "toolu_1", "content": 3}),
        400,
    ),
    (
        "tool-result-is-error-a-string",
        after_tool_use({"type": "tool_result", "tool_use_id": "toolu_1", "is_error": "yes"}),
        400,
    ),
    ("system-a-number", body(system=3), 400),
    ("system-an-object", body(system={"text": "Be brief."}), 400),
    ("system-image-block", body(system=[IMAGE]), 400),
    ("temperature-above-one", body(temperature=1.5), 400),
    ("temperature-string", body(temperature="warm"), 400),
    ("temperature-bool", body(temperature=True), 400),
    ("top-p-above-one", body(top_p=2), 400),
    ("top-k-negative", body(top_k=-1), 400),
    ("top-k-string", body(top_k="5"), 400),
    ("stop-sequences-a-string", body(stop_sequences="END"), 400),
    ("stop-sequences-too-many", body(stop_sequences=["a", "b", "c", "d", "e"]), 400),
    ("stop-sequence-empty", body(stop_sequences=[""]), 400),
    ("stream-a-string", body(stream="yes"), 400),
    ("tools-an-object", body(tools=TOOL), 400),
    ("tool-without-name", body(tools=[{"input_schema": {"type": "object"}}]), 400),
    ("tool-without-input-schema", body(tools=[{"name": "lookup"}]), 400),
    ("tool-input-schema-a-list", body(tools=[{"name": "lookup", "input_schema": []}]), 400),
    ("server-tool", body(tools=[{"type": "web_search_20250305", "name": "web_search"}]), 400),
    ("tool-choice-a-string", body(tools=[TOOL], tool_choice="auto"), 400),
    ("tool-choice-unknown-type", body(tools=[TOOL], tool_choice={"type": "sometimes"}), 400),
    ("tool-choice-tool-without-name", body(tools=[TOOL], tool_choice={"type": "tool"}), 400),
    ("tool-choice-tool-without-tools", body(tool_choice={"type": "tool", "name": "lookup"}), 400),
    (
        "tool-choice-parallel-a-string",
        body(tools=[TOOL], tool_choice={"type": "auto", "disable_parallel_tool_use": "y"}),
        400,
    ),
    ("thinking-a-string", body(thinking="on"), 400),
    ("thinking-unknown-type", body(thinking={"type": "maybe"}), 400),
    ("thinking-without-budget", body(max_tokens=5000, thinking={"type": "enabled"}), 400),
    (
        "thinking-budget-too-small",
        body(max_tokens=5000, thinking={"type": "enabled", "budget_tokens": 100}),
        400,
    ),
    (
        "thinking-budget-not-below-max-tokens",
        body(max_tokens=1024, thinking={"type": "enabled", "budget_tokens": 1024}),
        400,
    ),
    ("metadata-a-list", body(metadata=["tag"]), 400),
    ("metadata-user-id-a-number", body(metadata={"user_id": 5}), 400),
    ("unknown-field", body(temprature=0.5), 400),
    ("openai-field", body(max_completion_tokens=5), 400),
    ("container", body(container="container_1"), 400),
    ("mcp-servers", body(mcp_servers=[{"type": "url", "url": "https://x", "name": "x"}]), 400),
    ("output-format-not-json-schema", body(output_config={"format": {"type": "xml"}}), 400),
    ("output-config-a-string", body(output_config="json"), 400),
    ("context-management-a-string", body(context_management="clear"), 400),
    ("service-tier-a-number", body(service_tier=1), 400),
    ("prompt-beyond-the-context", turn("hello " * 33_000), 400),
    ("unknown-model", body(model="no-such-model"), 404),
    ("unpriced-model", body(model="unpriced"), 400),
    ("disabled-model", body(model="retired"), 404),
]


async def post(
    payload: bytes | dict[str, Any],
    headers: dict[str, str] | None = None,
    path: str = PATH,
) -> Any:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return await AsyncClient().post(
        path, data=raw, content_type="application/json", headers=headers or {}
    )


def assert_anthropic_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    payload = orjson.loads(response.content)
    assert set(payload) == {"type", "error"} and payload["type"] == "error"
    error = payload["error"]
    assert set(error) == {"type", "message"}
    assert error["type"] == ERROR_TYPES[status]
    assert isinstance(error["message"], str) and error["message"].strip()
    assert response["x-request-id"].startswith("req_")
    assert response["request-id"] == response["x-request-id"]
    return error


def key(customer: Customer) -> dict[str, str]:
    return {"x-api-key": customer.secret, "anthropic-version": "2023-06-01"}


@pytest.mark.parametrize(
    ("payload", "status"), [pytest.param(p, s, id=name) for name, p, s in BAD_BODIES]
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_it_rejects_a_bad_body_in_anthropics_error_shape(
    customer: Customer, payload: bytes | dict[str, Any], status: int, stream: bool
) -> None:
    if stream and isinstance(payload, dict):
        payload = {"stream": True, **payload}
    assert_anthropic_error(await post(payload, key(customer)), status)


def test_the_table_of_bad_bodies_is_large_and_has_unique_names() -> None:
    names = [row[0] for row in BAD_BODIES]
    assert len(names) >= 40
    assert len(set(names)) == len(names)


def test_the_valid_body_the_table_spoils_is_translated() -> None:
    from gateway.doors.messages import to_chat
    from gateway.validation import validate_chat

    validate_chat(to_chat(dict(VALID)))


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"x-api-key": "sk-sb-not-a-key"}, id="unknown-x-api-key"),
        pytest.param({"Authorization": "Bearer sk-sb-not-a-key"}, id="unknown-bearer"),
        pytest.param({"Authorization": "Basic abc"}, id="basic-auth"),
    ],
)
async def test_a_missing_or_bad_key_is_an_authentication_error(
    customers: dict[str, Customer], headers: dict[str, str]
) -> None:
    assert_anthropic_error(await post(VALID, headers), 401)
    assert_anthropic_error(await post(VALID, headers, PATH + "/count_tokens"), 401)


@pytest.mark.parametrize("who", ["revoked", "expired", "inactive"])
async def test_a_spoiled_key_is_an_authentication_error(
    customers: dict[str, Customer], who: str
) -> None:
    assert_anthropic_error(await post(VALID, key(customers[who])), 401)


async def test_a_model_outside_the_allowlist_is_a_permission_error(
    customers: dict[str, Customer],
) -> None:
    assert_anthropic_error(await post(VALID, key(customers["other-models-only"])), 403)


async def test_over_the_per_request_cap_is_a_402_not_to_be_retried(
    customers: dict[str, Customer],
) -> None:
    response = await post(VALID, key(customers["cost-capped"]))
    assert_anthropic_error(response, 402)
    assert response["x-should-retry"] == "false"


async def test_a_body_over_max_request_bytes_is_a_413(customer: Customer, settings: Any) -> None:
    settings.MAX_REQUEST_BYTES = 256
    response = await post(turn("x" * 1_000), key(customer))
    assert_anthropic_error(response, 413)


@pytest.mark.parametrize("method", ["get", "put", "delete"])
async def test_other_methods_are_a_405_in_anthropics_shape(customer: Customer, method: str) -> None:
    response = await getattr(AsyncClient(), method)(PATH, headers=key(customer))
    assert_anthropic_error(response, 405)


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        pytest.param(body(messages=MISSING), 400, id="no-messages"),
        pytest.param(body(model="no-such-model"), 404, id="unknown-model"),
        pytest.param(body(tools=[{"name": "x"}]), 400, id="bad-tool"),
        pytest.param(b"[]", 400, id="not-an-object"),
    ],
)
async def test_count_tokens_refuses_bad_input_alike(
    customer: Customer, payload: bytes | dict[str, Any], status: int
) -> None:
    assert_anthropic_error(await post(payload, key(customer), PATH + "/count_tokens"), status)
