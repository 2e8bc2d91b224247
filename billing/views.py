from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from billing.ledger import account_for
from billing.models import UsageRecord


@require_GET
@login_required
def index(request: HttpRequest) -> TemplateResponse:
    account = account_for(request.user)
    entries = account.entries.all()[:50]
    return TemplateResponse(request, "billing/index.html", {"account": account, "entries": entries})


@require_GET
def pricing(request: HttpRequest) -> TemplateResponse:
    from gateway.catalog import get_catalog

    models = sorted(get_catalog().enabled(), key=lambda m: m.id)
    return TemplateResponse(request, "billing/pricing.html", {"models": models})


@require_GET
@login_required
def usage(request: HttpRequest) -> TemplateResponse:
    records = UsageRecord.objects.for_user(request.user).select_related("api_key")[:100]
    return TemplateResponse(request, "billing/usage.html", {"records": records})
