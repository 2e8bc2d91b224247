from __future__ import annotations

from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


class ConsoleConfig(AppConfig):
    name = "console"

    def ready(self) -> None:
        from console.signals import name_the_site

        post_migrate.connect(
            name_the_site, sender=apps.get_app_config("sites"), dispatch_uid="console-site-name"
        )
