"""A call's money, from its credit hold to its one settlement.

Every caller (the /v1 views, the web chat, the front doors) gets a `Call` from
`open_call()` and ends it through `Call.end()`, the only place that settles. The steps
of the lifecycle (README, "How a request is billed"), one function each:

1. parse the body             gateway.validation.validate_chat (called by open_call)
2. authenticate the key       gateway.auth.authenticate (by the view decorator)
3. resolve the model          priced_model()
4. check the key's policy     check_policy(), then the rate limits (gateway.ratelimit)
5. reserve the worst case     hold_credit()
6. route, with fallback       Call._route(): one loop for streamed and plain calls
7. relay                      Call.answer() or Call.open_stream() + Call.chunks()
8. settle                     Call.end(): the charge (capped at the hold), the hold
                              released, one usage record; never raises

A call that reached the upstream is never billed zero: a client that leaves, a stream
that breaks and an upstream that under-reports all pay for the prompt and what
Switchboard saw generated (gateway.metering).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import orjson
from django.conf import settings
from django.utils import timezone

from accounts.models import ApiKey
from billing.content import keep_content
from billing.journal import schedule_replay, settle_or_journal
from billing.ledger import (
    InsufficientCredits,
    Reservation,
    SpendCapExceeded,
    keep_hold,
    reserve_credits,
)
from billing.models import UsageRecord
from billing.money import format_money
from gateway import metering, metrics, modes, outages, refusals, routing
from gateway.auth import KeyInfo
from gateway.catalog import Catalog, ModelInfo, RouteInfo, catalog_is_fresh, get_catalog
from gateway.documents import grounding
from gateway.errors import GatewayError, invalid
from gateway.http import upstream_client
from gateway.providers import envelopes, get_adapter
from gateway.providers.base import Adapter, NativeRequest, ProviderError
from gateway.ratelimit import check_limits, give_back
from gateway.sync import db_sync_to_async
from gateway.tokens import PromptSize, measure_prompt
from gateway.validation import requested_output_tokens, validate_chat

log = logging.getLogger(__name__)

PROMPT_MARGIN = 1.1  # other vendors' tokenizers may count a little more than o200k
PROMPT_SLACK_TOKENS = 16
# A hold from a prompt's bound (several times its count: PromptSize) is placed only while
# the account, and the key's spend cap, have this many times it to spare; else the prompt
# is counted and held for exactly. So a bound never takes more than a quarter of what is
# left, and an account short of credit has its requests held for what they can cost.
BOUND_HEADROOM = 4
LAST_USED_WRITE_SECONDS = 60

T = TypeVar("T")

_catalog_async = db_sync_to_async(get_catalog)
_reserve_async = db_sync_to_async(reserve_credits)
_keep_hold_async = db_sync_to_async(keep_hold)
_last_used_written: dict[int, float] = {}


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


async def current_catalog() -> Catalog:
    """The catalog snapshot, without a thread hop while it is fresh."""
    if catalog_is_fresh():
        return get_catalog()
    return await _catalog_async()


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
    """Step 3: the model called `name`, or 404 `model_not_found` / 400 `model_not_priced`:
    a model without a price is never served at $0."""
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


def max_cost(header: str | None, key: KeyInfo) -> int | None:
    """The per-request cap: the key's, which `X-Max-Cost-Micro-Usd` can lower, never raise."""
    cap = key.max_cost_per_request_micro_usd
    if header is None:
        return cap
    try:
        value = int(header)
    except ValueError:
        value = -1
    if value < 0:
        raise invalid(
            "X-Max-Cost-Micro-Usd must be a whole number of micro-USD (>= 0).",
            "X-Max-Cost-Micro-Usd",
        )
    return value if cap is None else min(value, cap)


def check_policy(key: KeyInfo, model: ModelInfo) -> None:
    """Step 4: the key's model allowlist (expiry and revocation are checked at sign-in)."""
    if not key.allows_model(model.id):
        raise GatewayError(
            403,
            f"This API key is not allowed to use '{model.id}'. "
            f"Allowed: {', '.join(key.allowed_models)}.",
            code="model_not_allowed",
            param="model",
        )


def worst_case_cost(model: ModelInfo, prompt: int, output: int) -> int:
    """The most a call can cost: the prompt with a margin for other tokenizers (at the
    dearest of its prices: it may all be written to the cache), and every output token
    it may generate."""
    return model.worst_case_cost(
        prompt=int(prompt * PROMPT_MARGIN) + PROMPT_SLACK_TOKENS, completion=output
    )


def _failure(exc: BaseException) -> tuple[str, str]:
    """The status and error a call that stopped with `exc` is recorded with."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return UsageRecord.Status.CANCELLED, "client disconnected"
    if isinstance(exc, GatewayError | ProviderError):
        return UsageRecord.Status.ERROR, exc.message
    return UsageRecord.Status.ERROR, repr(exc)


def _upstream_failed(model: ModelInfo, exc: ProviderError) -> GatewayError:
    """What the customer is told when no route answered: a 503 that says when a route is
    tried again, or the upstream's refusal of the request itself (its text masked)."""
    if exc.retryable:
        wait = routing.soonest_recovery(model) or exc.retry_after or 1
        return routing.no_healthy_upstream(model.id, wait, exc.message)
    return GatewayError(exc.status, exc.message, code="upstream_error")


@dataclass(slots=True)
class Call:
    """One accepted request, from its credit hold to its settlement."""

    request_id: str
    key: KeyInfo
    model: ModelInfo
    body: dict[str, Any]
    stream: bool
    include_usage: bool
    # The prompt's size: counted, or known by a bound until something needs its count.
    prompt: PromptSize
    output_tokens: int
    reservation: Reservation
    # What the key's limits were charged (prompt and output budget); the tokens not used
    # are given back to its TPM window when the call settles.
    rate_tokens: int = 0
    source: str = UsageRecord.Source.API
    fallback: bool = True
    # The door's own request, sent on untranslated to a route whose adapter speaks it.
    native: NativeRequest | None = None
    started: float = field(default_factory=time.monotonic)
    headers: dict[str, str] = field(default_factory=dict)
    route: RouteInfo | None = None
    attempts: int = 0
    # Each route tried, for the request's detail page (UsageRecord.route_log).
    route_log: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = ""
    ttft_ms: int | None = None
    # What the current attempt's upstream has generated, as far as Switchboard saw it.
    generating: bool = False
    seen: list[str] = field(default_factory=list)
    upstream_usage: Any = None
    metered: metering.Metered | None = None
    charge: int | None = None
    record: UsageRecord | None = None
    # What the client named, when a mode (gateway.modes) chose `model` for it.
    requested_model: str = ""
    on_settled: Callable[[Call, str], None] | None = None
    _upstream: AsyncIterator[dict[str, Any]] | None = None
    _buffer: list[dict[str, Any]] = field(default_factory=list)
    _keeper: asyncio.TimerHandle | None = None
    _refreshing: asyncio.Future[None] | None = None
    _ending: asyncio.Future[int] | None = None
    # RAG (gateway/documents/grounding.py): the passages added to the prompt, cited;
    # None unless the request asked for RAG.
    rag_sources: list[dict[str, Any]] | None = None

    @property
    def completion_id(self) -> str:
        return f"chatcmpl-{self.request_id[4:]}"

    @property
    def ended(self) -> bool:
        return self.charge is not None

    def cost(self, metered: metering.Metered) -> int:
        return self.model.cost(
            prompt=metered.prompt_tokens,
            completion=metered.completion_tokens,
            cached=metered.cached_tokens,
            cache_write=metered.cache_write_tokens,
            cache_write_1h=metered.cache_write_1h_tokens,
            requests=metered.requests,
        )

    # --- 6. route ------------------------------------------------------------------

    async def _route(self, attempt: Callable[[Adapter, RouteInfo], Awaitable[T]]) -> T:
        """Try the model's healthy routes in order until one answers; the one fallback
        loop. A retryable failure cools the provider down and moves on to the next."""
        last: ProviderError | None = None
        for route in routing.routes_to_try(self.model, fallback=self.fallback):
            self.route = route
            self.attempts += 1
            adapter = get_adapter(route.provider, upstream_client())
            self.seen, self.upstream_usage, self.generating = [], None, True
            began = time.monotonic()
            try:
                result = await attempt(adapter, route)
            except ProviderError as exc:
                self._log_attempt(route, began, exc.message)
                self.generating = False
                last = exc
                log.warning("%s: attempt %d failed: %s", self.request_id, self.attempts, exc.detail)
                metrics.upstream_failed(route.provider.name)
                if not exc.retryable:
                    break
                routing.cool_down(route.provider.id, exc.retry_after)
                continue
            finally:
                routing.attempt_ended(route.provider.id)
            self._log_attempt(route, began, None)
            routing.recovered(route.provider.id)
            return result
        assert last is not None
        raise _upstream_failed(self.model, last)

    def _log_attempt(self, route: RouteInfo, began: float, error: str | None) -> None:
        self.route_log.append(
            {
                "provider": route.provider.name,
                "upstream_model": route.upstream_model,
                "start_ms": int((began - self.started) * 1000),
                "duration_ms": int((time.monotonic() - began) * 1000),
                "ok": error is None,
                "error": (error or "")[:300],
            }
        )

    def _upstream_body(self, adapter: Adapter) -> dict[str, Any]:
        body = dict(self.body)
        for name in ("model", "stream", "stream_options"):
            body.pop(name, None)
        if adapter.requires_max_tokens and requested_output_tokens(body) is None:
            body["max_tokens"] = self.output_tokens
        return body

    # --- 7. relay ------------------------------------------------------------------

    async def answer(self) -> dict[str, Any]:
        """A non-streamed completion, with fallback; the call is settled when it returns."""
        try:
            result = await self._route(self._complete)
        except BaseException as exc:
            await self.end(*_failure(exc))
            raise
        self.upstream_usage = result.get("usage")
        self.seen = [metering.completion_text(result)]
        self._note_finish(result)
        charge = await self.end(UsageRecord.Status.OK)
        assert self.metered is not None
        result.update(id=self.completion_id, model=self.model.id)
        result["usage"] = {**self.metered.usage, **metering.cost_fields(charge)}
        if self.rag_sources is not None:
            result[grounding.FIELD] = {"sources": self.rag_sources}
        return result

    async def _complete(self, adapter: Adapter, route: RouteInfo) -> dict[str, Any]:
        if self.native is not None and adapter.speaks(self.native):
            return await adapter.complete_native(self.native, route.upstream_model)
        return await adapter.complete(self._upstream_body(adapter), route.upstream_model)

    async def open_stream(self) -> None:
        """Start streaming from the first route that sends content (more than the role).

        Fallback happens here, before anything reaches the client. A call that fails
        here is settled and a GatewayError raised; then `chunks()` relays the rest.
        """
        try:
            await self._route(self._start_stream)
        except BaseException as exc:
            await self.end(*_failure(exc))
            raise

    async def _start_stream(self, adapter: Adapter, route: RouteInfo) -> None:
        if self.native is not None and adapter.speaks(self.native):
            chunks = adapter.stream_native(self.native, route.upstream_model)
        else:
            chunks = adapter.stream(self._upstream_body(adapter), route.upstream_model)
        self._upstream, self._buffer = chunks, []
        try:
            while (chunk := await self._next_chunk()) is not None:
                if chunk.get("choices"):
                    self._buffer.append(chunk)
                if metering.has_content(chunk):
                    self.ttft_ms = int((time.monotonic() - self.started) * 1000)
                    return
        except BaseException:
            await chunks.aclose()  # type: ignore[attr-defined]
            raise
        await chunks.aclose()  # type: ignore[attr-defined]
        raise ProviderError(f"{route.provider.name} sent an empty stream", retryable=True)

    async def _next_chunk(self) -> dict[str, Any] | None:
        """The upstream's next chunk, noting its text and usage; None at the end."""
        assert self._upstream is not None
        try:
            chunk = await anext(self._upstream)
        except StopAsyncIteration:
            return None
        if chunk.get("usage"):
            self.upstream_usage = chunk.pop("usage")
        self.seen.extend(metering.chunk_text(chunk))
        self._note_finish(chunk)
        return chunk

    def _note_finish(self, completion: dict[str, Any]) -> None:
        for choice in completion.get("choices") or ():
            if isinstance(choice, dict) and isinstance(reason := choice.get("finish_reason"), str):
                self.finish_reason = reason[:32]

    async def chunks(self) -> AsyncGenerator[dict[str, Any], None]:
        """The opened stream as chunk dicts, for any caller (/v1 relay, the web chat).

        Yields the upstream's chunks (with our id and model), then one usage chunk with
        the cost, or a final `{"error": …}` event if the stream fails. Settles exactly
        once however the stream ends; a caller that stops early must `aclose()` this
        generator, and what was generated so far is charged as `cancelled`.
        """
        assert self._upstream is not None
        status: str = UsageRecord.Status.ERROR
        error = "the stream stopped"
        try:
            for buffered in self._buffer:
                yield self._stamped(buffered)
            self._buffer = []
            while (chunk := await self._next_chunk()) is not None:
                if chunk.get("choices"):
                    yield self._stamped(chunk)
            status, error = UsageRecord.Status.OK, ""
            await self._count_prompt_if_unreported()
            yield self._usage_chunk()
            await self.end(UsageRecord.Status.OK)
        except ProviderError as exc:
            status, error = UsageRecord.Status.ERROR, exc.message
            log.warning("%s: the stream failed: %s", self.request_id, exc.detail)
            metrics.upstream_failed(self.route.provider.name if self.route else "")
            yield GatewayError(
                502, f"Upstream failed mid-stream: {exc.message}", code="upstream_error"
            ).as_dict()
        except (asyncio.CancelledError, GeneratorExit) as exc:
            if status != UsageRecord.Status.OK:
                status, error = _failure(exc)
            raise
        except Exception as exc:
            log.exception("stream of %s failed", self.request_id)
            status, error = _failure(exc)
            yield GatewayError(
                500,
                f"The gateway failed while streaming (request id {self.request_id}).",
                code="internal_error",
            ).as_dict()
        finally:
            await self._upstream.aclose()  # type: ignore[attr-defined]
            if not self.ended:
                await self.end(status, error)

    def _stamped(self, chunk: dict[str, Any]) -> dict[str, Any]:
        chunk["id"] = self.completion_id
        chunk["model"] = self.model.id
        return chunk

    def _usage_chunk(self) -> dict[str, Any]:
        metered = self._measure()
        return envelopes.usage_chunk(
            id=self.completion_id,
            created=int(time.time()),
            model=self.model.id,
            usage={
                **metered.usage,
                **metering.cost_fields(min(self.cost(metered), self.reservation.amount)),
            },
        )

    async def sse(self) -> AsyncIterator[bytes]:
        """The stream as server-sent events; [DONE] goes out before the settlement."""
        async with contextlib.aclosing(self.chunks()) as events:
            async for event in events:
                if event.get("usage"):
                    if self.rag_sources is not None:
                        yield sse(
                            grounding.sources_chunk(
                                completion_id=self.completion_id,
                                model=self.model.id,
                                sources=self.rag_sources,
                            )
                        )
                    if self.include_usage:
                        yield sse(event)
                    yield DONE
                else:
                    yield sse(event)

    # --- the hold, kept alive -------------------------------------------------------

    def keep_hold(self) -> None:
        """Refresh the hold every HOLD_REFRESH_SECONDS while the call runs, so the sweeper
        never releases a live call's credit, and record what the call has used so far, so
        a worker killed mid-stream leaves a hold the sweeper can bill for it."""
        self._keeper = asyncio.get_running_loop().call_later(
            settings.HOLD_REFRESH_SECONDS, self._refresh_hold
        )

    def _refresh_hold(self) -> None:
        if not self.ended:
            self._refreshing = asyncio.ensure_future(self._record_progress())

    async def _record_progress(self) -> None:
        if self._ending is not None:
            return
        # A prompt known by its bound that the progress is billed by (the upstream has
        # not reported its usage yet) is counted first, as the settlement counts it:
        # off the loop when it is long (PromptSize counts under its lock, once).
        await self._count_prompt_if_unreported()
        metered = self._progress()
        try:
            await _keep_hold_async(
                request_id=self.request_id,
                cost=min(self.cost(metered), self.reservation.amount),
                usage=self._usage_fields(metered, UsageRecord.Status.ERROR, ""),
            )
        except Exception as exc:
            if not outages.noted(exc):
                log.warning("could not refresh the hold of %s", self.request_id, exc_info=True)
        if self._ending is None:
            self.keep_hold()

    def _progress(self) -> metering.Metered:
        if not self.generating:
            return metering.NOTHING
        return metering.checked_usage(
            self.upstream_usage, prompt=self.prompt, generated="".join(self.seen)
        )

    async def _count_prompt_if_unreported(self) -> None:
        """Count a prompt known only by its bound, off the loop, when what the upstream
        reported so far leaves it to be billed by our own count."""
        if (
            self.generating
            and not self.prompt.exact
            and metering.needs_prompt_count(self.upstream_usage)
        ):
            await self.prompt.count_async()

    # --- 8. settle -----------------------------------------------------------------

    def _measure(self) -> metering.Metered:
        """What the call is billed for: nothing unless an upstream was generating."""
        if self.metered is None:
            self.metered = self._progress()
        return self.metered

    async def end(self, status: str, error: str = "") -> int:
        """Settle the call, once: charge what it used (never more than was held), release
        the hold, write the usage record. Returns the charge. Never raises: the client
        that got its answer is never sent an error for the books' sake, and a client that
        left does not stop the settlement (it runs on, then the cancellation goes on)."""
        if self.charge is not None:
            return self.charge
        if self._ending is None:
            if self._keeper is not None:
                self._keeper.cancel()
            self._ending = asyncio.ensure_future(self._settle(status, error))
        try:
            return await asyncio.shield(self._ending)
        except asyncio.CancelledError:
            await self._ending
            raise

    async def _settle(self, status: str, error: str) -> int:
        if self.metered is None:
            await self._count_prompt_if_unreported()
        metered = self._measure()
        cost = self.cost(metered)
        self.charge = min(cost, self.reservation.amount)
        # Only for accounts that keep their prompts: the others pay nothing for it.
        content = (self.body["messages"], "".join(self.seen)) if self.key.store_content else None
        try:
            self.record = await _settle_async(
                self.reservation, cost, self._usage_fields(metered, status, error), content
            )
        finally:
            self._after_settlement()
            if self.on_settled is not None:
                # Also when the client left just after the last chunk (a cancelled task).
                self.on_settled(self, status)
        unused = self.rate_tokens - metered.prompt_tokens - metered.completion_tokens
        if self.key.tpm_limit and unused > 0:
            # The key's tokens per minute are what the call used, not its budget.
            await give_back(key_id=self.key.id, rpm=None, tpm=self.key.tpm_limit, tokens=unused)
        return self.charge

    def _usage_fields(self, metered: metering.Metered, status: str, error: str) -> dict[str, Any]:
        route = self.route
        return {
            "source": self.source,
            "model": self.model.id,
            "requested_model": self.requested_model,
            "provider": route.provider.name if route else "",
            "upstream_model": route.upstream_model if route else "",
            "stream": self.stream,
            "prompt_tokens": metered.prompt_tokens,
            "completion_tokens": metered.completion_tokens,
            "cached_tokens": metered.cached_tokens,
            "cache_write_tokens": metered.cache_write_tokens,
            "cache_write_1h_tokens": metered.cache_write_1h_tokens,
            "unit_prices": self.model.unit_prices(metered.kinds()),
            "latency_ms": int((time.monotonic() - self.started) * 1000),
            "ttft_ms": self.ttft_ms,
            "status": status,
            "error": error[:300],
            "attempts": max(self.attempts, 1),
            "route_log": self.route_log,
            "finish_reason": self.finish_reason,
            "price_version": self.model.price_version,
            "flags": " ".join(metered.flags),
            "rag_sources": self.rag_sources or [],
        }

    def _after_settlement(self) -> None:
        """Work after the commit; its failure never reaches the client."""
        record = self.record
        if record is None:
            # Journaled while the database is away: replayed by this worker when it is back.
            schedule_replay()
            return
        self.charge = record.cost_micro_usd
        try:
            metrics.completion_settled(record)
        except Exception:
            log.exception("metrics failed after settling %s", self.request_id)


def _settle_and_stamp(
    reservation: Reservation,
    cost: int,
    usage: dict[str, Any],
    content: tuple[Any, str] | None = None,
) -> UsageRecord | None:
    """Settle in the database (or, while it is away, in the settlement journal: None), then
    note when the key was last used (at most once a minute per key and worker). Never
    raises: a failure is logged, and a settlement the journal could not take either
    leaves its hold for the sweeper."""
    try:
        record = settle_or_journal(reservation=reservation, cost=cost, usage=usage)
    except Exception:
        log.exception("settlement of %s failed", reservation.request_id)
        return None
    if record is None:
        return None
    if content is not None:
        keep_content(record, messages=content[0], response=content[1])
    key_id = reservation.api_key_id
    now = time.monotonic()
    if (
        key_id is not None
        and now - _last_used_written.get(key_id, -LAST_USED_WRITE_SECONDS)
        >= LAST_USED_WRITE_SECONDS
    ):
        _last_used_written[key_id] = now
        try:
            ApiKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())
        except Exception as exc:
            if not outages.noted(exc):
                log.warning("could not note the last use of key %s", key_id, exc_info=True)
    return record


_settle_async = db_sync_to_async(_settle_and_stamp)


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"


@refusals.recorded
async def open_call(
    *,
    key: KeyInfo,
    body: dict[str, Any],
    request_id: str,
    max_cost_header: str | None = None,
    fallback: bool = True,
    source: str = UsageRecord.Source.API,
    native: NativeRequest | None = None,
    route_price_header: str | None = None,
) -> Call:
    """Steps 1 to 5: validate, resolve the model, apply the key's policy and limits, and
    hold the worst case. Raises GatewayError (nothing held) when the call is refused.

    `body` is always the canonical chat body (what is validated, counted and held for);
    a door may add `native`, its own request, which a route whose adapter speaks that
    protocol gets instead (gateway/providers/base.py, NativeRequest)."""
    # RAG first, so the prompt counted and held for includes the retrieved passages.
    body, rag_sources = await grounding.ground(key=key, body=body)
    ceiling = modes.pop_route_options(body, route_price_header)
    validate_chat(body)
    catalog = await current_catalog()
    # Modes (the smart router, personas) pick the model and may add to the prompt first.
    mode = await modes.resolve(catalog, body, key=key, ceiling=ceiling)
    if mode is not None:
        body, native = mode.body, native if mode.keeps_native else None
    model = priced_model(catalog, body["model"], key)
    check_policy(key, model)
    prompt = measure_prompt(body["messages"], body.get("tools"))
    if native is not None:
        prompt.counted += native.extra_prompt_tokens
    output_tokens = await _fit_output(body, model, prompt)
    output = output_tokens * (body.get("n") or 1)
    worst_case = worst_case_cost(model, prompt.bound, output)
    cap = max_cost(max_cost_header, key)
    if cap is not None and worst_case > cap and not prompt.exact:
        worst_case = worst_case_cost(model, await prompt.count_async(), output)
    if cap is not None and worst_case > cap:
        raise GatewayError(
            402,
            f"The worst-case cost of this request is {worst_case} micro-USD "
            f"({format_money(worst_case)}), above the per-request cap of {cap} micro-USD. "
            "Lower max_tokens or raise the cap.",
            code="max_cost_exceeded",
        )

    async def counted_tokens() -> int:
        return await prompt.count_async() + output

    headers = await check_limits(
        key_id=key.id,
        rpm=key.rpm_limit,
        tpm=key.tpm_limit,
        tokens=prompt.bound + output,
        counted_tokens=None if prompt.exact else counted_tokens,
    )
    # What the limits took: the bound, or the count when the bound was refused.
    rate_tokens = prompt.bound + output
    call = Call(
        request_id=request_id,
        key=key,
        model=model,
        body=body,
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        prompt=prompt,
        output_tokens=output_tokens,
        reservation=Reservation(
            account_id=key.account_id,
            api_key_id=key.id,
            request_id=request_id,
            # (The limits may have had the prompt counted.)
            amount=worst_case_cost(model, prompt.bound, output),
        ),
        rate_tokens=rate_tokens,
        source=source,
        fallback=fallback,
        native=native,
        headers=headers,
        rag_sources=rag_sources,
    )
    if mode is not None:
        call.requested_model, call.on_settled = mode.requested, mode.on_settled
        call.headers[modes.ROUTED_HEADER] = model.id
    try:
        await _hold(call, output)
    except GatewayError:
        # Refused for money: the request must not use up the key's rate limits.
        await give_back(key_id=key.id, rpm=key.rpm_limit, tpm=key.tpm_limit, tokens=rate_tokens)
        raise
    call.keep_hold()
    return call


async def _fit_output(body: dict[str, Any], model: ModelInfo, prompt: PromptSize) -> int:
    """_output_budget() for a prompt known by its bound: its texts are counted (the
    longest first) only as far as the bound needs to leave the output its room in the
    model's context, and wholly when even that does not fit, so that a prompt too long
    is refused for its count."""
    requested = requested_output_tokens(body)
    room = model.context_length - max(
        requested if requested is not None else model.max_output_tokens, 1
    )
    await prompt.fit_async(room)
    # Within the room, the budget is the same for the bound as for the count.
    return _output_budget(body, model, prompt.bound)


async def _hold(call: Call, output: int) -> None:
    """Step 5 for an opened call: the worst case for the prompt's bound while the
    account (and the key's cap) have BOUND_HEADROOM times it to spare, else for the
    prompt's count."""
    if not call.prompt.exact:
        try:
            await hold_credit(call, leave=(BOUND_HEADROOM - 1) * call.reservation.amount)
        except GatewayError as exc:
            if exc.status != 402:
                raise
        else:
            return
        amount = worst_case_cost(call.model, await call.prompt.count_async(), output)
        call.reservation = replace(call.reservation, amount=amount)
    await hold_credit(call)


async def hold_credit(call: Call, leave: int = 0) -> None:
    """Step 5: reserve the call's worst case (402 when the account cannot cover it and
    `leave` more). A client gone meanwhile gets its hold released."""
    reserving = asyncio.ensure_future(
        _reserve_async(
            account_id=call.key.account_id,
            amount=call.reservation.amount,
            leave=leave,
            request_id=call.request_id,
            api_key=call.key.key,
        )
    )
    try:
        await asyncio.shield(reserving)
    except asyncio.CancelledError as exc:
        # The UPDATE may already have committed in its thread: wait for it, then settle.
        with contextlib.suppress(InsufficientCredits, SpendCapExceeded):
            await reserving
            await call.end(*_failure(exc))
        raise
    except InsufficientCredits as exc:
        raise GatewayError(
            402,
            f"Insufficient credits: this request may cost up to {format_money(exc.needed)} "
            f"({exc.needed} micro-USD) and {format_money(exc.available)} is available. "
            "Add credit on the Billing page or lower max_tokens.",
            code="insufficient_credits",
        ) from exc
    except SpendCapExceeded as exc:
        raise GatewayError(
            402,
            f"This key's spend cap of {format_money(exc.cap)} for its period would be exceeded "
            f"({format_money(exc.spent)} already spent or held).",
            code="spend_cap_exceeded",
        ) from exc
    except Exception as exc:
        # The database is away: a 503 (and, in open_call, the rate limit given back).
        if (kind := outages.kind_of(exc)) is None:
            raise
        outages.note(kind, exc)
        raise outages.unavailable(kind) from exc
