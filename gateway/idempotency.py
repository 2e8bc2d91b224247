"""`Idempotency-Key` on POST /v1: a retry is answered from the first call, never billed twice.

`@idempotent` sits under `api_view` (it needs `request.api_key`) on every front door
that can bill. Without the header it calls the view and does nothing else: no query.
With it, keys are per account and last IDEMPOTENCY_WINDOW (24 h):

- the first request claims the key (one INSERT against a unique constraint, so of two
  first tries on two workers exactly one runs) and is served as usual;
- a retry with the same body gets the stored response with `Idempotent-Replayed: true`
  and the first call's `x-request-id`, without calling the upstream or billing;
- a retry while the first still runs gets 409 `idempotency_key_in_use` (Retry-After: 1);
  a retry with another body under the same key gets 422 `idempotency_key_reused`.

What the first request leaves for its retries depends on whether it moved money:

- a 2xx answer is stored whole; a stream is recorded as it is relayed and stored when
  it ends, also when the client left mid-stream (then what was produced is replayed);
- an error after the call was billed (its usage record has a cost), 5xx included, is
  stored and replayed as the client first saw it, with `x-should-retry: false`: the
  call happened and was paid for, so running it again would bill it twice; the cost
  is at GET /v1/generation/<x-request-id>;
- a client that left before any response, after the call was billed, leaves a 409
  `idempotency_key_cancelled` that names the billed request;
- an error left for the retries is rendered in the door's own shape (api_view's
  `render_error`: OpenAI's error object, or Anthropic's on /v1/messages);
- anything refused or failed before money moved (400, 401, 402, 403, 404, 429, 503 …)
  releases the key, so a corrected retry runs normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from billing.models import UsageRecord
from gateway import outages
from gateway.errors import GatewayError, internal_error, invalid, openai_error
from gateway.models import IdempotentRequest
from gateway.sync import db_sync_to_async

log = logging.getLogger(__name__)

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
REPLAYED_HEADERS = frozenset({"x-request-cost-micro-usd", "cache-control"})
REPLAYED_PREFIX = "x-ratelimit-"

_claim_async = db_sync_to_async(IdempotentRequest.objects.claim)
_record_async = db_sync_to_async(IdempotentRequest.objects.record)
_release_async = db_sync_to_async(IdempotentRequest.objects.release)


def _was_billed(request_id: str) -> bool:
    return UsageRecord.objects.filter(request_id=request_id, cost_micro_usd__gt=0).exists()


_was_billed_async = db_sync_to_async(_was_billed)


def delete_expired_idempotent_requests(now: datetime | None = None) -> int:
    """Delete the entries past the 24-hour window (they already count as absent);
    returns how many. Run periodically, beside the hold sweeper."""
    deleted, _ = IdempotentRequest.objects.expired(now).delete()
    return deleted


def idempotent(view: View) -> View:
    """Answer a retry that carries the first request's `Idempotency-Key` from it."""

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        key = request.headers.get(HEADER)
        if key is None or request.method != "POST":
            return await view(request, *args, **kwargs)
        if not 0 < len(key) <= MAX_KEY_LENGTH:
            raise invalid(
                f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters long; this one has {len(key)}.",
                HEADER,
                "invalid_idempotency_key",
            )
        try:
            body_sha256 = hashlib.sha256(request.body).hexdigest()
        except RequestDataTooBig:
            # The view refuses it (413) before anything is billed: nothing to remember.
            return await view(request, *args, **kwargs)
        claim = _Claim(
            account_id=request.api_key.account_id,  # type: ignore[attr-defined]
            key=key,
            request_id=request.request_id,  # type: ignore[attr-defined]
            # An error left for the retries is in the door's own shape (set by api_view).
            render=getattr(request, "render_error", openai_error),
        )
        holder = await claim.take(body_sha256)
        if holder is not None:
            return _answer_retry(holder, body_sha256)
        return await claim.run(view(request, *args, **kwargs))

    return wrapper


def _answer_retry(holder: IdempotentRequest, body_sha256: str) -> HttpResponse:
    if holder.body_sha256 != body_sha256:
        raise GatewayError(
            422,
            f"This {HEADER} was used for a request with a different body "
            f"(request id {holder.request_id}). Send a new key for a new request.",
            code="idempotency_key_reused",
            param=HEADER,
        )
    if holder.state == IdempotentRequest.State.RUNNING:
        raise _in_use(holder.request_id)
    response = HttpResponse(
        bytes(holder.body), status=holder.status or 200, content_type=holder.content_type
    )
    for name, value in holder.headers.items():
        response[name] = value
    response["x-request-id"] = holder.request_id
    response["Idempotent-Replayed"] = "true"
    return response


@dataclass(frozen=True, slots=True)
class _Claim:
    """The key as held by the request that runs: what it answers is left for retries."""

    account_id: int
    key: str
    request_id: str
    render: Callable[[GatewayError, dict[str, str]], HttpResponse]

    def _rendered(self, error: GatewayError) -> HttpResponse:
        return self.render(error, {})

    async def take(self, body_sha256: str) -> IdempotentRequest | None:
        """None when this request now holds the key, else the entry that holds it."""
        try:
            holder: IdempotentRequest | None = await _claim_async(
                account_id=self.account_id,
                key=self.key,
                body_sha256=body_sha256,
                request_id=self.request_id,
            )
        except IntegrityError as exc:
            raise _in_use(None) from exc
        return holder

    async def run(self, answer: Awaitable[HttpResponseBase]) -> HttpResponseBase:
        """Await the view's answer and leave the outcome on the key, however it ends."""
        try:
            response = await answer
        except asyncio.CancelledError:
            await _shielded(self._client_left())
            raise
        except GatewayError as exc:
            await _shielded(self._failed(self._rendered(exc)))
            raise
        except Exception:
            await _shielded(self._failed(self._rendered(internal_error(self.request_id))))
            raise
        if response.streaming:
            self._record_as_relayed(cast(StreamingHttpResponse, response))
        elif 200 <= response.status_code < 300:
            await _shielded(self._store(response, cast(HttpResponse, response).content))
        else:
            await _shielded(self._failed(cast(HttpResponse, response)))
        return response

    async def _store(self, response: HttpResponseBase, body: bytes) -> None:
        headers = {
            name: value
            for name, value in response.items()
            if name.lower() in REPLAYED_HEADERS or name.lower().startswith(REPLAYED_PREFIX)
        }
        if not 200 <= response.status_code < 300:
            headers["x-should-retry"] = "false"
        try:
            await _record_async(
                account_id=self.account_id,
                key=self.key,
                request_id=self.request_id,
                status=response.status_code,
                content_type=response.get("Content-Type", ""),
                headers=headers,
                body=body,
            )
        except Exception as exc:
            # The client has its answer; a retry gets 409 until the entry lapses.
            if not outages.noted(exc):
                log.exception("could not store the answer to %s for its retries", self.request_id)

    async def _failed(self, response: HttpResponse) -> None:
        """An error answer is replayed only if the call was billed; otherwise forgotten."""
        try:
            billed = await _was_billed_async(self.request_id)
            if not billed:
                await _release_async(
                    account_id=self.account_id, key=self.key, request_id=self.request_id
                )
                return
        except Exception as exc:
            if not outages.noted(exc):
                log.exception("could not settle the idempotency key of %s", self.request_id)
            return
        await self._store(response, response.content)

    async def _client_left(self) -> None:
        error = GatewayError(
            409,
            f"The first request with this {HEADER} ({self.request_id}) was billed, but its "
            "client disconnected before the answer was ready, so there is no answer to "
            f"replay. Its cost is at GET /v1/generation/{self.request_id}; send a new "
            f"{HEADER} to run the request again.",
            code="idempotency_key_cancelled",
            param=HEADER,
        )
        await self._failed(self._rendered(error))

    def _record_as_relayed(self, response: StreamingHttpResponse) -> None:
        """Keep every byte the stream relays, and store them when it ends (however)."""
        if not response.is_async:
            raise TypeError("@idempotent records async streams only")
        parts = cast(AsyncGenerator[bytes, None], response.streaming_content)

        async def relayed() -> AsyncIterator[bytes]:
            body = bytearray()
            try:
                async with contextlib.aclosing(parts):
                    async for part in parts:
                        body += part
                        yield part
            finally:
                await _shielded(self._store(response, bytes(body)))

        response.streaming_content = relayed()


def _in_use(request_id: str | None) -> GatewayError:
    holder = f" (request id {request_id})" if request_id else ""
    return GatewayError(
        409,
        f"A request with this {HEADER} is still running{holder}; retry when it has finished.",
        code="idempotency_key_in_use",
        param=HEADER,
        headers={"Retry-After": "1"},
    )


async def _shielded(work: Awaitable[None]) -> None:
    """Finish `work` even if this task is cancelled meanwhile: the client may have left."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
