from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

DEFAULT_KEY_PREFIX = "sk-sb-"
LOOKUP_LENGTH = 12
# A key is `<prefix><lookup: 12 hex digits><secret: secrets.token_urlsafe(32)>`. It is
# read from its end, so a key keeps working after the operator changes API_KEY_PREFIX.
SECRET_LENGTH = 43
KEY_PREFIX_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,23}")
_LOOKUP = re.compile(rf"[0-9a-f]{{{LOOKUP_LENGTH}}}")
_SECRET = re.compile(rf"[A-Za-z0-9_-]{{{SECRET_LENGTH}}}")


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A customer or operator; the email address is the login."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name or self.email.split("@")[0]

    def close(self) -> None:
        """Delete the account for the customer while keeping the books.

        Keys are revoked, every way to sign in is removed and the email address is
        freed; the row stays because the ledger (append-only) points at it.
        """
        from allauth.account.models import EmailAddress
        from allauth.mfa.models import Authenticator
        from allauth.socialaccount.models import SocialAccount

        for key in self.api_keys.filter(revoked_at__isnull=True):
            key.revoke()
        EmailAddress.objects.filter(user=self).delete()
        SocialAccount.objects.filter(user=self).delete()
        Authenticator.objects.filter(user=self).delete()
        self.email = f"deleted-{self.pk}@deleted.invalid"
        self.name = ""
        self.is_active = False
        self.set_unusable_password()
        self.save(update_fields=["email", "name", "is_active", "password"])


def hash_secret(secret: str) -> str:
    """HMAC of the whole key with SECRET_KEY: a database dump alone reveals no key."""
    return hmac.new(settings.SECRET_KEY.encode(), secret.encode(), hashlib.sha256).hexdigest()


class SpendPeriod(models.TextChoices):
    DAY = "day", "per day"
    WEEK = "week", "per week"
    MONTH = "month", "per month"
    TOTAL = "total", "in total"


def period_starts(now: Any = None) -> dict[str, Any]:
    """Start of the current day, week and month (UTC calendar periods)."""
    now = now or timezone.now()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        SpendPeriod.DAY: day,
        SpendPeriod.WEEK: day - timedelta(days=day.weekday()),
        SpendPeriod.MONTH: day.replace(day=1),
    }


# Spend-cap periods from shortest to longest: the same cap over a longer period allows less.
PERIOD_ORDER: list[str] = [SpendPeriod.DAY, SpendPeriod.WEEK, SpendPeriod.MONTH, SpendPeriod.TOTAL]

# Limits where None means "no limit" and a smaller number is narrower.
CEILINGS = ("rpm_limit", "tpm_limit", "spend_cap_micro_usd", "max_cost_per_request_micro_usd")


class ExceedsCreator(Exception):
    """A key asked for more than the key creating it has: `field` says where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )

    def for_user(self, user: User) -> ApiKeyQuerySet:
        return self.filter(user=user)

    def with_period_spend(self, now: Any = None) -> ApiKeyQuerySet:
        """Annotate `period_spend_micro_usd`: usage cost since each key's period began."""
        in_period = models.Q(spend_cap_period=SpendPeriod.TOTAL)
        for period, start in period_starts(now).items():
            in_period |= models.Q(spend_cap_period=period, usage__created_at__gte=start)
        return self.annotate(
            period_spend_micro_usd=Coalesce(
                models.Sum("usage__cost_micro_usd", filter=in_period), 0
            )
        )

    def listed(self) -> ApiKeyQuerySet:
        """The keys a customer sees and manages: all but the hidden web-chat key."""
        return self.filter(kind__in=[ApiKey.Kind.API, ApiKey.Kind.LOGIN])

    def mint_for_login(self, *, user: User, keep: int) -> tuple[ApiKey, str]:
        """A new key for a password sign-in through the API (secrets are stored hashed, so
        an existing one cannot be handed out again); only the newest `keep` such keys
        stay active, so repeated sign-ins cannot pile up keys."""
        with transaction.atomic():
            User.objects.select_for_update().filter(pk=user.pk).first()
            key, secret = self.mint(
                user=user, name="API sign-in", kind=ApiKey.Kind.LOGIN, can_manage=True
            )
            older = self.for_user(user).filter(kind=ApiKey.Kind.LOGIN).active().exclude(pk=key.pk)
            for stale in older.order_by("-created_at", "-pk")[max(keep - 1, 0) :]:
                stale.revoke()
        return key, secret

    def mint(self, *, user: User, name: str = "default", **fields: Any) -> tuple[ApiKey, str]:
        """Create a key; returns the row and the secret, which is never stored."""
        lookup = secrets.token_hex(LOOKUP_LENGTH // 2)
        brand = settings.API_KEY_PREFIX
        secret = f"{brand}{lookup}{secrets.token_urlsafe(32)}"
        key = self.create(
            user=user,
            name=name,
            prefix=lookup,
            brand_prefix=brand,
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
        LOGIN = "login", "API sign-in"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.API)
    prefix = models.CharField(max_length=LOOKUP_LENGTH, unique=True)
    brand_prefix = models.CharField(
        max_length=24,
        default=DEFAULT_KEY_PREFIX,
        editable=False,
        help_text="API_KEY_PREFIX when the key was minted: how it starts, shown in its mask.",
    )
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
    # What the owner was last e-mailed about (billing.alerts): once per crossing.
    cap_alerted_for = models.DateTimeField(
        null=True, blank=True, help_text="Start of the period whose spend-cap alert was sent."
    )
    expiry_alerted_for = models.DateTimeField(
        null=True, blank=True, help_text="The expiry the expiry alert was sent for."
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
        return f"{self.brand_prefix}…{self.last4}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: Any = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.hashed, hash_secret(secret))

    def bound_minted(self, fields: dict[str, Any], *, given: set[str]) -> dict[str, Any]:
        """The fields (`mint`'s keywords) of a key this key creates, never more than its own.

        A field not in `given` is inherited from this key; one that asks for more (a
        model outside the allowlist, a higher or absent limit, cap or expiry, a shorter
        cap period) raises ExceedsCreator. A management key may create management
        keys: each is bounded by its creator, so a chain of them only narrows.
        """
        bounded = dict(fields)
        if self.allowed_models:
            if "allowed_models" not in given:
                bounded["allowed_models"] = list(self.allowed_models)
            else:
                outside = [m for m in fields["allowed_models"] if m not in self.allowed_models]
                if outside or not fields["allowed_models"]:
                    raise ExceedsCreator(
                        "allowed_models",
                        f"the creating key may call only {', '.join(self.allowed_models)}, "
                        "so the new key must list some of those and no others"
                        + (f" (not {', '.join(outside)})." if outside else "."),
                    )
        for field in CEILINGS:
            own = getattr(self, field)
            if own is None:
                continue
            if field not in given:
                bounded[field] = own
            elif fields[field] is None or fields[field] > own:
                shown = f"${Decimal(own) / 1_000_000}" if field.endswith("micro_usd") else own
                raise ExceedsCreator(field, f"at most {shown}, the creating key's own limit.")
        if self.spend_cap_micro_usd is not None:
            if "spend_cap_period" not in given:
                bounded["spend_cap_period"] = self.spend_cap_period
            elif PERIOD_ORDER.index(fields["spend_cap_period"]) < PERIOD_ORDER.index(
                self.spend_cap_period
            ):
                raise ExceedsCreator(
                    "spend_cap_period",
                    f"the creating key's cap is {self.get_spend_cap_period_display()}; "
                    "the new key's period may not be shorter.",
                )
        if self.expires_at is not None:
            wanted = fields.get("expires_at")
            if "expires_at" not in given:
                bounded["expires_at"] = self.expires_at
            elif wanted is None or wanted - timedelta(days=1) >= self.expires_at:
                raise ExceedsCreator(
                    "expires_at",
                    f"on or before {self.expires_at.date().isoformat()}, "
                    "when the creating key expires.",
                )
            else:
                # A date the creator still works on ends when the creator does.
                bounded["expires_at"] = min(wanted, self.expires_at)
        return bounded

    def allows_model(self, model_id: str) -> bool:
        return not self.allowed_models or model_id in self.allowed_models

    EDITABLE = (
        "name",
        "expires_at",
        "allowed_models",
        "rpm_limit",
        "tpm_limit",
        "spend_cap_micro_usd",
        "spend_cap_period",
        "can_manage",
    )

    def change(self, **fields: Any) -> None:
        """Save new settings (`mint`'s keywords); the post_save signal drops the key from
        this worker's key cache at once, as a revocation does (gateway.signals)."""
        unknown = set(fields) - set(self.EDITABLE)
        if unknown:
            raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
        for name, value in fields.items():
            setattr(self, name, value)
        self.save(update_fields=list(fields))

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    def period_start(self, now: Any = None) -> Any:
        """Start of the current spend-cap period (UTC calendar periods)."""
        return period_starts(now).get(self.spend_cap_period, self.created_at)


def parse_secret(secret: str) -> str | None:
    """The lookup prefix of a well-formed key, or None: whatever API_KEY_PREFIX was when
    it was minted (the HMAC of the whole key, its prefix included, still has to match)."""
    tail = LOOKUP_LENGTH + SECRET_LENGTH
    brand, lookup = secret[:-tail], secret[-tail:-SECRET_LENGTH]
    if not (
        KEY_PREFIX_PATTERN.fullmatch(brand)
        and _LOOKUP.fullmatch(lookup)
        and _SECRET.fullmatch(secret[-SECRET_LENGTH:])
    ):
        return None
    return lookup


# Order matters: Edge and Opera also say "Chrome", Chrome also says "Safari".
BROWSERS = [
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
]
SYSTEMS = [
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
]


SIGN_INS_KEPT = 50


class SignInQuerySet(models.QuerySet["SignIn"]):
    def for_user(self, user: User) -> SignInQuerySet:
        return self.filter(user=user)

    def record(self, *, user: User, method: str, ip_address: str | None, user_agent: str) -> SignIn:
        """Add a sign-in to the user's history, keeping only the newest SIGN_INS_KEPT."""
        sign_in = self.create(
            user=user, method=method[:60], ip_address=ip_address, user_agent=user_agent[:300]
        )
        stale = list(self.for_user(user).values_list("pk", flat=True)[SIGN_INS_KEPT:])
        if stale:
            self.filter(pk__in=stale).delete()
        return sign_in


class SignIn(models.Model):
    """One successful sign-in, for the customer's own history on the account page."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="sign_ins")
    method = models.CharField(max_length=60)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = SignInQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.user} via {self.method} at {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def device(self) -> str:
        """A rough "Browser on system" reading of the user agent, for people, not logic."""
        agent = self.user_agent
        browser = next((name for token, name in BROWSERS if token in agent), "")
        system = next((name for token, name in SYSTEMS if token in agent), "")
        if not browser and not system:
            return "Unknown"
        return " on ".join(part for part in (browser, system) if part)
