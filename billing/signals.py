from __future__ import annotations

from typing import Any

from allauth.account.signals import email_confirmed
from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from billing.ledger import account_for, pay_pending_signup_grant

# Set on a User before its first save when its sign-up grant must wait for a verified
# e-mail address (a sign-up through the API gets a key at once; see README).
GRANT_AFTER_VERIFICATION = "signup_grant_after_verification"


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def open_account_with_grant(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """Every user gets an account and the sign-up grant exactly once, however created."""
    if created and not kwargs.get("raw"):
        account_for(instance, grant_now=not getattr(instance, GRANT_AFTER_VERIFICATION, False))


@receiver(email_confirmed)
def pay_grant_on_verification(sender: Any, email_address: Any, **kwargs: Any) -> None:
    """An account that waited for its e-mail address gets its grant once it is verified."""
    pay_pending_signup_grant(email_address.user)
