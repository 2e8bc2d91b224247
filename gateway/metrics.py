"""Prometheus metrics for /v1, served at /metrics behind `Authorization: Bearer $METRICS_TOKEN`.

With PROMETHEUS_MULTIPROC_DIR set (production: N uvicorn workers), every worker writes
its values to memory-mapped files in that directory and a scrape of any worker sums
them all; without it the process's default registry is used. The directory must be
emptied before the workers start (`make prod` does), or old values are added in.

The hooks below run on every call, so they do nothing but bump counters.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from billing.models import UsageRecord

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def _ensure_multiprocess_directory() -> None:
    """prometheus_client fails on the first metric below when PROMETHEUS_MULTIPROC_DIR
    names a missing directory (a cron `manage.py sweepholds` with production's
    environment, say): create it, or refuse with the reason."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"PROMETHEUS_MULTIPROC_DIR={path} is missing and cannot be created "
            f"({exc.strerror}): create it, or unset the variable for this process."
        ) from exc


_ensure_multiprocess_directory()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
ROUTES = {
    "/v1/chat/completions": "chat_completions",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "count_tokens",
    "/v1/responses": "responses",
    "/v1/models": "models",
    "/v1/catalog": "catalog",
}

HTTP_REQUESTS = Counter(
    "switchboard_http_requests",
    "Requests answered on /v1, by endpoint and HTTP status.",
    ["route", "status"],
)
HTTP_LATENCY = Histogram(
    "switchboard_http_request_duration_seconds",
    "Time from the request to the end of the answer (the whole stream for streams).",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "switchboard_http_requests_in_flight",
    "Requests on /v1 being answered now (streams count until they end).",
    multiprocess_mode="livesum",
)
COMPLETIONS = Counter(
    "switchboard_completions",
    "Chat completions settled, by model, stream or not, and outcome (ok, error, cancelled).",
    ["model", "stream", "status"],
)
TIME_TO_FIRST_TOKEN = Histogram(
    "switchboard_time_to_first_token_seconds",
    "Time from the request to the first streamed chunk from the upstream.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
TOKENS = Counter(
    "switchboard_tokens",
    "Tokens billed, by model and kind (prompt, completion).",
    ["model", "kind"],
)
CREDITS = Counter(
    "switchboard_credits_spent_micro_usd",
    "Credit charged to customers, in micro-USD, by model.",
    ["model"],
)
UNCHARGED = Counter(
    "switchboard_credits_uncharged_micro_usd",
    "Real cost above what was charged (capped at the hold or the balance), in micro-USD, "
    "by model: revenue lost to under-reservation.",
    ["model"],
)
FLAGGED = Counter(
    "switchboard_settlements_flagged",
    "Settlements by flag (capped, hold_missing, interrupted, usage_replaced, ...); "
    "a settlement with several flags counts once under each.",
    ["flag"],
)
UPSTREAM_ERRORS = Counter(
    "switchboard_upstream_errors",
    "Failed upstream attempts (including those a fallback route recovered), by provider.",
    ["provider"],
)


def route_label(path: str) -> str:
    if path in ROUTES:
        return ROUTES[path]
    if path.startswith("/v1/models/"):
        return "models"
    if path.startswith("/v1/generation/"):
        return "generation"
    return "other"


def instrumented(app: ASGIApp) -> ASGIApp:
    """Wrap the /v1 ASGI app: requests in flight, answers by status, and latency."""

    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not scope["path"].startswith("/v1/"):
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_and_note(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        route = route_label(scope["path"])
        IN_FLIGHT.inc()
        try:
            await app(scope, receive, send_and_note)
        finally:
            IN_FLIGHT.dec()
            HTTP_REQUESTS.labels(route, str(status[0])).inc()
            HTTP_LATENCY.labels(route).observe(time.perf_counter() - started)

    return wrapper


def completion_settled(record: UsageRecord) -> None:
    """Count one settled chat completion: outcome, tokens, credit, credit left uncharged,
    flags, time to first token."""
    model = record.model
    COMPLETIONS.labels(model, "true" if record.stream else "false", record.status).inc()
    if record.prompt_tokens:
        TOKENS.labels(model, "prompt").inc(record.prompt_tokens)
    if record.completion_tokens:
        TOKENS.labels(model, "completion").inc(record.completion_tokens)
    if record.cost_micro_usd:
        CREDITS.labels(model).inc(record.cost_micro_usd)
    if record.uncharged_micro_usd:
        UNCHARGED.labels(model).inc(record.uncharged_micro_usd)
    for flag in record.flags.split():
        FLAGGED.labels(flag).inc()
    if record.ttft_ms is not None:
        TIME_TO_FIRST_TOKEN.labels(model).observe(record.ttft_ms / 1000)


def upstream_failed(provider: str) -> None:
    UPSTREAM_ERRORS.labels(provider).inc()


def render() -> bytes:
    """The exposition text: every worker's values in multiprocess mode, else this process's."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return generate_latest(registry)


_render_async = sync_to_async(render, thread_sensitive=False)


def _authorized(header: str | None) -> bool:
    expected = f"Bearer {settings.METRICS_TOKEN}"
    return header is not None and hmac.compare_digest(header.encode(), expected.encode())


@require_GET
async def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: 404 while METRICS_TOKEN is unset, 401 without the right bearer token."""
    if not settings.METRICS_TOKEN:
        return HttpResponse("Not found.\n", status=404, content_type="text/plain")
    if not _authorized(request.headers.get("Authorization")):
        response = HttpResponse("Unauthorized.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(await _render_async(), content_type=CONTENT_TYPE_LATEST)
