from __future__ import annotations

from django.apps import AppConfig, apps
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate
from django.urls import register_converter


class ConsoleConfig(AppConfig):
    name = "console"

    def ready(self) -> None:
        from console import checks  # noqa: F401 - registers the branding checks
        from console.converters import RowId
        from console.signals import name_the_site

        # Before any urls.py is imported: they write `<id:…>` for primary keys.
        register_converter(RowId, "id")

        post_migrate.connect(
            name_the_site, sender=apps.get_app_config("sites"), dispatch_uid="console-site-name"
        )


class SwitchboardAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the console's sign-in in front (console/admin.py)."""

    default = False  # ConsoleConfig is this module's app; this one is named in settings
    default_site = "console.admin.SwitchboardAdminSite"
