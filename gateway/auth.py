"""API-key authentication for /v1, with a short per-process cache.

Keys are looked up by their stored prefix and compared by HMAC in constant time.
A cached key is trusted for at most KEY_CACHE_SECONDS, so a revocation made on any
worker reaches every other worker within that bound without a shared round trip;
the worker that revokes forgets the key at once.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from accounts.models import ApiKey, hash_secret, parse_secret
from gateway.errors import GatewayError
from gateway.state import on_reset
from gateway.sync import db_sync_to_async


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What /v1 needs to know about a key, loaded in one query and cached briefly.

    `rpm_limit` and `tpm_limit` are the limits the key is held to: its own, else the
    operator's DEFAULT_KEY_RPM / DEFAULT_KEY_TPM; None (unlimited) when neither is set
    or the account is in unlimited mode.
    """

    id: int
    user_id: int
    account_id: int
    name: str
    kind: str
    hashed: str
    allowed_models: tuple[str, ...]
    rpm_limit: int | None
    tpm_limit: int | None
    spend_cap_micro_usd: int | None
    max_cost_per_request_micro_usd: int | None
    expires_at: datetime | None
    revoked: bool
    unlimited: bool
    can_manage: bool
    key: ApiKey

    def allows_model(self, model_id: str) -> bool:
        return not self.allowed_models or model_id in self.allowed_models


_cache: dict[str, tuple[float, KeyInfo | None]] = {}


@on_reset
def forget_all_keys() -> None:
    _cache.clear()


def forget_key(prefix: str) -> None:
    _cache.pop(prefix, None)


def _in_force(own: int | None, default: int, unlimited: bool) -> int | None:
    """A key's own limit, else the operator's default (0: none); None means unlimited."""
    if unlimited:
        return None
    return own or default or None


def _load(prefix: str) -> KeyInfo | None:
    key = ApiKey.objects.select_related("user__account").filter(prefix=prefix).first()
    if key is None:
        return None
    account = key.user.account
    return KeyInfo(
        id=key.pk,
        user_id=key.user_id,
        account_id=account.pk,
        name=key.name,
        kind=key.kind,
        hashed=key.hashed,
        allowed_models=tuple(key.allowed_models or ()),
        rpm_limit=_in_force(key.rpm_limit, settings.DEFAULT_KEY_RPM, account.unlimited),
        tpm_limit=_in_force(key.tpm_limit, settings.DEFAULT_KEY_TPM, account.unlimited),
        spend_cap_micro_usd=key.spend_cap_micro_usd,
        max_cost_per_request_micro_usd=key.max_cost_per_request_micro_usd,
        expires_at=key.expires_at,
        revoked=key.revoked_at is not None or not key.user.is_active,
        unlimited=account.unlimited,
        can_manage=key.can_manage,
        key=key,
    )


_load_async = db_sync_to_async(_load)


async def key_info(prefix: str) -> KeyInfo | None:
    """The key with this lookup prefix, from the per-process cache while it is fresh.

    For callers that hold the key row rather than its secret (the web chat's key).
    """
    now = time.monotonic()
    cached = _cache.get(prefix)
    if cached is not None and now - cached[0] < settings.KEY_CACHE_SECONDS:
        return cached[1]
    info = await _load_async(prefix)
    _cache[prefix] = (now, info)
    return info


def _invalid(message: str = "Incorrect API key provided.") -> GatewayError:
    return GatewayError(401, message, code="invalid_api_key", type="invalid_request_error")


async def authenticate(authorization: str | None) -> KeyInfo:
    """The key named by an `Authorization: Bearer sk-sb-…` header, or a 401 error."""
    if not authorization or not authorization[:7].lower() == "bearer ":
        raise _invalid("You didn't provide an API key. Send it as 'Authorization: Bearer sk-sb-…'.")
    secret = authorization[7:].strip()
    prefix = parse_secret(secret)
    if prefix is None:
        raise _invalid()
    info = await key_info(prefix)
    if info is None or not hmac.compare_digest(info.hashed, hash_secret(secret)):
        raise _invalid()
    if info.revoked:
        raise _invalid("This API key has been revoked.")
    if info.expires_at is not None and info.expires_at <= timezone.now():
        raise _invalid("This API key has expired.")
    return info
