"""All allauth customisation lives here (ACCOUNT_ADAPTER / SOCIALACCOUNT_ADAPTER)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.authentication import get_authentication_records
from allauth.mfa import app_settings as mfa_settings
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from accounts.models import SignIn
from console.site import public_domain

MFA_LABELS = {"webauthn": "passkey", "totp": "authenticator app", "recovery_codes": "recovery code"}
PROVIDER_LABELS = {"github": "GitHub", "discord": "Discord"}


def describe_sign_in(records: list[dict[str, Any]]) -> str:
    """A short human label for how this session was authenticated ("Password + passkey")."""
    labels: list[str] = []
    for record in records:
        method = record.get("method")
        if method == "password":
            label = "password"
        elif method == "code":
            label = "email code"
        elif method == "socialaccount":
            provider = str(record.get("provider", "social account"))
            label = PROVIDER_LABELS.get(provider, provider)
        elif method == "mfa":
            label = MFA_LABELS.get(str(record.get("type")), "second factor")
        else:
            label = str(method).replace("_", " ")
        if label not in labels:
            labels.append(label)
    text = " + ".join(labels) or "sign-up"
    return text[0].upper() + text[1:]


@dataclass(frozen=True)
class SiteInfo:
    """What allauth's emails call `current_site`: SITE_NAME at the public base URL."""

    name: str
    domain: str


def this_site(request: HttpRequest | None) -> SiteInfo:
    return SiteInfo(name=settings.SITE_NAME, domain=public_domain(request))


class AccountAdapter(DefaultAccountAdapter):
    def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
        super().send_mail(
            template_prefix, email, {"current_site": this_site(self.request), **context}
        )

    def format_email_subject(self, subject: str) -> str:
        return f"[{settings.SITE_NAME}] {subject}"

    def post_login(self, request: HttpRequest, user: Any, **kwargs: Any) -> HttpResponse:
        response = super().post_login(request, user, **kwargs)
        SignIn.objects.record(
            user=user,
            method=describe_sign_in(get_authentication_records(request, user)),
            ip_address=self.get_client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
        )
        return response


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    pass


class MFAAdapter(DefaultMFAAdapter):
    """Authenticator apps and passkey prompts name SITE_NAME, not the Sites framework's."""

    def get_totp_issuer(self) -> str:
        return mfa_settings.TOTP_ISSUER or settings.SITE_NAME

    def get_public_key_credential_rp_entity(self) -> dict[str, str]:
        return {**super().get_public_key_credential_rp_entity(), "name": settings.SITE_NAME}
