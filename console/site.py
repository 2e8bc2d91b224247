"""The site's public base URL: one answer for every page, code sample and email."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest

DEFAULT_SITE_URL = "http://localhost:8000"
"""Where `make run` serves, for the rare text written with no request to ask (a
management command's email)."""


def public_base_url(request: HttpRequest | None = None) -> str:
    """SITE_URL when the operator set it, else the scheme and host the request came to.

    Without SITE_URL the request's own host is the truth: a console served on another
    port or name (`make run PORT=8010`, a tunnel) shows snippets that work from there.
    `request.get_host()` is checked against ALLOWED_HOSTS, so a forged Host header is
    refused before it reaches a page.
    """
    if settings.SITE_URL:
        return settings.SITE_URL
    if request is None:
        return DEFAULT_SITE_URL
    return f"{request.scheme}://{request.get_host()}"


def public_domain(request: HttpRequest | None = None) -> str:
    """The host (and port) part of `public_base_url`, what emails call the site's domain."""
    return urlsplit(public_base_url(request)).netloc
