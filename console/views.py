from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponsePermanentRedirect,
    HttpResponseServerError,
    JsonResponse,
)
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.templatetags.static import static
from django.views.decorators.http import require_GET

from billing.money import credit_unit
from console import docs, model_pages
from console import docs_search as docs_search_index
from console.dashboard import dashboard_context
from console.pricing import DEFAULT_SORT, SORTS, pricing_rows
from console.site import public_base_url
from gateway import outages
from gateway.catalog import get_catalog
from gateway.sync import db_sync_to_async


@require_GET
def home(request: HttpRequest) -> TemplateResponse:
    """The dashboard for a signed-in customer, the product's front page for a visitor."""
    if request.user.is_authenticated:
        context = dashboard_context(request.user)  # type: ignore[arg-type]
        return TemplateResponse(request, "console/dashboard.html", context)
    return TemplateResponse(
        request, "console/home.html", {"model_count": len(get_catalog().callable())}
    )


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask for on pages that name no icon (the admin's)."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))


def server_error(request: HttpRequest) -> HttpResponse:
    """The 500 page, rendered without the request: whatever failed (the database, the
    session) must not fail again while the error page is drawn."""
    body = render_to_string("500.html", {"SITE_NAME": settings.SITE_NAME})
    return HttpResponseServerError(body)


def _docs_page(request: HttpRequest, page: str) -> TemplateResponse:
    template = docs.PAGES[page].template
    return TemplateResponse(request, template, docs.page_context(page, public_base_url(request)))


@require_GET
def docs_index(request: HttpRequest) -> TemplateResponse:
    return _docs_page(request, "index")


@require_GET
def quickstart(request: HttpRequest) -> TemplateResponse:
    """The first request in curl, Python and JavaScript, against this site's base URL."""
    return _docs_page(request, "quickstart")


@require_GET
def docs_clients(request: HttpRequest) -> TemplateResponse:
    """How to point each coding agent, SDK and chat app at this site."""
    return _docs_page(request, "clients")


@require_GET
def docs_api(request: HttpRequest) -> TemplateResponse:
    """Every endpoint with its errors and headers."""
    return _docs_page(request, "api")


@require_GET
def docs_search(request: HttpRequest) -> TemplateResponse:
    """The docs' sections matching `q` (every word, in the heading or the text)."""
    query = request.GET.get("q", "").strip()[:100]
    context = {
        "docs_page": "search",
        "query": query,
        "results": docs_search_index.search(request, query) if query else [],
    }
    return TemplateResponse(request, "console/docs/search.html", context)


@require_GET
async def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


READY_SECONDS = 0.8
"""How long /readyz waits for each dependency: its answer comes within a second."""


def _database_ready() -> str:
    if not outages.admit(outages.DATABASE):
        return _away(outages.DATABASE)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        outages.noted(exc)
        return f"error: {type(exc).__name__}"
    return "ok"


def _cache_ready() -> str:
    if settings.REDIS_URL and not outages.admit(outages.REDIS):
        return _away(outages.REDIS)
    try:
        cache.set("readyz", "1", timeout=5)
        answered = cache.get("readyz") == "1"
    except Exception as exc:
        outages.noted(exc)
        return f"error: {type(exc).__name__}"
    return "ok" if answered else "error: cache did not answer"


def _away(kind: str) -> str:
    outage = outages.down(kind)
    return f"error: {outage.error if outage else 'unavailable'}"


# Each check on threads of its own: one stuck on the database pool never delays the
# other, and neither waits behind the requests' database work on the default executor.
_checkers = {
    name: ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"readyz-{name}")
    for name in ("database", "cache")
}
_late: set[asyncio.Future[str]] = set()


async def _within(name: str, check: Callable[[], str]) -> str:
    """`check()` on its threads, or an error after READY_SECONDS (then left to finish:
    a thread cannot be stopped, and every check is bounded by its client's timeouts)."""
    answer = asyncio.ensure_future(db_sync_to_async(check, executor=_checkers[name])())
    done, _ = await asyncio.wait({answer}, timeout=READY_SECONDS)
    if done:
        return answer.result()
    _late.add(answer)
    answer.add_done_callback(_late.discard)
    return f"error: no answer within {READY_SECONDS:g} s"


@require_GET
async def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: the database and the shared cache (Redis in production) answer, each
    within READY_SECONDS; a dependency known to be away is reported without asking it."""
    database, shared_cache = await asyncio.gather(
        _within("database", _database_ready), _within("cache", _cache_ready)
    )
    status = {"database": database, "cache": shared_cache}
    ok = all(value == "ok" for value in status.values())
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", **status}, status=200 if ok else 503
    )


@require_GET
def model_page(request: HttpRequest, model_id: str) -> HttpResponse:
    """One model: prices, limits, providers' health, a sample call and recent speed.

    An alias or title leads to the model's own address; an unknown or disabled model is
    a 404."""
    model = get_catalog().resolve(model_id.rstrip("/"))
    if model is None:
        raise Http404("No such model")
    if model.id != model_id:
        return redirect("model", model_id=model.id)
    base_url = public_base_url(request)
    context = {
        "model": model,
        "model_page": True,
        "callable": model.is_priced and bool(model.routes),
        "providers": model_pages.provider_health(model),
        "speed": model_pages.recent_speed(model.id),
        "speed_days": model_pages.RECENT_DAYS,
        "sample": docs.quickstart_groups(base_url, model.id)[0],
        "base_url": base_url,
    }
    return TemplateResponse(request, "console/model.html", context)


@require_GET
def pricing(request: HttpRequest) -> TemplateResponse:
    """Public prices of every enabled model, after markup; the numbers /v1/catalog gives."""
    sort = request.GET.get("sort", DEFAULT_SORT)
    if sort not in SORTS:
        sort = DEFAULT_SORT
    descending = request.GET.get("dir") == "desc"
    query = request.GET.get("q", "").strip()[:100]
    models = get_catalog().enabled()
    rows = pricing_rows(models, query=query, sort=sort, descending=descending)
    # The column is there for every search once any model has the price, so it never jumps.
    per_request = any(m.request_price for m in models)
    context = {
        "rows": rows,
        "query": query,
        "sort": sort,
        "descending": descending,
        "markup": settings.PRICE_MARKUP_PERCENT,
        "per_request": per_request,
        "credit_unit": credit_unit(),
        "sort_options": [
            ("model", "Model name"),
            ("input", "Input price"),
            ("output", "Output price"),
            ("cache_read", "Cache read price"),
            *([("request", "Price per request")] if per_request else []),
            ("context", "Context length"),
            ("max_output", "Max output"),
            ("providers", "Providers"),
        ],
        "columns": [
            ("model", "Model", False),
            ("input", "Input / 1M", True),
            ("output", "Output / 1M", True),
            ("cache_read", "Cache / 1M", True),
            *([("request", "Per request", True)] if per_request else []),
            ("context", "Context", True),
            ("max_output", "Max output", True),
            ("providers", "Providers", True),
        ],
    }
    template = "console/pricing.html"
    if request.htmx and request.htmx.target == "pricing-table":  # type: ignore[attr-defined]
        template = "console/_pricing_table.html"
    return TemplateResponse(request, template, context)
