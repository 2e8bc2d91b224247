"""What every provider adapter implements, and the error it raises.

An adapter turns one OpenAI-shaped chat request into its upstream's protocol and
the upstream's answer back into OpenAI shapes:
- `complete()` returns a `chat.completion` dict whose `usage` is filled in;
- `stream()` yields `chat.completion.chunk` dicts as they arrive and ends with one
  chunk whose `choices` is empty and whose `usage` carries the counts (when the
  upstream reported them).
Both are built with `gateway.providers.envelopes`, the one place these shapes are written.

An adapter that speaks a door's own protocol (`native_protocol`) can also take that
door's request as it came (`NativeRequest`): `complete_native()` and `stream_native()`
send it on untranslated and return the same canonical shapes, each carrying the
upstream's own answer (or the stream events it came from) under `"native"`, so the
call is metered as any other and the door relays what the upstream said.

Errors are ProviderError. `retryable=True` (connection error, timeout, 5xx, 429)
lets the router try the next route, if nothing has reached the client yet.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from gateway.catalog import ProviderInfo
from gateway.providers.sse import sse_events


class ProviderError(Exception):
    """An upstream failure. `message` is safe to show the customer (and to store on the
    usage record); `detail` is the operator's fuller account, secrets masked, for the
    log. `status` is what the client sees if no fallback is left."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        retryable: bool = False,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.body = body
        self.detail = detail or message


# What upstream error texts may carry that is not the customer's to see: API keys in the
# shapes the vendors use, and bearer tokens.
SECRET_SHAPES = re.compile(
    r"(?:sk-[A-Za-z0-9_\-*]{6,}|sk_[A-Za-z0-9_\-*]{6,}|AIza[0-9A-Za-z_\-]{10,}"
    r"|[Bb]earer\s+\S+|(?:api[_-]?key|key)=[^&\s\"']+)"
)
LONGEST_UPSTREAM_TEXT = 300
SHORTEST_KEY = 8  # shorter "keys" (tests, local servers) would redact ordinary words


def content_text(content: Any) -> str:
    """An OpenAI message's content as text, for upstreams that take text only there:
    a string as it is, else its text and refusal parts joined."""
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text", "") for part in content or [] if part.get("type") in ("text", "refusal")
    )


def masked(text: str, provider: ProviderInfo) -> str:
    """`text` with the provider's key and anything shaped like a secret redacted."""
    if len(provider.api_key) >= SHORTEST_KEY:
        text = text.replace(provider.api_key, "[redacted]")
    return SECRET_SHAPES.sub("[redacted]", text)[:LONGEST_UPSTREAM_TEXT]


def _upstream_text(parsed: Any) -> str | None:
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return None


# The upstream refused Switchboard itself (its key, its account, a model the operator
# routed to that the upstream does not have): the operator's problem, never the
# customer's, so the customer sees an unavailable upstream and fallback applies.
OPERATOR_STATUSES = {401, 402, 403, 404}


def error_from_response(response: httpx.Response, provider: ProviderInfo) -> ProviderError:
    """A ProviderError for a non-2xx upstream answer (the body must have been read)."""
    status = response.status_code
    retry_after = None
    if "retry-after" in response.headers:
        try:
            retry_after = float(response.headers["retry-after"])
        except ValueError:
            retry_after = None
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    text = _upstream_text(parsed)
    detail = f"{provider.name} answered HTTP {status}" + (
        f": {masked(text, provider)}" if text else ""
    )
    body = parsed if isinstance(parsed, dict) else None
    if status in OPERATOR_STATUSES:
        return ProviderError(
            f"{provider.name} refused the gateway's request (HTTP {status})",
            retryable=True,
            retry_after=retry_after,
            detail=detail,
        )
    if 400 <= status < 500 and status != 429:
        # The customer's request was refused: say why, in the upstream's words, masked.
        reason = f": {masked(text, provider)}" if text else ""
        return ProviderError(
            f"The upstream provider rejected the request (HTTP {status}){reason}",
            status=400 if status != 413 else 413,
            body=body,
            detail=detail,
        )
    return ProviderError(
        f"{provider.name} answered HTTP {status}",
        retryable=True,
        retry_after=retry_after,
        body=body,
        detail=detail,
    )


def transport_error(exc: httpx.HTTPError, provider: ProviderInfo) -> ProviderError:
    if isinstance(exc, httpx.TimeoutException):
        kind = "timed out"
    elif isinstance(exc, httpx.ConnectError):
        kind = "could not be reached"
    else:
        kind = "broke the connection"
    return ProviderError(f"{provider.name} {kind}: {type(exc).__name__}", retryable=True)


def stream_error(data: object, provider: ProviderInfo) -> ProviderError:
    """An error event inside a stream (after HTTP 200)."""
    message = data
    if isinstance(data, dict):
        message = data.get("message") or data
    text = masked(str(message), provider)
    return ProviderError(f"{provider.name} failed mid-stream: {text}", retryable=True)


DONE = object()  # the `data: [DONE]` event that ends an OpenAI stream
# After a stream's last event, how long its body may take to end: read to its end, the
# connection goes back to the pool for the next call instead of being closed.
STREAM_END_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class NativeRequest:
    """A door's request in its own protocol (e.g. "anthropic"), for a route whose adapter
    speaks it: sent on as it came, but for the model and `stream`, which the adapter
    sets, and `headers` (such as anthropic-beta), which it adds to its own.

    `extra_prompt_tokens` bounds what it carries that the canonical chat body cannot
    (reasoning handed back to a Responses upstream), so the hold covers it too."""

    protocol: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    extra_prompt_tokens: int = 0


class Adapter:
    """Base class: one instance per call, holding the provider and the shared client."""

    # The upstream refuses a request without an output limit (Anthropic): the engine
    # then sends the output budget it reserved for.
    requires_max_tokens = False
    # The protocol whose requests this adapter can send on untranslated (NativeRequest).
    native_protocol: str | None = None

    def __init__(self, provider: ProviderInfo, client: httpx.AsyncClient) -> None:
        self.provider = provider
        self.client = client

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            self.provider.timeout_seconds, connect=min(5.0, self.provider.timeout_seconds)
        )

    def headers(self) -> dict[str, str]:
        """The upstream's authentication and content headers."""
        raise NotImplementedError

    async def post_json(
        self,
        url: str,
        payload: dict[str, Any],
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """POST a JSON body and return the parsed 200 answer, or raise ProviderError.
        `headers` are added to the adapter's own."""
        try:
            response = await self.client.post(
                url,
                params=params,
                content=orjson.dumps(payload),
                headers={**(headers or {}), **self.headers()},
                timeout=self.timeout(),
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.provider) from exc
        _release(response)
        if response.status_code != 200:
            raise error_from_response(response, self.provider)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise ProviderError(f"{self.provider.name} sent invalid JSON", retryable=True) from exc

    async def stream_events(
        self,
        url: str,
        payload: dict[str, Any],
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        last: Callable[[Any], bool] | None = None,
    ) -> AsyncGenerator[Any, None]:
        """POST a JSON body and yield each server-sent event's data, parsed as JSON.

        OpenAI's closing `[DONE]` is yielded as the DONE marker. An HTTP error status
        (before any event) or a broken connection raises ProviderError. The stream's
        last event (`[DONE]`, or one that `last` says ends it) is yielded once the body
        has ended, so that the connection is reused.
        """
        response: httpx.Response | None = None
        try:
            async with self.client.stream(
                "POST",
                url,
                params=params,
                content=orjson.dumps(payload),
                headers={**(headers or {}), **self.headers()},
                timeout=self.timeout(),
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise error_from_response(response, self.provider)
                events = sse_events(response)
                async for _event, data in events:
                    if data == "[DONE]":
                        event: Any = DONE
                    else:
                        try:
                            event = orjson.loads(data)
                        except orjson.JSONDecodeError as exc:
                            raise ProviderError(
                                f"{self.provider.name} sent an invalid stream event",
                                retryable=True,
                            ) from exc
                    if event is DONE or (last is not None and last(event)):
                        await _read_to_end(events)
                        yield event
                        return
                    yield event
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.provider) from exc
        finally:
            if response is not None:
                _release(response)

    def ended_early(self) -> ProviderError:
        return ProviderError(f"{self.provider.name} ended the stream early", retryable=True)

    async def complete(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, body: dict[str, Any], upstream_model: str) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedError

    def speaks(self, native: NativeRequest | None) -> bool:
        """Whether this adapter sends `native` on untranslated."""
        return native is not None and native.protocol == self.native_protocol

    async def complete_native(self, native: NativeRequest, upstream_model: str) -> dict[str, Any]:
        raise NotImplementedError

    def stream_native(
        self, native: NativeRequest, upstream_model: str
    ) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedError


def _release(response: httpx.Response) -> None:
    """End the reference cycle between an answered httpx Response and its stream (each
    refers to the other): otherwise the exchange, with the request body it sent (an
    agent's is 250 KB), stays in memory until the garbage collector next runs. Only for
    a response already closed (its connection back in the pool): it is never read
    again."""
    response.stream = EMPTY_STREAM


EMPTY_STREAM = httpx.ByteStream(b"")


async def _read_to_end(events: AsyncIterator[Any]) -> None:
    """What follows a stream's last event (its body's end, nothing else as a rule), read
    within STREAM_END_SECONDS: a response read to its end leaves its connection in the
    pool, one closed early takes it down. An upstream that keeps the body open costs
    that connection and delays the stream's end by STREAM_END_SECONDS; one that breaks
    it costs only the connection."""
    try:
        async with asyncio.timeout(STREAM_END_SECONDS):
            async for _ in events:
                pass
    except (TimeoutError, httpx.HTTPError):
        return


def usage_dict(
    prompt: int, completion: int, cached: int = 0, cache_write: int = 0, cache_write_1h: int = 0
) -> dict[str, Any]:
    """OpenAI's usage object. Prompt-cache writes (Anthropic's cache creation), which
    OpenAI's object has no field for, are `prompt_tokens_details.cache_write_tokens`
    (and `cache_write_1h_tokens`, the part written for an hour), parts of the prompt."""
    details: dict[str, int] = {"cached_tokens": cached}
    if cache_write:
        details["cache_write_tokens"] = cache_write
        if cache_write_1h:
            details["cache_write_1h_tokens"] = cache_write_1h
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
    }
