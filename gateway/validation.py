"""Parse and validate a chat-completions body; every problem is a 400 naming the param."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import GatewayError, invalid

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
# The content parts OpenAI's chat API defines, each with a field named like its type:
# a string (None here), or an object with all of these string members (any, for a
# file). Anything else is refused rather than forwarded to an upstream.
CONTENT_PARTS: dict[str, tuple[str, ...] | None] = {
    "text": None,
    "refusal": None,
    "image_url": ("url",),
    "input_audio": ("data", "format"),
    "file": ("file_id", "file_data"),
}
MAX_N = 16
KNOWN_FIELDS = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "functions",
    "function_call",
    "metadata",
    "store",
    "reasoning_effort",
    "service_tier",
    "modalities",
    "prediction",
    "audio",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
    "top_k",
}


def parse_json(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise invalid("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The request body is not valid JSON (UTF-8): {exc}") from exc
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_number(value) or value != value or not low <= value <= high:
        raise invalid(f"'{name}' must be a number between {low:g} and {high:g}.", name)


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_int(value) or not low <= value <= high:
        raise invalid(f"'{name}' must be an integer between {low} and {high}.", name)


def _boolean(body: dict[str, Any], name: str) -> None:
    if body.get(name) is not None and not isinstance(body[name], bool):
        raise invalid(f"'{name}' must be a boolean.", name)


def _content(message: dict[str, Any], index: int) -> None:
    param = f"messages[{index}].content"
    content = message.get("content")
    role = message["role"]
    if content is None:
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return
        raise invalid(f"'{param}' is required for a {role} message.", param)
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not content:
        raise invalid(f"'{param}' must be a string or a non-empty array of content parts.", param)
    for part_index, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid(f"'{param}[{part_index}]' must be an object with a 'type'.", param)
        _content_part(part, f"{param}[{part_index}]")


def _content_part(part: dict[str, Any], param: str) -> None:
    kind = part["type"]
    if kind not in CONTENT_PARTS:
        raise invalid(
            f"'{param}.type' must be one of {', '.join(sorted(CONTENT_PARTS))}; got {kind!r}.",
            f"{param}.type",
        )
    members, value, field = CONTENT_PARTS[kind], part.get(kind), f"{param}.{kind}"
    if members is None:
        if not isinstance(value, str):
            raise invalid(f"'{field}' must be a string.", field)
        return
    present = [isinstance(value, dict) and isinstance(value.get(m), str) for m in members]
    if not (any(present) if kind == "file" else all(present)):
        joined = (" or " if kind == "file" else " and ").join(members)
        raise invalid(f"'{field}' must be an object with {joined}.", field)


def _messages(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise invalid("'messages' is required.", "messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty array.", "messages")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(f"'{param}' must be an object.", param)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise invalid(
                f"'{param}.role' must be one of {', '.join(sorted(ROLES))}; got {role!r}.",
                f"{param}.role",
            )
        _content(message, index)
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise invalid(f"'{param}.tool_call_id' is required for a tool message.", param)
        if message.get("name") is not None and not isinstance(message["name"], str):
            raise invalid(f"'{param}.name' must be a string.", f"{param}.name")
        tool_calls = message.get("tool_calls")
        if tool_calls is not None and (role != "assistant" or not isinstance(tool_calls, list)):
            raise invalid(f"'{param}.tool_calls' must be an array on an assistant message.", param)


def _tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("'tools' must be an array.", "tools")
        for index, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if (
                not isinstance(tool, dict)
                or tool.get("type") != "function"
                or not isinstance(function, dict)
                or not isinstance(function.get("name"), str)
                or not function["name"]
            ):
                raise invalid(
                    f"'tools[{index}]' must be {{'type': 'function', 'function': {{'name': …}}}}.",
                    f"tools[{index}]",
                )
            if function.get("parameters") is not None and not isinstance(
                function["parameters"], dict
            ):
                raise invalid(
                    f"'tools[{index}].function.parameters' must be a JSON schema object.",
                    f"tools[{index}].function.parameters",
                )
    choice = body.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in {"none", "auto", "required"}:
            raise invalid(
                "'tool_choice' must be 'none', 'auto', 'required' or an object.", "tool_choice"
            )
        return
    if not isinstance(choice, dict) or not isinstance(choice.get("function"), dict):
        raise invalid(
            "'tool_choice' must be 'none', 'auto', 'required' or an object.", "tool_choice"
        )
    if not tools:
        raise invalid("'tool_choice' names a function but no 'tools' were given.", "tool_choice")


def _response_format(body: dict[str, Any]) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if not isinstance(kind, str) or kind not in {"text", "json_object", "json_schema"}:
        raise invalid(
            "'response_format.type' must be 'text', 'json_object' or 'json_schema'.",
            "response_format",
        )
    if fmt["type"] == "json_schema":
        schema = fmt.get("json_schema")
        if (
            not isinstance(schema, dict)
            or not isinstance(schema.get("name"), str)
            or not isinstance(schema.get("schema", {}), dict)
        ):
            raise invalid(
                "'response_format.json_schema' must be an object with a 'name' and a 'schema'.",
                "response_format.json_schema",
            )


def _stop(body: dict[str, Any]) -> None:
    stop = body.get("stop")
    if stop is None or isinstance(stop, str):
        return
    if (
        not isinstance(stop, list)
        or len(stop) > 4
        or not all(isinstance(s, str) and s for s in stop)
    ):
        raise invalid("'stop' must be a string or an array of at most 4 strings.", "stop")


# Fields that make the upstream charge something other than its text token prices.
# Switchboard bills every call at the model's text prices, so a call with one of these
# would be billed less than it costs: refused, never passed through.
PRICED_APART = {
    "audio": "audio output is billed at the model's audio token prices",
    "web_search_options": "web search is billed per search on top of the tokens",
    "prediction": "a prediction's rejected tokens are billed as output beyond what is reserved",
}
PLAIN_SERVICE_TIERS = {"auto", "default"}


def _unsupported(param: str, why: str) -> GatewayError:
    return invalid(
        f"'{param}' is not supported: {why}, and Switchboard bills the plain text price, "
        f"so it cannot price this request. Remove '{param}'.",
        param,
        "unsupported_parameter",
    )


def _priced_as_text(body: dict[str, Any]) -> None:
    """Refuse what the upstream prices apart from text tokens (see PRICED_APART)."""
    tier = body.get("service_tier")
    if tier is not None:
        if not isinstance(tier, str):
            raise invalid("'service_tier' must be a string.", "service_tier")
        if tier not in PLAIN_SERVICE_TIERS:
            raise _unsupported(
                "service_tier",
                f"the '{tier}' tier is billed at its own prices (only 'auto' and 'default' "
                "are served)",
            )
    modalities = body.get("modalities")
    if modalities is not None:
        if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
            raise invalid("'modalities' must be an array of strings.", "modalities")
        if "audio" in modalities:
            raise _unsupported("modalities", PRICED_APART["audio"])
    for name, why in PRICED_APART.items():
        if body.get(name) is not None:
            raise _unsupported(name, why)
    for index, message in enumerate(body["messages"]):
        content = message.get("content")
        for part_index, part in enumerate(content if isinstance(content, list) else ()):
            if part["type"] == "input_audio":
                raise _unsupported(
                    f"messages[{index}].content[{part_index}]",
                    "input_audio is billed at the model's audio token prices",
                )


def validate_chat(body: dict[str, Any]) -> None:
    """Raise a 400 GatewayError for the first problem found in a chat request."""
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        raise invalid(f"Unrecognized request argument supplied: {', '.join(unknown)}", unknown[0])
    model = body.get("model")
    if model is None:
        raise invalid("'model' is required.", "model")
    if not isinstance(model, str) or not model.strip() or len(model) > 200:
        raise invalid("'model' must be a non-empty string.", "model")
    _messages(body)
    _boolean(body, "stream")
    _boolean(body, "logprobs")
    _boolean(body, "parallel_tool_calls")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _integer(body, "max_tokens", 1, 10_000_000)
    _integer(body, "max_completion_tokens", 1, 10_000_000)
    _integer(body, "n", 1, MAX_N)
    _integer(body, "top_logprobs", 0, 20)
    _integer(body, "seed", -(2**63), 2**63 - 1)
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise invalid("'user' must be a string.", "user")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise invalid("'stream_options' must be an object.", "stream_options")
        if not body.get("stream"):
            raise invalid(
                "'stream_options' is only allowed when 'stream' is true.", "stream_options"
            )
        _boolean(options, "include_usage")
    logit_bias = body.get("logit_bias")
    if logit_bias is not None and (
        not isinstance(logit_bias, dict)
        or not all(_is_number(v) and -100 <= v <= 100 for v in logit_bias.values())
    ):
        raise invalid(
            "'logit_bias' must map token ids to numbers between -100 and 100.", "logit_bias"
        )
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        raise invalid("'metadata' must be an object.", "metadata")
    _stop(body)
    _tools(body)
    _response_format(body)
    _priced_as_text(body)


def requested_output_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens")
    return value if value is not None else body.get("max_tokens")


def too_large(size: int, limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"Request body of {size} bytes exceeds the limit of {limit} bytes.",
        code="request_too_large",
    )
