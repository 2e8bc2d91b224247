"""The /v1 endpoints. Async end to end; served without session/CSRF middleware."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from billing.models import UsageRecord
from billing.money import credit_unit_json, money_json, unit_amount
from gateway import calls, outages, routing
from gateway.auth import KeyInfo, authenticate
from gateway.catalog import ModelInfo
from gateway.errors import GatewayError, internal_error, method_not_allowed, openai_error
from gateway.idempotency import idempotent
from gateway.ratelimit import HEADER_NAMES, client_address, current_limits
from gateway.sync import db_sync_to_async
from gateway.validation import parse_json, too_large

log = logging.getLogger(__name__)

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]
ErrorRenderer = Callable[[GatewayError, dict[str, str]], HttpResponse]
Credentials = Callable[[HttpRequest], str | None]


def bearer_credentials(request: HttpRequest) -> str | None:
    """The `Authorization` header, where OpenAI clients send their key."""
    return request.headers.get("Authorization")


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    response = HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


# On every /v1 answer: never sniffed as another type, never kept by a cache (answers
# are per key and cost money; an intermediary must not replay one).
API_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def _check_host(request: HttpRequest) -> None:
    """ALLOWED_HOSTS, which /v1 would otherwise skip: without middleware nothing else
    reads the host (on the console, CommonMiddleware does)."""
    try:
        request.get_host()
    except DisallowedHost:
        raise GatewayError(
            400,
            "This server does not answer for that Host header (ALLOWED_HOSTS).",
            code="invalid_host",
        ) from None


async def _add_limit_headers(response: HttpResponseBase, key: KeyInfo) -> None:
    """Every answer to a key says where its rate limits stand (read, never counted).

    Paths that counted the request already carry the headers; the others (reads, and
    refusals before the limits were checked) are given the current values here.
    """
    if all(response.has_header(name) for name in HEADER_NAMES):
        return
    try:
        headers = await current_limits(key_id=key.id, rpm=key.rpm_limit, tpm=key.tpm_limit)
    except GatewayError:
        return  # the limits store is away (noted once there): the answer matters more
    for name, value in headers.items():
        response.setdefault(name, value)


def api_view(
    methods: tuple[str, ...],
    *,
    key_required: bool = True,
    render_error: ErrorRenderer = openai_error,
    credentials: Credentials = bearer_credentials,
) -> Callable[[View], View]:
    """Method check, key authentication (attached as `request.api_key`), the request id,
    the rate-limit headers for the key, and errors as the OpenAI error object: never an
    HTML page, never a bare 500. A door that speaks another protocol passes its own
    `render_error` and `credentials` (where its clients send the key). While the
    database is away every request is answered 503 at once (gateway.outages), and a
    dependency lost mid-request is a 503 too."""

    def decorator(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            request_id = calls.new_request_id()
            request.request_id = request_id  # type: ignore[attr-defined]
            request.render_error = render_error  # type: ignore[attr-defined]
            base = {"x-request-id": request_id, **API_HEADERS}
            try:
                _check_host(request)
                if request.method not in methods:
                    raise method_not_allowed(request.method, methods)
                if not await outages.admit_async(outages.DATABASE):
                    raise outages.unavailable(outages.DATABASE)
                if key_required:
                    request.api_key = await authenticate(  # type: ignore[attr-defined]
                        credentials(request), client=client_address(request)
                    )
                response = await view(request, *args, **kwargs)
            except GatewayError as exc:
                response = render_error(exc, base)
            except Exception as exc:
                kind = outages.kind_of(exc)
                if kind is None:
                    log.exception("unhandled error in %s (%s)", request.path, request_id)
                    return render_error(internal_error(request_id), base)
                outages.note(kind, exc)
                response = render_error(outages.unavailable(kind), base)
            for name, value in base.items():
                # A replayed answer keeps the x-request-id of the call that made it.
                response.setdefault(name, value)
            for name, value in API_HEADERS.items():
                # Over a view's own (a stream's "no-cache"): no answer is ever stored.
                response[name] = value
            key = getattr(request, "api_key", None)
            if key is not None:
                await _add_limit_headers(response, key)
            return response

        return wrapper

    return decorator


def read_body(request: HttpRequest, limit: int | None = None) -> bytes:
    """The body, or a 413 above `limit` bytes (MAX_REQUEST_BYTES unless given)."""
    from django.conf import settings

    if limit is None:
        limit = settings.MAX_REQUEST_BYTES
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    try:
        raw = request.body
    except RequestDataTooBig as exc:
        raise too_large(int(declared) if declared.isdigit() else limit + 1, limit) from exc
    if len(raw) > limit:
        raise too_large(len(raw), limit)
    return raw


async def open_request_call(request: HttpRequest, body: dict[str, Any], **door: Any) -> calls.Call:
    """The call for an authenticated /v1 request: its key and request id, and the headers
    that shape a call (`X-Max-Cost-Micro-Usd`, `X-Fallback: off`, `X-Route-Max-Price`); a
    door adds its own `source` (and `native`)."""
    return await calls.open_call(
        key=request.api_key,  # type: ignore[attr-defined]
        body=body,
        request_id=request.request_id,  # type: ignore[attr-defined]
        max_cost_header=request.headers.get("X-Max-Cost-Micro-Usd"),
        fallback=request.headers.get("X-Fallback", "on").strip().lower() != "off",
        route_price_header=request.headers.get("X-Route-Max-Price"),
        **door,
    )


@api_view(("POST",))
@idempotent
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    """POST /v1/chat/completions: OpenAI's chat API, streamed or not, billed once."""
    call = await open_request_call(request, parse_json(read_body(request)))
    try:
        if not call.stream:
            result = await call.answer()
            return json_response(
                result, headers={**call.headers, "X-Request-Cost-Micro-Usd": str(call.charge)}
            )
        await call.open_stream()
    except GatewayError as exc:
        exc.headers = {**call.headers, **exc.headers}
        raise
    response = StreamingHttpResponse(call.sse(), content_type="text/event-stream")
    response["X-Accel-Buffering"] = "no"
    for name, value in call.headers.items():
        response[name] = value
    return response


def _model_object(model: ModelInfo) -> dict[str, Any]:
    return {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": model.owned_by or "switchboard",
    }


@api_view(("GET",))
async def models(request: HttpRequest) -> HttpResponse:
    """GET /v1/models: the models this key may call, as OpenAI lists them."""
    key: KeyInfo = request.api_key  # type: ignore[attr-defined]
    catalog = await calls.current_catalog()
    data = [
        _model_object(m)
        for m in sorted(catalog.callable(), key=lambda m: m.id)
        if key.allows_model(m.id)
    ]
    return json_response({"object": "list", "data": data})


@api_view(("GET",))
async def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    """GET /v1/models/<id>: one model, as OpenAI's SDK retrieves it."""
    key: KeyInfo = request.api_key  # type: ignore[attr-defined]
    catalog = await calls.current_catalog()
    model = catalog.resolve(model_id)
    if model is None or not (model.is_priced and model.routes and key.allows_model(model.id)):
        raise calls.model_not_found(model_id, catalog, key)
    return json_response(_model_object(model))


def catalog_entry(model: ModelInfo) -> dict[str, Any]:
    """A model's public record: prices (after markup), limits, providers, availability."""
    healthy = [r for r in model.routes if routing.cooling_for(r.provider.id) == 0]

    def price(micro: int | None) -> dict[str, Any] | None:
        return None if micro is None else money_json(micro)

    return {
        "id": model.id,
        "title": model.title or model.id,
        "aliases": list(model.aliases),
        "owned_by": model.owned_by,
        "context_length": model.context_length,
        "max_output_tokens": model.max_output_tokens,
        "pricing": {
            "unit": "per_million_tokens",
            "input": price(model.input_price),
            "output": price(model.output_price),
            "cached_input": price(model.cached_input_price),
            "cache_write": price(model.cache_write_price),
            "cache_write_1h": price(model.cache_write_1h_price),
            # The one price that is not per million tokens: charged once per request.
            "per_request": price(model.request_price),
        },
        "providers": [r.provider.name for r in model.routes],
        "enabled": model.enabled,
        "priced": model.is_priced,
        "available": model.enabled and model.is_priced and bool(healthy),
    }


@api_view(("GET",), key_required=False)
async def catalog(request: HttpRequest) -> HttpResponse:
    """GET /v1/catalog: public prices and availability; ?show_all=true adds disabled models."""
    show_all = request.GET.get("show_all", "").lower() in {"1", "true", "yes"}
    snapshot = await calls.current_catalog()
    models = snapshot.all() if show_all else snapshot.enabled()
    data = [catalog_entry(m) for m in sorted(models, key=lambda m: m.id)]
    return json_response({"object": "list", "credit_unit": credit_unit_json(), "data": data})


def _generation(request_id: str, user_id: int) -> dict[str, Any] | None:
    record = (
        UsageRecord.objects.with_request_id(request_id)
        .filter(account__user_id=user_id)
        .select_related("api_key")
        .first()
    )
    if record is None:
        return None
    return {
        "id": record.request_id,
        "object": "generation",
        "created": int(record.created_at.timestamp()),
        "model": record.model,
        "requested_model": record.requested_model or None,
        "provider": record.provider,
        "upstream_model": record.upstream_model,
        "stream": record.stream,
        "status": record.status,
        "error": record.error or None,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cached_tokens": record.cached_tokens,
        "total_tokens": record.total_tokens,
        "cost_micro_usd": record.cost_micro_usd,
        "cost": record.cost_micro_usd / 1_000_000,
        "cost_units": unit_amount(record.cost_micro_usd),
        "latency_ms": record.latency_ms,
        "time_to_first_token_ms": record.ttft_ms,
        "attempts": record.attempts,
        "api_key": record.api_key.name if record.api_key else None,
        "price_version": record.price_version,
    }


_generation_async = db_sync_to_async(_generation)


@api_view(("GET",))
async def generation(request: HttpRequest, request_id: str) -> HttpResponse:
    """GET /v1/generation/<request id>: tokens and cost of a past request, owner only."""
    key: KeyInfo = request.api_key  # type: ignore[attr-defined]
    found = await _generation_async(request_id, key.user_id)
    if found is None:
        raise GatewayError(
            404, f"No generation {request_id!r} for this account.", code="generation_not_found"
        )
    return json_response(found)


@api_view(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"), key_required=False)
async def unknown_endpoint(request: HttpRequest) -> HttpResponse:
    """Any other /v1 path: a JSON 404 that says what exists (and spots a trailing slash)."""
    path = request.path
    hint = ""
    if path.endswith("/") and len(path) > len("/v1/"):
        hint = f" Did you mean {path.rstrip('/')} (no trailing slash)?"
    raise GatewayError(
        404,
        f"Unknown endpoint {request.method} {path}.{hint} This gateway serves "
        "/v1/chat/completions, /v1/messages, /v1/responses, /v1/models, /v1/catalog, "
        "/v1/estimate, /v1/generation/<id>, /v1/documents, /v1/pricing and the account "
        "API (/v1/auth, /v1/account, /v1/billing); /docs/api/ lists them all.",
        code="unknown_endpoint",
    )
