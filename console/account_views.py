from __future__ import annotations

from dataclasses import dataclass

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.adapter import get_adapter as get_social_adapter
from allauth.socialaccount.models import SocialAccount
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from accounts.forms import ApiKeyForm, CloseAccountForm
from accounts.models import ApiKey, ApiKeyQuerySet, SignIn, User
from billing.ledger import account_for
from console import docs
from console.site import public_base_url
from gateway.catalog import model_choices

SIGN_IN_HISTORY = 10
SOCIAL_SIGN_INS = {"github": "GitHub", "discord": "Discord"}


class AuthenticatedRequest(HttpRequest):
    """What `login_required` views see: a signed-in user and django-htmx's details."""

    user: User
    htmx: HtmxDetails


@dataclass(frozen=True)
class SignInProvider:
    """A social sign-in on the profile: the accounts connected, or the way to connect one."""

    id: str
    name: str
    connected: list[str]
    configured: bool


def sign_in_providers(request: AuthenticatedRequest) -> list[SignInProvider]:
    """The site's social sign-ins (GitHub, Discord) that are configured or that the user
    has connected, with the name of each account connected."""
    configured = {p.id: p for p in get_social_adapter().list_providers(request)}
    connected: dict[str, list[str]] = {}
    for account in SocialAccount.objects.filter(user=request.user).order_by("pk"):
        label = str(account.get_provider_account()) if account.provider in configured else ""
        connected.setdefault(account.provider, []).append(label or account.uid)
    return [
        SignInProvider(
            id=provider_id,
            name=name,
            connected=connected.get(provider_id, []),
            configured=provider_id in configured,
        )
        for provider_id, name in SOCIAL_SIGN_INS.items()
        if provider_id in configured or provider_id in connected
    ]


def api_base_url(request: HttpRequest) -> str:
    return f"{public_base_url(request)}/v1"


def user_api_keys(request: AuthenticatedRequest) -> ApiKeyQuerySet:
    return ApiKey.objects.for_user(request.user).listed().with_period_spend()


@require_GET
@login_required
def profile(request: AuthenticatedRequest) -> TemplateResponse:
    user = request.user
    context = {
        "account": account_for(user),
        "emails": EmailAddress.objects.filter(user=user).order_by("-primary", "email"),
        "passkeys": Authenticator.objects.filter(user=user, type=Authenticator.Type.WEBAUTHN),
        "sign_in_providers": sign_in_providers(request),
        "sign_ins": SignIn.objects.for_user(user)[:SIGN_IN_HISTORY],
    }
    return TemplateResponse(request, "accounts/profile.html", context)


def keys_context(request: AuthenticatedRequest, form: ApiKeyForm) -> dict[str, object]:
    """The Keys page: live keys, and revoked ones only when asked (`?show=revoked`)."""
    all_keys = user_api_keys(request)
    show_revoked = request.GET.get("show") == "revoked"
    return {
        "api_keys": all_keys if show_revoked else all_keys.filter(revoked_at__isnull=True),
        "show_revoked": show_revoked,
        "revoked_count": all_keys.filter(revoked_at__isnull=False).count(),
        "form": form,
    }


@require_GET
@login_required
def keys(request: AuthenticatedRequest) -> TemplateResponse:
    context = keys_context(request, ApiKeyForm(models=model_choices()))
    return TemplateResponse(request, "accounts/keys.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def key_edit(request: AuthenticatedRequest, key_id: int) -> HttpResponse:
    """Change a live key's name, limits, allowlist, spend cap and expiry."""
    key = get_object_or_404(user_api_keys(request).filter(revoked_at__isnull=True), pk=key_id)
    if request.method == "POST":
        form = ApiKeyForm(request.POST, models=model_choices())
        if form.is_valid():
            key.change(**form.key_fields())
            messages.success(request, f"The key “{key.name}” was saved.")
            return redirect("accounts:keys")
    else:
        form = ApiKeyForm(initial=ApiKeyForm.initial_for(key), models=model_choices())
    status = 400 if form.is_bound else 200
    return TemplateResponse(
        request, "accounts/key_edit.html", {"key": key, "form": form}, status=status
    )


NEW_SECRET_SESSION_KEY = "new_key_secret"
"""Where a new key's secret waits, between the POST that made it and the one page that
shows it (post/redirect/get: a reload cannot mint a second key)."""


@require_POST
@login_required
def key_create(request: AuthenticatedRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST, models=model_choices())
    if not form.is_valid():
        context = keys_context(request, form)
        return TemplateResponse(request, "accounts/keys.html", context, status=400)
    key, secret = ApiKey.objects.mint(user=request.user, **form.key_fields())
    request.session[NEW_SECRET_SESSION_KEY] = {"key": key.pk, "secret": secret}
    return redirect("accounts:key_created", key_id=key.pk, permanent=False)


@require_GET
@never_cache
@login_required
def key_created(request: AuthenticatedRequest, key_id: int) -> HttpResponse:
    """The new key's secret and snippets, once: the session forgets the secret here."""
    key = get_object_or_404(user_api_keys(request), pk=key_id)
    waiting = request.session.get(NEW_SECRET_SESSION_KEY)
    if not waiting or waiting.get("key") != key.pk:
        messages.info(
            request,
            f"The secret of “{key.name}” was shown once, when it was created, and cannot be "
            "shown again. Create a new key if you lost it.",
        )
        return redirect("accounts:keys")
    del request.session[NEW_SECRET_SESSION_KEY]
    secret = waiting["secret"]
    model = key.allowed_models[0] if key.allowed_models else docs.example_model()
    context = {
        "key": key,
        "secret": secret,
        "base_url": api_base_url(request),
        "export_group": docs.key_export(secret),
        # A first request and a streamed one; tools and the rest are in the docs.
        "groups": docs.quickstart_groups(public_base_url(request), model)[:2],
    }
    return TemplateResponse(request, "accounts/key_created.html", context)


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
