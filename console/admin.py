"""The admin site: signed into only through the console's sign-in.

Django's own admin login form has no rate limit and no second factor, so the admin
never shows it: /admin/login/ sends visitors to allauth's sign-in, which throttles
failed passwords (ACCOUNT_RATE_LIMITS) and asks staff with an authenticator for it.
With ADMIN_REQUIRE_2FA, staff must also have passed a second factor (a TOTP or
recovery code, or a passkey) in this session: those without one are sent to set one
up, those who signed in without it are asked for it.
"""

from __future__ import annotations

from typing import Any

from allauth.account.authentication import get_authentication_records
from allauth.account.utils import get_next_redirect_url
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import urlencode


def missing_second_factor(request: HttpRequest) -> set[str] | None:
    """None when this session may use the admin as far as ADMIN_REQUIRE_2FA goes; else
    the authenticator types its user has (empty: none set up yet)."""
    if not settings.ADMIN_REQUIRE_2FA:
        return None
    records = get_authentication_records(request, request.user)
    if any(record.get("method") == "mfa" for record in records):
        return None
    return set(Authenticator.objects.filter(user_id=request.user.pk).values_list("type", flat=True))


class SwitchboardAdminSite(admin.AdminSite):
    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and missing_second_factor(request) is None

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """Never Django's form: allauth's sign-in, then the second factor if required."""
        next_url = get_next_redirect_url(request) or reverse("admin:index", current_app=self.name)
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(next_url, resolve_url(settings.LOGIN_URL))
        if not (user.is_active and user.is_staff):
            raise PermissionDenied
        types = missing_second_factor(request)
        if types is None:
            return HttpResponseRedirect(next_url)
        if not types:
            messages.warning(
                request, "Set up two-factor authentication (an app or a passkey) to use the admin."
            )
            return HttpResponseRedirect(reverse("mfa_index"))
        by_code = {Authenticator.Type.TOTP, Authenticator.Type.RECOVERY_CODES}
        url = reverse("mfa_reauthenticate" if types & by_code else "mfa_reauthenticate_webauthn")
        return HttpResponseRedirect(f"{url}?{urlencode({'next': next_url})}")
