from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from billing.ledger import account_for


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def open_account_with_grant(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """Every user gets an account and the sign-up grant exactly once, however created."""
    if created and not kwargs.get("raw"):
        account_for(instance)
