from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from accounts.models import ApiKey
from billing.ledger import account_for


@require_GET
@login_required
def profile(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(
        request, "accounts/profile.html", {"account": account_for(request.user)}
    )


@require_GET
@login_required
def keys(request: HttpRequest) -> TemplateResponse:
    api_keys = ApiKey.objects.for_user(request.user).filter(kind=ApiKey.Kind.API)
    return TemplateResponse(request, "accounts/keys.html", {"api_keys": api_keys})
