from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from console.dashboard import header_account
from console.site import public_base_url


def site(request: HttpRequest) -> dict[str, Any]:
    return {
        "SITE_NAME": settings.SITE_NAME,
        "SITE_URL": public_base_url(request),
        "API_KEY_PREFIX": settings.API_KEY_PREFIX,
        # Read only by pages that draw the header, once, for a signed-in user.
        "header_account": SimpleLazyObject(lambda: header_account(request.user)),
    }
