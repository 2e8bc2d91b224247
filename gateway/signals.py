from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import ApiKey
from gateway.auth import forget_key
from gateway.catalog import invalidate_catalog
from gateway.models import Model, Provider, Route, RouterProfile, RouterRule


@receiver([post_save, post_delete], sender=RouterRule)
@receiver([post_save, post_delete], sender=RouterProfile)
@receiver([post_save, post_delete], sender=Model)
@receiver([post_save, post_delete], sender=Provider)
@receiver([post_save, post_delete], sender=Route)
def catalog_changed(sender: Any, **kwargs: Any) -> None:
    invalidate_catalog()


@receiver([post_save, post_delete], sender=ApiKey)
def key_changed(sender: Any, instance: ApiKey, **kwargs: Any) -> None:
    """The worker that revokes a key forgets it at once; others within KEY_CACHE_SECONDS."""
    forget_key(instance.prefix)
