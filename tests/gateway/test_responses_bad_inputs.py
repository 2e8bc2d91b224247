"""POST /v1/responses refuses bad input with a 4xx OpenAI error and touches no money.

The fixtures are those of test_bad_inputs.py (the catalog and customers committed once
for the module; afterwards no customer has a hold, a charge or a usage record, and no
upstream was called).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.test import AsyncClient

from gateway.doors.responses import chat_body, failed_error
from gateway.errors import GatewayError
from gateway.validation import validate_chat
from tests.gateway import test_bad_inputs as shared
from tests.gateway.test_bad_inputs import assert_openai_error

PATH = "/v1/responses"
VALID: dict[str, Any] = {"model": "demo", "input": "Hi"}
MISSING = object()
TOOL = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
USER = {"role": "user", "content": "Hi"}

pytestmark = pytest.mark.django_db

world = shared.world
upstream_calls = shared.upstream_calls
customers = shared.customers
customer = shared.customer


def body(**changes: Any) -> dict[str, Any]:
    """The valid request with some fields replaced (MISSING drops a field)."""
    result = dict(VALID)
    for name, value in changes.items():
        if value is MISSING:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def items(*given: Any) -> dict[str, Any]:
    return body(input=list(given))


def part(**fields: Any) -> dict[str, Any]:
    return items({"role": "user", "content": [fields]})


def call(**fields: Any) -> dict[str, Any]:
    base = {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"}
    merged = {**base, **fields}
    return items(USER, {name: value for name, value in merged.items() if value is not MISSING})


def output(**fields: Any) -> dict[str, Any]:
    base = {"type": "function_call_output", "call_id": "c1", "output": "ok"}
    return items(USER, {**base, **fields})


def text_format(**fields: Any) -> dict[str, Any]:
    return body(text={"format": fields})


UNSUPPORTED = "unsupported_parameter"

# (id, request body: raw bytes or a JSON-able dict, expected status, param, code or None)
BAD_BODIES: list[tuple[str, bytes | dict[str, Any], int, str | None, str | None]] = [
    ("not-json", b"{model: demo}", 400, None, None),
    ("empty-body", b"", 400, None, None),
    ("json-array-body", b'[{"model": "demo"}]', 400, None, None),
    ("infinite-number", b'{"model": "demo", "input": "Hi", "temperature": 1e999}', 400, None, None),
    ("missing-model", body(model=MISSING), 400, "model", None),
    ("model-is-a-number", body(model=42), 400, "model", None),
    ("model-is-blank", body(model="  "), 400, "model", None),
    ("a-chat-body", {"model": "demo", "messages": [USER]}, 400, "messages", None),
    ("unknown-field-n", body(n=2), 400, "n", None),
    ("missing-input", body(input=MISSING), 400, "input", None),
    ("null-input", body(input=None), 400, "input", None),
    ("input-is-a-number", body(input=42), 400, "input", None),
    ("input-is-empty", body(input=[]), 400, "input", None),
    ("input-is-one-object", body(input=USER), 400, "input", None),
    ("input-item-is-a-string", items("Hi"), 400, "input[0]", None),
    (
        "input-item-unknown-type",
        items({"type": "computer_call_output"}),
        400,
        "input[0].type",
        UNSUPPORTED,
    ),
    (
        "input-item-web-search-call",
        items({"type": "web_search_call", "id": "ws"}),
        400,
        "input[0].type",
        UNSUPPORTED,
    ),
    (
        "input-item-reference",
        items({"type": "item_reference", "id": "msg_1"}),
        400,
        "input[0]",
        UNSUPPORTED,
    ),
    (
        "input-only-reasoning",
        items({"type": "reasoning", "id": "rs", "summary": []}),
        400,
        "input",
        None,
    ),
    ("message-role-tool", items({"role": "tool", "content": "Hi"}), 400, "input[0].role", None),
    (
        "message-without-role",
        items({"type": "message", "content": "Hi"}),
        400,
        "input[0].role",
        None,
    ),
    ("message-without-content", items({"role": "user"}), 400, "input[0].content", None),
    (
        "message-content-empty-list",
        items({"role": "user", "content": []}),
        400,
        "input[0].content",
        None,
    ),
    (
        "message-content-a-number",
        items({"role": "user", "content": 7}),
        400,
        "input[0].content",
        None,
    ),
    ("part-without-type", part(text="Hi"), 400, "input[0].content[0]", None),
    ("part-chat-text-type", part(type="text", text="Hi"), 400, "input[0].content[0].type", None),
    ("input-text-without-text", part(type="input_text"), 400, "input[0].content[0].text", None),
    (
        "input-text-is-a-number",
        part(type="input_text", text=5),
        400,
        "input[0].content[0].text",
        None,
    ),
    (
        "input-image-by-file-id",
        part(type="input_image", file_id="file_1"),
        400,
        "input[0].content[0].file_id",
        UNSUPPORTED,
    ),
    (
        "input-image-without-url",
        part(type="input_image"),
        400,
        "input[0].content[0].image_url",
        None,
    ),
    (
        "input-image-bad-detail",
        part(type="input_image", image_url="https://x/y.png", detail="max"),
        400,
        "input[0].content[0].detail",
        None,
    ),
    (
        "input-file",
        part(type="input_file", file_id="file_1"),
        400,
        "input[0].content[0]",
        UNSUPPORTED,
    ),
    (
        "input-audio",
        part(type="input_audio", input_audio={"data": "UklGRg==", "format": "wav"}),
        400,
        "input[0].content[0]",
        UNSUPPORTED,
    ),
    (
        "image-in-a-system-message",
        items(
            {
                "role": "system",
                "content": [{"type": "input_image", "image_url": "https://x/y.png"}],
            },
            USER,
        ),
        400,
        "input[0].content",
        UNSUPPORTED,
    ),
    ("function-call-without-call-id", call(call_id=MISSING), 400, "input[1].call_id", None),
    ("function-call-without-name", call(name=""), 400, "input[1].name", None),
    ("function-call-arguments-object", call(arguments={"q": 1}), 400, "input[1].arguments", None),
    ("function-output-without-call-id", output(call_id=None), 400, "input[1].call_id", None),
    ("function-output-is-a-number", output(output=3), 400, "input[1].output", None),
    (
        "function-output-with-a-file",
        output(output=[{"type": "input_file", "file_id": "file_1"}]),
        400,
        "input[1].output[0]",
        UNSUPPORTED,
    ),
    ("instructions-not-a-string", body(instructions=["Be brief."]), 400, "instructions", None),
    ("tools-not-an-array", body(tools=TOOL), 400, "tools", None),
    ("tool-without-type", body(tools=[{"name": "lookup"}]), 400, "tools[0]", None),
    ("tool-web-search", body(tools=[{"type": "web_search"}]), 400, "tools[0].type", UNSUPPORTED),
    (
        "tool-web-search-preview",
        body(tools=[{"type": "web_search_preview"}]),
        400,
        "tools[0].type",
        UNSUPPORTED,
    ),
    (
        "tool-file-search",
        body(tools=[{"type": "file_search", "vector_store_ids": ["vs"]}]),
        400,
        "tools[0].type",
        UNSUPPORTED,
    ),
    (
        "tool-code-interpreter",
        body(tools=[{"type": "code_interpreter", "container": {"type": "auto"}}]),
        400,
        "tools[0].type",
        UNSUPPORTED,
    ),
    (
        "tool-mcp",
        body(tools=[{"type": "mcp", "server_label": "x"}]),
        400,
        "tools[0].type",
        UNSUPPORTED,
    ),
    (
        "tool-custom",
        body(tools=[{"type": "custom", "name": "apply_patch"}]),
        400,
        "tools[0].type",
        UNSUPPORTED,
    ),
    (
        "tool-in-chat-shape",
        body(tools=[{"type": "function", "function": {"name": "f"}}]),
        400,
        "tools[0].name",
        None,
    ),
    (
        "tool-parameters-an-array",
        body(tools=[{**TOOL, "parameters": []}]),
        400,
        "tools[0].parameters",
        None,
    ),
    ("tool-strict-a-string", body(tools=[{**TOOL, "strict": "yes"}]), 400, "tools[0].strict", None),
    ("tool-choice-unknown-word", body(tool_choice="sometimes"), 400, "tool_choice", None),
    (
        "tool-choice-hosted-tool",
        body(tools=[TOOL], tool_choice={"type": "web_search_preview"}),
        400,
        "tool_choice",
        UNSUPPORTED,
    ),
    (
        "tool-choice-allowed-tools",
        body(tools=[TOOL], tool_choice={"type": "allowed_tools", "mode": "auto", "tools": []}),
        400,
        "tool_choice",
        UNSUPPORTED,
    ),
    (
        "tool-choice-function-without-tools",
        body(tool_choice={"type": "function", "name": "lookup"}),
        400,
        "tool_choice",
        None,
    ),
    (
        "tool-choice-function-without-name",
        body(tools=[TOOL], tool_choice={"type": "function"}),
        400,
        "tool_choice.name",
        None,
    ),
    (
        "parallel-tool-calls-a-string",
        body(parallel_tool_calls="yes"),
        400,
        "parallel_tool_calls",
        None,
    ),
    ("max-output-tokens-zero", body(max_output_tokens=0), 400, "max_output_tokens", None),
    ("max-output-tokens-a-string", body(max_output_tokens="100"), 400, "max_output_tokens", None),
    ("max-output-tokens-a-boolean", body(max_output_tokens=True), 400, "max_output_tokens", None),
    (
        "max-output-tokens-above-the-cap",
        body(max_output_tokens=5_000),
        400,
        "max_output_tokens",
        "invalid_value",
    ),
    ("temperature-too-high", body(temperature=3), 400, "temperature", None),
    ("top-p-negative", body(top_p=-0.5), 400, "top_p", None),
    ("reasoning-a-string", body(reasoning="high"), 400, "reasoning", None),
    (
        "reasoning-effort-unknown",
        body(reasoning={"effort": "extreme"}),
        400,
        "reasoning.effort",
        None,
    ),
    (
        "reasoning-summary-unknown",
        body(reasoning={"summary": "long"}),
        400,
        "reasoning.summary",
        None,
    ),
    ("text-a-string", body(text="json"), 400, "text", None),
    ("text-format-a-string", body(text={"format": "json"}), 400, "text.format", None),
    ("text-format-yaml", text_format(type="yaml"), 400, "text.format.type", None),
    (
        "json-schema-without-name",
        text_format(type="json_schema", schema={}),
        400,
        "text.format.name",
        None,
    ),
    (
        "json-schema-in-chat-shape",
        text_format(type="json_schema", json_schema={"name": "a", "schema": {}}),
        400,
        "text.format.name",
        None,
    ),
    (
        "json-schema-schema-a-list",
        text_format(type="json_schema", name="a", schema=[]),
        400,
        "text.format.schema",
        None,
    ),
    ("text-verbosity-unknown", body(text={"verbosity": "loud"}), 400, "text.verbosity", None),
    ("store-true", body(store=True), 400, "store", UNSUPPORTED),
    ("store-a-string", body(store="false"), 400, "store", None),
    (
        "previous-response-id",
        body(previous_response_id="resp_123"),
        400,
        "previous_response_id",
        UNSUPPORTED,
    ),
    ("background", body(background=True), 400, "background", UNSUPPORTED),
    ("conversation", body(conversation="conv_123"), 400, "conversation", UNSUPPORTED),
    ("stored-prompt", body(prompt={"id": "pmpt_123"}), 400, "prompt", UNSUPPORTED),
    ("include-a-string", body(include="reasoning.encrypted_content"), 400, "include", None),
    ("include-numbers", body(include=[1]), 400, "include", None),
    ("truncation-unknown", body(truncation="middle"), 400, "truncation", None),
    ("top-logprobs-too-many", body(top_logprobs=50), 400, "top_logprobs", None),
    ("metadata-a-list", body(metadata=["a"]), 400, "metadata", None),
    ("metadata-number-values", body(metadata={"a": 1}), 400, "metadata", None),
    ("stream-a-string", body(stream="yes"), 400, "stream", None),
    ("stream-options-a-string", body(stream=True, stream_options="x"), 400, "stream_options", None),
    ("prompt-cache-key-a-number", body(prompt_cache_key=7), 400, "prompt_cache_key", None),
    ("safety-identifier-a-number", body(safety_identifier=7), 400, "safety_identifier", None),
    ("user-a-number", body(user=7), 400, "user", None),
    ("service-tier-priority", body(service_tier="priority"), 400, "service_tier", UNSUPPORTED),
    ("service-tier-flex", body(service_tier="flex"), 400, "service_tier", UNSUPPORTED),
]


async def post(
    payload: bytes | dict[str, Any], secret: str | None, headers: dict[str, str] | None = None
) -> Any:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    sent = dict(headers or {})
    if secret is not None:
        sent["Authorization"] = f"Bearer {secret}"
    return await AsyncClient().post(PATH, data=raw, content_type="application/json", headers=sent)


@pytest.mark.parametrize(
    ("payload", "status", "param", "code"),
    [pytest.param(p, s, m, c, id=name) for name, p, s, m, c in BAD_BODIES],
)
async def test_it_rejects_a_bad_body_with_an_openai_error(
    customer: Any, payload: bytes | dict[str, Any], status: int, param: str | None, code: str | None
) -> None:
    response = await post(payload, customer.secret)
    error = assert_openai_error(response, status, code)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


def test_the_table_is_large_and_has_unique_names() -> None:
    names = [row[0] for row in BAD_BODIES]
    assert len(names) >= 40
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"input": [USER, {"type": "reasoning", "id": "rs", "summary": []}]},
        {"store": False, "include": ["reasoning.encrypted_content"], "truncation": "disabled"},
        {"tools": [TOOL], "tool_choice": {"type": "function", "name": "lookup"}},
        {"text": {"format": {"type": "json_schema", "name": "a", "schema": {}}}},
        {"reasoning": {"effort": "high", "summary": "auto"}, "text": {"verbosity": "low"}},
        {"instructions": "Be brief.", "max_output_tokens": 100, "metadata": {"a": "b"}},
    ],
)
def test_the_valid_bodies_the_table_spoils_pass(fields: dict[str, Any]) -> None:
    validate_chat(chat_body(body(**fields)))


@pytest.mark.parametrize("field", ["store", "previous_response_id", "conversation"])
def test_what_needs_stored_responses_is_refused_saying_why(field: str) -> None:
    value = True if field == "store" else "resp_1"
    with pytest.raises(GatewayError) as caught:
        chat_body(body(**{field: value}))

    assert "does not store responses" in caught.value.message
    assert "'input'" in caught.value.message


@pytest.mark.parametrize("kind", ["web_search", "file_search", "image_generation"])
def test_a_tool_that_is_not_a_function_is_refused_by_its_type(kind: str) -> None:
    with pytest.raises(GatewayError) as caught:
        chat_body(body(tools=[TOOL, {"type": kind}]))

    assert caught.value.param == "tools[1].type"
    assert f"'{kind}'" in caught.value.message and "function" in caught.value.message


async def test_it_rejects_a_prompt_beyond_the_context_length_naming_the_input(
    customer: Any,
) -> None:
    response = await post(body(input="hello " * 33_000), customer.secret)

    error = assert_openai_error(response, 400, "context_length_exceeded")
    assert error["param"] == "input"
    assert "in the input" in error["message"] and "messages" not in error["message"]


async def test_it_refuses_a_missing_key(customers: Any) -> None:
    response = await post(VALID, None)

    assert_openai_error(response, 401, "invalid_api_key")


async def test_it_answers_an_unknown_model_with_404(customer: Any) -> None:
    response = await post(body(model="gpt-5-codex"), customer.secret)

    error = assert_openai_error(response, 404, "model_not_found")
    assert error["param"] == "model"


async def test_it_refuses_a_model_the_key_may_not_use(customers: dict[str, Any]) -> None:
    response = await post(VALID, customers["other-models-only"].secret)

    assert_openai_error(response, 403, "model_not_allowed")


async def test_it_refuses_a_worst_case_above_the_max_cost_header(customer: Any) -> None:
    response = await post(VALID, customer.secret, {"X-Max-Cost-Micro-Usd": "1"})

    assert_openai_error(response, 402, "max_cost_exceeded")


async def test_it_answers_get_with_405(customer: Any) -> None:
    response = await AsyncClient().get(PATH, headers={"Authorization": f"Bearer {customer.secret}"})

    assert_openai_error(response, 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("code", "failed"),
    [
        ("context_length_exceeded", "context_length_exceeded"),
        ("insufficient_credits", "insufficient_quota"),
        ("spend_cap_exceeded", "insufficient_quota"),
        ("rate_limit_exceeded", "rate_limit_exceeded"),
        ("upstream_error", "server_error"),
        ("internal_error", "server_error"),
        (None, "server_error"),
    ],
)
def test_a_failed_stream_carries_the_code_clients_act_on(code: str | None, failed: str) -> None:
    error = failed_error({"message": "it broke", "code": code})

    assert error == {"code": failed, "message": "it broke"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/responses/resp_123"),
        ("delete", "/v1/responses/resp_123"),
        ("get", "/v1/responses/resp_123/input_items"),
        ("post", "/v1/responses/resp_123/cancel"),
    ],
)
async def test_a_stored_response_is_a_404_saying_nothing_is_stored(
    customer: Any, method: str, path: str
) -> None:
    client = AsyncClient()
    response = await getattr(client, method)(
        path, headers={"Authorization": f"Bearer {customer.secret}"}
    )

    error = assert_openai_error(response, 404, "response_not_found")
    assert "does not store responses" in error["message"] and path in error["message"]
