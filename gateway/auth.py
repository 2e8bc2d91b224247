"""API-key authentication for /v1, with a short per-process cache.

Keys are looked up by their stored prefix and compared by HMAC in constant time.
A cached key is trusted for at most KEY_CACHE_SECONDS, so a revocation made on any
worker reaches every other worker within that bound without a shared round trip;
the worker that revokes forgets the key at once.

Wrong keys cost a lookup each, so they are counted per client address: past
AUTH_FAILURES_PER_MINUTE an address is answered 429 without a lookup, except for the
keys this worker has already found in the database, which are still checked (looked
up again once stale), so a valid key keeps working beside a broken client. Unknown
prefixes are remembered for KEY_CACHE_SECONDS too, at most NEGATIVE_CACHE_SIZE of them.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from accounts.models import ApiKey, hash_secret, parse_secret
from gateway.errors import GatewayError
from gateway.ratelimit import address_throttled, address_wait
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
    # The account keeps each call's messages and answer (billing.content); off by default.
    store_content: bool = False

    def allows_model(self, model_id: str) -> bool:
        return not self.allowed_models or model_id in self.allowed_models


NEGATIVE_CACHE_SIZE = 4096

# Keys found in the database, fresh or stale: as many as there are keys in use. Unknown
# prefixes are whatever a client sends, so they are few and the oldest go first.
_cache: dict[str, tuple[float, KeyInfo]] = {}
_misses: OrderedDict[str, float] = OrderedDict()


@on_reset
def forget_all_keys() -> None:
    _cache.clear()
    _misses.clear()


def forget_key(prefix: str) -> None:
    _cache.pop(prefix, None)
    _misses.pop(prefix, None)


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
        store_content=account.store_content,
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
    missed = _misses.get(prefix)
    if missed is not None and now - missed < settings.KEY_CACHE_SECONDS:
        _misses.move_to_end(prefix)
        return None
    info = await _load_async(prefix)
    if info is None:
        _cache.pop(prefix, None)
        _misses[prefix] = now
        _misses.move_to_end(prefix)
        while len(_misses) > NEGATIVE_CACHE_SIZE:
            _misses.popitem(last=False)
    else:
        _misses.pop(prefix, None)
        _cache[prefix] = (now, info)
    return info


def _invalid(message: str = "Incorrect API key provided.") -> GatewayError:
    return GatewayError(401, message, code="invalid_api_key", type="invalid_request_error")


async def _refuse_if_throttled(client: str) -> None:
    per_minute = settings.AUTH_FAILURES_PER_MINUTE
    if not per_minute:
        return
    wait = await address_wait(scope="auth", address=client, per_minute=per_minute, count=False)
    if wait:
        raise address_throttled(
            f"Too many failed API key checks from your address ({per_minute} a minute).", wait
        )


async def _count_failure(client: str | None) -> None:
    per_minute = settings.AUTH_FAILURES_PER_MINUTE
    if client is not None and per_minute:
        await address_wait(scope="auth", address=client, per_minute=per_minute, count=True)


async def authenticate(authorization: str | None, *, client: str | None = None) -> KeyInfo:
    """The key named by an `Authorization: Bearer <API_KEY_PREFIX>…` header, or a 401 error.

    `client` is the caller's address (`ratelimit.client_address`): a wrong key counts
    against it, and past AUTH_FAILURES_PER_MINUTE only keys this worker already knows
    are checked, anything else answered 429. Without it nothing is counted.
    """
    if not authorization or not authorization[:7].lower() == "bearer ":
        raise _invalid(
            "You didn't provide an API key. "
            f"Send it as 'Authorization: Bearer {settings.API_KEY_PREFIX}…'."
        )
    secret = authorization[7:].strip()
    prefix = parse_secret(secret)
    if client is not None and (prefix is None or prefix not in _cache):
        await _refuse_if_throttled(client)
    if prefix is None:
        await _count_failure(client)
        raise _invalid()
    info = await key_info(prefix)
    if info is None or not hmac.compare_digest(info.hashed, hash_secret(secret)):
        await _count_failure(client)
        raise _invalid()
    if info.revoked:
        raise _invalid("This API key has been revoked.")
    if info.expires_at is not None and info.expires_at <= timezone.now():
        raise _invalid("This API key has expired.")
    return info
