from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from console.site import public_base_url


def site(request: HttpRequest) -> dict[str, Any]:
    return {"SITE_NAME": settings.SITE_NAME, "SITE_URL": public_base_url(request)}
