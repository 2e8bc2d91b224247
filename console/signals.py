from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings


def name_the_site(sender: Any, **kwargs: Any) -> None:
    """The Sites row allauth reads (e-mails, passkeys) says SITE_NAME at SITE_URL's host."""
    from django.contrib.sites.models import Site

    domain = urlsplit(settings.SITE_URL).netloc or "localhost"
    Site.objects.update_or_create(
        pk=settings.SITE_ID, defaults={"domain": domain, "name": settings.SITE_NAME}
    )
