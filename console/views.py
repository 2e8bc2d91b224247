from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET


@require_GET
def home(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(request, "console/home.html", {})


@require_GET
def quickstart(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(request, "console/quickstart.html", {"base_url": settings.SITE_URL})


@require_GET
async def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


def _dependencies_ready() -> dict[str, str]:
    status = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        status["database"] = "ok"
    except Exception as exc:
        status["database"] = f"error: {type(exc).__name__}"
    try:
        cache.set("readyz", "1", timeout=5)
        status["cache"] = "ok" if cache.get("readyz") == "1" else "error: cache did not answer"
    except Exception as exc:
        status["cache"] = f"error: {type(exc).__name__}"
    return status


@require_GET
async def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: the database and the shared cache (Redis in production) answer."""
    status = await sync_to_async(_dependencies_ready, thread_sensitive=False)()
    ok = all(value == "ok" for value in status.values())
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", **status}, status=200 if ok else 503
    )
