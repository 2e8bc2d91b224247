"""The request lifecycle shared by /v1 and the web chat: check, reserve, route, relay, settle.

`prepare()` does everything before the upstream is called (validation, model,
policy, limits, the credit hold). `complete()` and `open_stream()` + `relay()` call
the upstream with fallback, and every path ends in exactly one `settle()`: the real
cost charged (never more than was held), the hold released, one UsageRecord.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.utils import timezone

from accounts.models import ApiKey
from billing.ledger import (
    InsufficientCredits,
    Reservation,
    SpendCapExceeded,
    reserve_credits,
    settle,
)
from billing.models import UsageRecord
from billing.money import format_usd, token_cost
from gateway import metrics, routing
from gateway.auth import KeyInfo
from gateway.catalog import Catalog, ModelInfo, RouteInfo, catalog_is_fresh, get_catalog
from gateway.errors import GatewayError, invalid
from gateway.http import upstream_client
from gateway.providers import get_adapter
from gateway.providers.base import Adapter, ProviderError, usage_dict
from gateway.ratelimit import check_limits
from gateway.sync import db_sync_to_async
from gateway.tokens import count_prompt, count_text
from gateway.validation import requested_output_tokens, validate_chat

log = logging.getLogger(__name__)

PROMPT_MARGIN = 1.1  # other vendors' tokenizers may count a little more than o200k
PROMPT_SLACK_TOKENS = 16
LARGE_PROMPT_BYTES = 64 * 1024
LAST_USED_WRITE_SECONDS = 60

_catalog_async = db_sync_to_async(get_catalog)
_reserve_async = db_sync_to_async(reserve_credits)
_last_used_written: dict[int, float] = {}


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


async def current_catalog() -> Catalog:
    """The catalog snapshot, without a thread hop while it is fresh."""
    if catalog_is_fresh():
        return get_catalog()
    return await _catalog_async()


@dataclass(slots=True)
class Call:
    """One accepted request, from its credit hold to its settlement."""

    request_id: str
    key: KeyInfo
    model: ModelInfo
    body: dict[str, Any]
    stream: bool
    include_usage: bool
    prompt_estimate: int
    output_tokens: int
    reservation: Reservation
    source: str = UsageRecord.Source.API
    fallback: bool = True
    started: float = field(default_factory=time.monotonic)
    headers: dict[str, str] = field(default_factory=dict)
    route: RouteInfo | None = None
    attempts: int = 0
    ttft_ms: int | None = None

    @property
    def completion_id(self) -> str:
        return f"chatcmpl-{self.request_id[4:]}"

    def cost(self, usage: dict[str, Any]) -> int:
        return token_cost(
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            cached_tokens=usage.get("prompt_tokens_details", {}).get("cached_tokens", 0),
            input_price=self.model.input_price or 0,
            output_price=self.model.output_price or 0,
            cached_price=self.model.cached_price,
        )

    def charged(self, usage: dict[str, Any]) -> int:
        return min(self.cost(usage), self.reservation.amount)


def model_not_found(name: str, catalog: Catalog, key: KeyInfo | None = None) -> GatewayError:
    """404 `model_not_found`, listing the models that can be called (by this key)."""
    ids = sorted(m.id for m in catalog.callable() if key is None or key.allows_model(m.id))
    shown = ", ".join(ids[:25]) + (f", … and {len(ids) - 25} more" if len(ids) > 25 else "")
    return GatewayError(
        404,
        f"The model '{name}' does not exist or is not available. "
        f"Available models: {shown or 'none'}. See GET /v1/models.",
        code="model_not_found",
        param="model",
    )


def priced_model(catalog: Catalog, name: str, key: KeyInfo | None = None) -> ModelInfo:
    """The model called `name`, or 404 `model_not_found` / 400 `model_not_priced`: a model
    without a price is never served at $0."""
    model = catalog.resolve(name)
    if model is None:
        raise model_not_found(name, catalog, key)
    if not model.is_priced:
        raise invalid(
            f"Model '{model.id}' has no price configured, so it is not served. "
            "The operator must set its prices.",
            "model",
            "model_not_priced",
        )
    return model


def _output_budget(body: dict[str, Any], model: ModelInfo, prompt: int) -> int:
    """Tokens of output to reserve for, after checking them against the model's limits."""
    requested = requested_output_tokens(body)
    param = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    if requested is not None and requested > model.max_output_tokens:
        raise invalid(
            f"{param} is too large: {requested}. This model supports at most "
            f"{model.max_output_tokens} completion tokens.",
            param,
            "invalid_value",
        )
    wanted = prompt + (requested or 0)
    if wanted > model.context_length or prompt >= model.context_length:
        raise invalid(
            f"This model's maximum context length is {model.context_length} tokens. However, "
            f"you requested {wanted} tokens ({prompt} in the messages, {requested or 0} in the "
            "completion). Please reduce the length of the messages or completion.",
            "messages",
            "context_length_exceeded",
        )
    if requested is not None:
        return requested
    return min(model.max_output_tokens, model.context_length - prompt)


def _max_cost(header: str | None, key: KeyInfo) -> int | None:
    if header is None:
        return key.max_cost_per_request_micro_usd
    try:
        value = int(header)
    except ValueError:
        value = -1
    if value < 0:
        raise invalid(
            "X-Max-Cost-Micro-Usd must be a whole number of micro-USD (>= 0).",
            "X-Max-Cost-Micro-Usd",
        )
    return value


async def prepare(
    *,
    key: KeyInfo,
    body: dict[str, Any],
    request_id: str,
    max_cost_header: str | None = None,
    fallback: bool = True,
    source: str = UsageRecord.Source.API,
) -> Call:
    """Validate, resolve the model, apply the key's policy and limits, and hold credit."""
    validate_chat(body)
    model = priced_model(await current_catalog(), body["model"], key)
    if not key.allows_model(model.id):
        raise GatewayError(
            403,
            f"This API key is not allowed to use '{model.id}'. "
            f"Allowed: {', '.join(key.allowed_models)}.",
            code="model_not_allowed",
            param="model",
        )
    messages, tools = body["messages"], body.get("tools")
    if sum(len(str(m.get("content") or "")) for m in messages) > LARGE_PROMPT_BYTES:
        prompt = await asyncio.to_thread(count_prompt, messages, tools)
    else:
        prompt = count_prompt(messages, tools)
    output_tokens = _output_budget(body, model, prompt)
    output = output_tokens * (body.get("n") or 1)
    worst_case = token_cost(
        prompt_tokens=int(prompt * PROMPT_MARGIN) + PROMPT_SLACK_TOKENS,
        completion_tokens=output,
        cached_tokens=0,
        input_price=model.input_price or 0,
        output_price=model.output_price or 0,
        cached_price=model.cached_price,
    )
    cap = _max_cost(max_cost_header, key)
    if cap is not None and worst_case > cap:
        raise GatewayError(
            402,
            f"The worst-case cost of this request is {worst_case} micro-USD "
            f"({format_usd(worst_case)}), above the per-request cap of {cap} micro-USD. "
            "Lower max_tokens or raise the cap.",
            code="max_cost_exceeded",
        )
    headers: dict[str, str] = {}
    if not key.unlimited:
        headers = await check_limits(
            key_id=key.id, rpm=key.rpm_limit, tpm=key.tpm_limit, tokens=prompt + output
        )
    call = Call(
        request_id=request_id,
        key=key,
        model=model,
        body=body,
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        prompt_estimate=prompt,
        output_tokens=output_tokens,
        reservation=Reservation(
            account_id=key.account_id, api_key_id=key.id, request_id=request_id, amount=worst_case
        ),
        source=source,
        fallback=fallback,
        headers=headers,
    )
    await _hold_credit(call)
    return call


async def _hold_credit(call: Call) -> None:
    """Reserve the call's worst case; a client gone meanwhile gets its hold released."""
    reserving = asyncio.ensure_future(
        _reserve_async(
            account_id=call.key.account_id,
            amount=call.reservation.amount,
            request_id=call.request_id,
            api_key=call.key.key,
        )
    )
    try:
        await asyncio.shield(reserving)
    except asyncio.CancelledError:
        # The UPDATE may already have committed in its thread: wait for it, then settle.
        with contextlib.suppress(InsufficientCredits, SpendCapExceeded):
            await reserving
            await finish(
                call, usage=None, status=UsageRecord.Status.CANCELLED, error="client disconnected"
            )
        raise
    except InsufficientCredits as exc:
        raise GatewayError(
            402,
            f"Insufficient credits: this request may cost up to {format_usd(exc.needed)} "
            f"({exc.needed} micro-USD) and {format_usd(exc.available)} is available. "
            "Add credit on the Billing page or lower max_tokens.",
            code="insufficient_credits",
            headers=call.headers,
        ) from exc
    except SpendCapExceeded as exc:
        raise GatewayError(
            402,
            f"This key's spend cap of {format_usd(exc.cap)} for its period would be exceeded "
            f"({format_usd(exc.spent)} already spent or held).",
            code="spend_cap_exceeded",
            headers=call.headers,
        ) from exc


def _upstream_body(call: Call, adapter: Adapter) -> dict[str, Any]:
    body = dict(call.body)
    for name in ("model", "stream", "stream_options"):
        body.pop(name, None)
    if adapter.requires_max_tokens and requested_output_tokens(body) is None:
        body["max_tokens"] = call.output_tokens
    return body


def _upstream_failed(call: Call, exc: ProviderError) -> GatewayError:
    if exc.retryable:
        return routing.no_healthy_upstream(call.model.id, exc.retry_after or 1, exc.message)
    return GatewayError(exc.status, exc.message, code="upstream_error")


@contextlib.asynccontextmanager
async def _settled_if_it_fails(call: Call) -> AsyncIterator[None]:
    """Whatever stops a call before it has an answer settles it (nothing charged)."""
    try:
        yield
    except GatewayError as exc:
        await finish(call, usage=None, status=UsageRecord.Status.ERROR, error=exc.message)
        raise
    except asyncio.CancelledError:
        await _finish_shielded(call, None, UsageRecord.Status.CANCELLED, "client disconnected")
        raise
    except Exception as exc:
        await finish(call, usage=None, status=UsageRecord.Status.ERROR, error=repr(exc))
        raise


async def complete(call: Call) -> tuple[dict[str, Any], UsageRecord]:
    """A non-streamed completion, with fallback; settles before returning."""
    async with _settled_if_it_fails(call):
        last: ProviderError | None = None
        for route in routing.routes_to_try(call.model, fallback=call.fallback):
            call.route = route
            call.attempts += 1
            adapter = get_adapter(route.provider, upstream_client())
            try:
                result = await adapter.complete(_upstream_body(call, adapter), route.upstream_model)
            except ProviderError as exc:
                last = exc
                metrics.upstream_failed(route.provider.name)
                if not exc.retryable:
                    break
                routing.cool_down(route.provider.id, exc.retry_after)
                continue
            routing.recovered(route.provider.id)
            usage = _normalise_usage(result.get("usage"), call, _completion_text(result))
            charge = call.charged(usage)
            result.update(id=call.completion_id, model=call.model.id)
            result["usage"] = {**usage, **_cost_fields(charge)}
            record = await finish(call, usage=usage, status=UsageRecord.Status.OK)
            return result, record
        assert last is not None
        raise _upstream_failed(call, last)


async def open_stream(call: Call) -> tuple[dict[str, Any], AsyncIterator[dict[str, Any]]]:
    """Start streaming from the first healthy route that yields a chunk.

    Fallback happens here, before anything is sent to the client. On failure the
    call is settled (nothing charged) and a GatewayError raised.
    """
    async with _settled_if_it_fails(call):
        last: ProviderError | None = None
        for route in routing.routes_to_try(call.model, fallback=call.fallback):
            call.route = route
            call.attempts += 1
            adapter = get_adapter(route.provider, upstream_client())
            chunks = adapter.stream(_upstream_body(call, adapter), route.upstream_model)
            try:
                first = await anext(chunks)
            except StopAsyncIteration:
                last = ProviderError(f"{route.provider.name} sent an empty stream", retryable=True)
            except ProviderError as exc:
                last = exc
            else:
                routing.recovered(route.provider.id)
                call.ttft_ms = int((time.monotonic() - call.started) * 1000)
                return first, chunks
            metrics.upstream_failed(route.provider.name)
            await chunks.aclose()  # type: ignore[attr-defined]
            if not last.retryable:
                break
            routing.cool_down(route.provider.id, last.retry_after)
        assert last is not None
        raise _upstream_failed(call, last)


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"


async def stream_chunks(
    call: Call, first: dict[str, Any], chunks: AsyncIterator[dict[str, Any]]
) -> AsyncGenerator[dict[str, Any], None]:
    """The stream as chunk dicts, for any caller (/v1 relay, the web chat).

    Yields the upstream's chunks (with our id and model), then one usage chunk with
    the cost, or a final `{"error": …}` event if the upstream fails mid-stream. Settles
    exactly once however the stream ends; a caller that stops early must `aclose()`
    this generator, and what was generated so far is charged as `cancelled`.
    """
    text: list[str] = []
    upstream_usage: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    status, error = UsageRecord.Status.OK, ""
    chunk: dict[str, Any] | None = first
    try:
        while chunk is not None:
            if chunk.get("usage"):
                upstream_usage = chunk.pop("usage")
            if chunk.get("choices"):
                _collect_text(chunk, text)
                chunk["id"] = call.completion_id
                chunk["model"] = call.model.id
                yield chunk
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                chunk = None
        usage = _normalise_usage(upstream_usage, call, "".join(text))
        yield _usage_chunk(call, usage)
    except ProviderError as exc:
        status, error = UsageRecord.Status.ERROR, exc.message
        metrics.upstream_failed(call.route.provider.name if call.route else "")
        problem = GatewayError(
            502, f"Upstream failed mid-stream: {exc.message}", code="upstream_error"
        )
        yield problem.as_dict()
    except (asyncio.CancelledError, GeneratorExit):
        status, error = UsageRecord.Status.CANCELLED, "client disconnected"
        raise
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
        usage = usage or _normalise_usage(upstream_usage, call, "".join(text))
        await _finish_shielded(call, usage, status, error)


async def relay(
    call: Call, first: dict[str, Any], chunks: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[bytes]:
    """Forward chunks as SSE as they arrive; [DONE] goes out before the settlement."""
    events = stream_chunks(call, first, chunks)
    try:
        async for event in events:
            if event.get("usage"):
                if call.include_usage:
                    yield sse(event)
                yield DONE
            else:
                yield sse(event)
    finally:
        await events.aclose()


def _usage_chunk(call: Call, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call.completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": call.model.id,
        "choices": [],
        "usage": {**usage, **_cost_fields(call.charged(usage))},
    }


def _cost_fields(charge: int) -> dict[str, Any]:
    return {"cost": charge / 1_000_000, "cost_micro_usd": charge}


def _collect_text(chunk: dict[str, Any], text: list[str]) -> None:
    for choice in chunk["choices"]:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            text.append(delta["content"])
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            text.append(function.get("name") or "")
            text.append(function.get("arguments") or "")


def _completion_text(result: dict[str, Any]) -> str:
    parts: list[str] = []
    for choice in result.get("choices") or ():
        message = choice.get("message") or {}
        parts.append(message.get("content") or "")
        for tool_call in message.get("tool_calls") or ():
            parts.append(orjson.dumps(tool_call.get("function", {})).decode())
    return "".join(parts)


def _normalise_usage(raw: Any, call: Call, generated: str) -> dict[str, Any]:
    """The upstream's usage when it sent one, else our own count of what was generated."""
    if isinstance(raw, dict) and isinstance(raw.get("prompt_tokens"), int):
        prompt = max(0, raw["prompt_tokens"])
        completion = max(0, int(raw.get("completion_tokens") or 0))
        details = raw.get("prompt_tokens_details") or {}
        cached = max(0, int(details.get("cached_tokens") or 0))
        return usage_dict(prompt, completion, min(cached, prompt))
    return usage_dict(call.prompt_estimate, count_text(generated))


async def _finish_shielded(
    call: Call, usage: dict[str, Any] | None, status: str, error: str
) -> None:
    """Settle even while being cancelled: the client may be gone, the books may not."""
    task = asyncio.ensure_future(finish(call, usage=usage, status=status, error=error))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def _settle_sync(call: Call, usage: dict[str, Any] | None, status: str, error: str) -> UsageRecord:
    usage = usage or usage_dict(0, 0)
    route = call.route
    record = settle(
        reservation=call.reservation,
        cost=call.cost(usage),
        usage={
            "source": call.source,
            "model": call.model.id,
            "provider": route.provider.name if route else "",
            "upstream_model": route.upstream_model if route else "",
            "stream": call.stream,
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "cached_tokens": usage["prompt_tokens_details"]["cached_tokens"],
            "latency_ms": int((time.monotonic() - call.started) * 1000),
            "ttft_ms": call.ttft_ms,
            "status": status,
            "error": error[:300],
            "attempts": max(call.attempts, 1),
            "price_version": call.model.price_version,
        },
    )
    now = time.monotonic()
    if (
        now - _last_used_written.get(call.key.id, -LAST_USED_WRITE_SECONDS)
        >= LAST_USED_WRITE_SECONDS
    ):
        _last_used_written[call.key.id] = now
        ApiKey.objects.filter(pk=call.key.id).update(last_used_at=timezone.now())
    return record


_settle_async = db_sync_to_async(_settle_sync)


async def finish(
    call: Call, *, usage: dict[str, Any] | None, status: str, error: str = ""
) -> UsageRecord:
    """Settle the call: charge, release the hold, write the usage record."""
    try:
        record = await _settle_async(call, usage, status, error)
    except Exception:
        log.exception("settlement failed for %s; the hold stays until the sweeper", call.request_id)
        raise
    metrics.completion_settled(record)
    return record
