"""The simple chat API for web front ends: POST /chat/stream and GET /chat/models.

A front door like /v1/messages (gateway/doors/): it turns its small camelCase body into
the canonical chat body, runs it through the one call lifecycle (`gateway.calls`:
checked, limited, held, routed with fallback, settled once) and turns the canonical
chunks into `data: {"content": "…"}` events. It holds no money logic.

Callers authenticate with `Authorization: Bearer sk-sb-…` (no CSRF: the key is the
credential) or with the console session, as a page of the same site does; a session
caller must send the CSRF token (`X-CSRFToken`), since a browser sends the session
cookie to any page that posts here. A session caller is billed through the user's
web key, exactly like the web chat.

Errors are `{"error": "…"}` (plus `retryAfter`, `availableModels`, `maxLength` and
`requestLength` where the README says), never the OpenAI error object.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from billing.models import UsageRecord
from billing.money import micro_to_usd
from chat.turns import delta_text, web_key
from gateway import calls
from gateway.auth import KeyInfo, authenticate
from gateway.catalog import Catalog, ModelInfo
from gateway.doors import read_json
from gateway.errors import GatewayError, invalid
from gateway.ratelimit import client_address
from gateway.tokens import count_prompt
from gateway.views import api_view, json_response, open_request_call

FIELDS = ("messages", "model", "ragEnabled", "temperature", "maxTokens", "topP", "stopSequences")
ROLES = ("system", "user", "assistant")
MAX_STOP_SEQUENCES = 4
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Fields of the canonical body by the name this API's callers know them.
CANONICAL_NAMES = {"max_tokens": "maxTokens", "top_p": "topP", "stop": "stopSequences"}
FORM_TYPES = {"multipart/form-data", "application/x-www-form-urlencoded"}


class ChatApiError(GatewayError):
    """An error whose whole JSON body is given (the API's own extra fields)."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, str(body["error"]), headers=headers)
        self.body = body


def render_error(exc: GatewayError, headers: dict[str, str]) -> HttpResponse:
    """`{"error": "…"}`; a 429 is `{"error": "Rate limit exceeded", "retryAfter": S}`, and
    any answer with `Retry-After` says it in the body too."""
    status = exc.status
    if isinstance(exc, ChatApiError):
        body = exc.body
    elif status == 429 and "Retry-After" in exc.headers:
        body = {"error": "Rate limit exceeded"}
    elif status == 429:
        # More tokens than the key's per-minute limit allows at all: waiting never helps.
        status, body = 400, {"error": exc.message}
    else:
        body = {"error": exc.message}
    retry_after = exc.headers.get("Retry-After")
    if retry_after is not None and retry_after.isdigit():
        body = {**body, "retryAfter": int(retry_after)}
    return json_response(body, status=status, headers={**headers, **exc.headers})


def _session_view(request: HttpRequest) -> HttpResponse:
    """What the CSRF check is asked about: a view that is not CSRF-exempt."""
    return HttpResponse()


_csrf = CsrfViewMiddleware(_session_view)


def _check_csrf(request: HttpRequest) -> None:
    """Django's CSRF check for a session caller (the view itself is CSRF-exempt for keys)."""
    if request.content_type in FORM_TYPES:
        raise invalid("Send the body as JSON (Content-Type: application/json).")
    if _csrf.process_view(request, _session_view, (), {}) is not None:
        raise GatewayError(
            403,
            "CSRF check failed: a signed-in page must send the csrftoken cookie's value "
            "in the X-CSRFToken header (or use an API key).",
        )


async def caller_key(request: HttpRequest, *, required: bool = True) -> KeyInfo | None:
    """The key a request is billed to: its bearer key, else the signed-in user's web key
    (after the CSRF check for unsafe methods); 401 without either when `required`."""
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        return await authenticate(authorization, client=client_address(request))
    user = await request.auser()  # type: ignore[attr-defined]
    if user.is_authenticated:
        if request.method not in SAFE_METHODS:
            _check_csrf(request)
        return await web_key(user)
    if required:
        raise GatewayError(
            401,
            "Sign in, or send an API key as 'Authorization: Bearer sk-sb-…'.",
            code="invalid_api_key",
        )
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _range(body: dict[str, Any], name: str, low: float, high: float, *, whole: bool) -> None:
    value = body.get(name)
    if value is None:
        return
    shown = (
        f"an integer from {low:,} to {high:,}" if whole else f"a number from {low:g} to {high:g}"
    )
    if not (_is_number(value) and (not whole or isinstance(value, int)) and low <= value <= high):
        raise invalid(f"{name} must be {shown}.", name)


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise invalid("messages must be a non-empty array of {role, content}.", "messages")
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(f"{where} must be an object with role and content.", where)
        extra = sorted(set(message) - {"role", "content"})
        if extra:
            raise invalid(f"{where}.{extra[0]}: unknown field; a message has role and content.")
        if message.get("role") not in ROLES:
            raise invalid(f"{where}.role must be one of {', '.join(ROLES)}.", f"{where}.role")
        if not isinstance(message.get("content"), str):
            raise invalid(f"{where}.content must be a string.", f"{where}.content")
    return value


def _stop_sequences(value: Any) -> list[str]:
    if (
        not isinstance(value, list)
        or len(value) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and s for s in value)
    ):
        raise invalid(
            f"stopSequences must be an array of at most {MAX_STOP_SEQUENCES} non-empty strings.",
            "stopSequences",
        )
    return value


def chat_body(request: dict[str, Any], *, default_model: str | None) -> dict[str, Any]:
    """The canonical (OpenAI chat, streamed) body for a /chat/stream request body."""
    unknown = sorted(set(request) - set(FIELDS))
    if unknown:
        raise invalid(f"{unknown[0]}: unknown field; this API takes {', '.join(FIELDS)}.")
    if "messages" not in request:
        raise invalid("messages is required.", "messages")
    model = request.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip() or len(model) > 200):
        raise invalid("model must be a model id (a non-empty string).", "model")
    _range(request, "temperature", 0, 2, whole=False)
    _range(request, "topP", 0, 1, whole=False)
    _range(request, "maxTokens", 1, 10_000_000, whole=True)
    rag = request.get("ragEnabled")
    if rag is not None and not isinstance(rag, bool):
        raise invalid("ragEnabled must be true or false.", "ragEnabled")
    body: dict[str, Any] = {
        "model": model or default_model,
        "messages": _messages(request["messages"]),
        "stream": True,
    }
    for name, canonical in (("temperature", "temperature"), ("topP", "top_p")):
        if request.get(name) is not None:
            body[canonical] = request[name]
    if request.get("maxTokens") is not None:
        body["max_tokens"] = request["maxTokens"]
    if request.get("stopSequences") is not None:
        body["stop"] = _stop_sequences(request["stopSequences"])
    if rag:
        body["rag"] = {"enabled": True}
    return body


def default_model(catalog: Catalog, key: KeyInfo) -> str | None:
    """CHAT_API_DEFAULT_MODEL, else the first model (by id) this key may call."""
    if settings.CHAT_API_DEFAULT_MODEL:
        return str(settings.CHAT_API_DEFAULT_MODEL)
    return next(iter(_callable_ids(catalog, key)), None)


def _callable_ids(catalog: Catalog, key: KeyInfo | None) -> list[str]:
    return sorted(m.id for m in catalog.callable() if key is None or key.allows_model(m.id))


async def _explained(exc: GatewayError, body: dict[str, Any], key: KeyInfo) -> GatewayError:
    """A refusal from the call lifecycle in this API's words and shapes."""
    catalog = await calls.current_catalog()
    if exc.code == "model_not_found":
        return ChatApiError(
            404,
            {"error": "Model not found", "availableModels": _callable_ids(catalog, key)},
            exc.headers,
        )
    if exc.code == "context_length_exceeded":
        model = catalog.resolve(body["model"])
        assert model is not None  # the lifecycle measured the prompt against it
        prompt = await asyncio.to_thread(count_prompt, body["messages"], None)
        return ChatApiError(
            400,
            {
                "error": "Context length exceeded",
                "maxLength": model.context_length,
                "requestLength": prompt + (body.get("max_tokens") or 0),
            },
            exc.headers,
        )
    if exc.param in CANONICAL_NAMES:
        # The lifecycle names the chat-completions field; the caller sent its own.
        return invalid(f"{CANONICAL_NAMES[exc.param]}: {exc.message}", CANONICAL_NAMES[exc.param])
    if exc.param is not None and exc.param.startswith("rag"):
        return invalid(f"ragEnabled: {exc.message}", "ragEnabled")
    return exc


def _summary(call: calls.Call, usage: dict[str, Any]) -> dict[str, Any]:
    """The last event before [DONE]: what the answer used and cost."""
    charge = int(usage["cost_micro_usd"])
    return {
        "done": True,
        "model": call.model.id,
        "requestId": call.request_id,
        "usage": {
            "promptTokens": usage["prompt_tokens"],
            "completionTokens": usage["completion_tokens"],
            "totalTokens": usage["total_tokens"],
        },
        "cost": {"microUsd": charge, "usd": f"{micro_to_usd(charge):.6f}"},
    }


async def _events(call: calls.Call) -> AsyncIterator[bytes]:
    """The call's chunks as this API's events; closing it (a client gone) ends the call."""
    async with contextlib.aclosing(call.chunks()) as chunks:
        async for chunk in chunks:
            if "error" in chunk:
                yield calls.sse({"error": chunk["error"]["message"]})
            elif usage := chunk.get("usage"):
                if call.rag_sources is not None:
                    yield calls.sse({"sources": call.rag_sources})
                yield calls.sse(_summary(call, usage))
                yield calls.DONE
            elif text := delta_text(chunk):
                yield calls.sse({"content": text})


@api_view(("POST",), key_required=False, render_error=render_error)
async def stream(request: HttpRequest) -> StreamingHttpResponse:
    """POST /chat/stream: one streamed answer, billed like /v1/chat/completions."""
    request_body = read_json(request)
    key = await caller_key(request)
    assert key is not None
    request.api_key = key  # type: ignore[attr-defined]
    body = chat_body(request_body, default_model=default_model(await calls.current_catalog(), key))
    if body["model"] is None:
        raise ChatApiError(404, {"error": "Model not found", "availableModels": []})
    try:
        call = await open_request_call(request, body, source=UsageRecord.Source.CHAT_STREAM)
    except GatewayError as exc:
        raise await _explained(exc, body, key) from exc
    try:
        await call.open_stream()
    except GatewayError as exc:
        exc.headers = {**call.headers, **exc.headers}
        raise
    response = StreamingHttpResponse(_events(call), content_type="text/event-stream")
    response["X-Accel-Buffering"] = "no"
    for name, value in call.headers.items():
        response[name] = value
    return response


def per_thousand(micro_per_million: int | None) -> str | None:
    """USD per 1,000 tokens, exactly, from micro-USD per million tokens ("0.002")."""
    if micro_per_million is None:
        return None
    usd = Decimal(micro_per_million) / Decimal(1_000_000_000)
    return f"{usd.normalize():f}" if usd else "0"


def _model_entry(model: ModelInfo) -> dict[str, Any]:
    return {
        "id": model.id,
        "name": model.title or model.id,
        "contextLength": model.context_length,
        "pricing": {
            "prompt": per_thousand(model.input_price),
            "completion": per_thousand(model.output_price),
        },
    }


@api_view(("GET",), key_required=False, render_error=render_error)
async def models(request: HttpRequest) -> HttpResponse:
    """GET /chat/models: the models the caller may use (every callable one when anonymous),
    with context length and USD prices per 1K tokens after the operator's markup."""
    key = await caller_key(request, required=False)
    if key is not None:
        request.api_key = key  # type: ignore[attr-defined]
    catalog = await calls.current_catalog()
    entries = [_model_entry(catalog.models[i]) for i in _callable_ids(catalog, key)]
    return json_response({"models": entries})
