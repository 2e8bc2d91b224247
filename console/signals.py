from __future__ import annotations

from typing import Any

from django.conf import settings

from console.site import public_domain


def name_the_site(sender: Any, **kwargs: Any) -> None:
    """The Sites row allauth reads (emails, passkeys) says SITE_NAME at the public host."""
    from django.contrib.sites.models import Site

    domain = public_domain()
    Site.objects.update_or_create(
        pk=settings.SITE_ID, defaults={"domain": domain, "name": settings.SITE_NAME}
    )
