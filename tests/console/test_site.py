from __future__ import annotations

from django.contrib.sites.models import Site
from django.core.management import call_command


def test_migrations_name_the_site_after_the_settings(db, settings):
    settings.SITE_URL = "https://gw.example.com"
    settings.SITE_NAME = "Acme Gateway"

    call_command("migrate", "sites", verbosity=0)

    site = Site.objects.get(pk=settings.SITE_ID)
    assert (site.domain, site.name) == ("gw.example.com", "Acme Gateway")
