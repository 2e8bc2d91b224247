from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_production_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Refuse an insecure production configuration (run by `check --deploy`)."""
    return production_problems()


@register(Tags.security)
def check_debug_off_is_production(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """With DEBUG off every command (migrate, runserver, make prod) refuses bad settings."""
    if settings.DEBUG or settings.TESTING:
        return []
    return production_problems()


def production_problems() -> list[Any]:
    errors: list[Any] = []
    if "insecure" in settings.SECRET_KEY or len(settings.SECRET_KEY) < 50:
        errors.append(Error("SECRET_KEY must be set to a long random value", id="console.E001"))
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        errors.append(Error("Production needs DATABASE_URL=postgres://…", id="console.E002"))
    if not settings.REDIS_URL:
        errors.append(
            Error("Production needs REDIS_URL (rate limits, caches, channels)", id="console.E003")
        )
    if "*" in settings.ALLOWED_HOSTS:
        errors.append(Warning("ALLOWED_HOSTS contains '*'", id="console.W001"))
    if not settings.METRICS_TOKEN:
        errors.append(Warning("METRICS_TOKEN is empty: /metrics is disabled", id="console.W002"))
    return errors
