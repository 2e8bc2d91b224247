from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone

KEY_PREFIX = "sk-sb-"
LOOKUP_LENGTH = 12


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("An e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A customer or operator; the e-mail address is the login."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name or self.email.split("@")[0]


def hash_secret(secret: str) -> str:
    """HMAC of the whole key with SECRET_KEY: a database dump alone reveals no key."""
    return hmac.new(settings.SECRET_KEY.encode(), secret.encode(), hashlib.sha256).hexdigest()


class SpendPeriod(models.TextChoices):
    DAY = "day", "per day"
    WEEK = "week", "per week"
    MONTH = "month", "per month"
    TOTAL = "total", "in total"


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )

    def for_user(self, user: User) -> ApiKeyQuerySet:
        return self.filter(user=user)

    def mint(self, *, user: User, name: str = "default", **fields: Any) -> tuple[ApiKey, str]:
        """Create a key; returns the row and the secret, which is never stored."""
        lookup = secrets.token_hex(LOOKUP_LENGTH // 2)
        secret = f"{KEY_PREFIX}{lookup}{secrets.token_urlsafe(32)}"
        key = self.create(
            user=user,
            name=name,
            prefix=lookup,
            hashed=hash_secret(secret),
            last4=secret[-4:],
            **fields,
        )
        return key, secret


class ApiKey(models.Model):
    """A bearer key for /v1: shown once, stored as a lookup prefix and an HMAC."""

    class Kind(models.TextChoices):
        API = "api", "API"
        WEB = "web", "Web chat"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.API)
    prefix = models.CharField(max_length=LOOKUP_LENGTH, unique=True)
    hashed = models.CharField(max_length=64)
    last4 = models.CharField(max_length=4)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Model ids this key may call; empty means all."
    )
    rpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute")
    tpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute")
    spend_cap_micro_usd = models.BigIntegerField(null=True, blank=True)
    spend_cap_period = models.CharField(
        max_length=8, choices=SpendPeriod.choices, default=SpendPeriod.MONTH
    )
    max_cost_per_request_micro_usd = models.BigIntegerField(null=True, blank=True)
    can_manage = models.BooleanField(
        default=False, help_text="May manage keys through the account API."
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(spend_cap_micro_usd__isnull=True)
                | models.Q(spend_cap_micro_usd__gte=0),
                name="apikey_spend_cap_not_negative",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{KEY_PREFIX}…{self.last4}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: Any = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.hashed, hash_secret(secret))

    def allows_model(self, model_id: str) -> bool:
        return not self.allowed_models or model_id in self.allowed_models

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    def period_start(self, now: Any = None) -> Any:
        """Start of the current spend-cap period (UTC calendar periods)."""
        now = now or timezone.now()
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.spend_cap_period == SpendPeriod.DAY:
            return day
        if self.spend_cap_period == SpendPeriod.WEEK:
            return day - timedelta(days=day.weekday())
        if self.spend_cap_period == SpendPeriod.MONTH:
            return day.replace(day=1)
        return self.created_at


def parse_secret(secret: str) -> str | None:
    """The lookup prefix of a well-formed key, or None."""
    if not secret.startswith(KEY_PREFIX) or len(secret) < len(KEY_PREFIX) + LOOKUP_LENGTH + 8:
        return None
    return secret[len(KEY_PREFIX) : len(KEY_PREFIX) + LOOKUP_LENGTH]
