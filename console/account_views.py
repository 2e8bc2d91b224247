from __future__ import annotations

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from accounts.forms import ApiKeyForm, CloseAccountForm, TimeZoneForm
from accounts.models import ApiKey, ApiKeyQuerySet, SignIn, User
from billing.ledger import account_for
from gateway.catalog import model_choices

SIGN_IN_HISTORY = 10


class AuthenticatedRequest(HttpRequest):
    """What `login_required` views see: a signed-in user and django-htmx's details."""

    user: User
    htmx: HtmxDetails


def api_base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/v1")


def user_api_keys(request: AuthenticatedRequest) -> ApiKeyQuerySet:
    return ApiKey.objects.for_user(request.user).filter(kind=ApiKey.Kind.API).with_period_spend()


@require_GET
@login_required
def profile(request: AuthenticatedRequest) -> TemplateResponse:
    user = request.user
    context = {
        "account": account_for(user),
        "emails": EmailAddress.objects.filter(user=user).order_by("-primary", "email"),
        "passkeys": Authenticator.objects.filter(user=user, type=Authenticator.Type.WEBAUTHN),
        "github_accounts": SocialAccount.objects.filter(user=user, provider="github"),
        "sign_ins": SignIn.objects.for_user(user)[:SIGN_IN_HISTORY],
        "time_zone_form": TimeZoneForm(instance=user),
    }
    return TemplateResponse(request, "accounts/profile.html", context)


@require_POST
@login_required
def time_zone(request: AuthenticatedRequest) -> HttpResponse:
    """Save the user's time zone (the profile page's form; htmx swaps the form only)."""
    form = TimeZoneForm(request.POST, instance=request.user)
    saved = form.is_valid()
    if saved:
        form.save()
    if request.htmx:
        # 200 either way: htmx swaps only successful answers, and the errors are the answer.
        return TemplateResponse(
            request, "accounts/_time_zone.html", {"time_zone_form": form, "saved": saved}
        )
    if saved:
        messages.success(request, f"Time zone set to {request.user.time_zone}.")
    else:
        messages.error(request, " ".join(map(str, form.errors.get("time_zone", []))))
    return redirect("accounts:profile")


@require_GET
@login_required
def keys(request: AuthenticatedRequest) -> TemplateResponse:
    context = {"api_keys": user_api_keys(request), "form": ApiKeyForm(models=model_choices())}
    return TemplateResponse(request, "accounts/keys.html", context)


@require_POST
@login_required
def key_create(request: AuthenticatedRequest) -> TemplateResponse:
    form = ApiKeyForm(request.POST, models=model_choices())
    if not form.is_valid():
        context = {"api_keys": user_api_keys(request), "form": form}
        return TemplateResponse(request, "accounts/keys.html", context, status=400)
    key, secret = ApiKey.objects.mint(user=request.user, **form.key_fields())
    context = {
        "key": key,
        "secret": secret,
        "base_url": api_base_url(request),
        "model": key.allowed_models[0] if key.allowed_models else "demo",
    }
    return TemplateResponse(request, "accounts/key_created.html", context, status=201)


@require_POST
@login_required
def key_revoke(request: AuthenticatedRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(user_api_keys(request), pk=key_id)
    key.revoke()
    if request.htmx:
        return TemplateResponse(request, "accounts/_key_row.html", {"key": key})
    messages.success(request, f"The key “{key.name}” was revoked.")
    return redirect("accounts:keys")


@require_http_methods(["GET", "POST"])
@login_required
def close_account(request: AuthenticatedRequest) -> HttpResponse:
    user = request.user
    # Bound on every POST: an empty one is a form left blank, not a page view.
    form = CloseAccountForm(request.POST if request.method == "POST" else None, email=user.email)
    if request.method == "POST" and form.is_valid():
        user.close()
        logout(request)
        messages.success(request, "Your account was deleted and its keys revoked.")
        return redirect("home")
    status = 400 if form.is_bound else 200
    return TemplateResponse(request, "accounts/close.html", {"form": form}, status=status)
