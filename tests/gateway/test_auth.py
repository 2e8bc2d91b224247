"""API-key authentication: format, prefix lookup, HMAC compare, revocation, expiry."""

from __future__ import annotations

import asyncio
import hmac
import secrets
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.models import (
    DEFAULT_KEY_PREFIX,
    LOOKUP_LENGTH,
    ApiKey,
    User,
    hash_secret,
    parse_secret,
)
from gateway import auth
from gateway.auth import authenticate
from gateway.errors import GatewayError

pytestmark = pytest.mark.django_db(transaction=True)


async def refused(authorization: str | None) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await authenticate(authorization)
    assert caught.value.status == 401
    assert caught.value.code == "invalid_api_key"
    return caught.value


def test_a_key_is_prefixed_and_stored_only_as_lookup_prefix_and_hmac(customer: Any) -> None:
    secret, key = customer.secret, customer.api_key

    assert secret.startswith(DEFAULT_KEY_PREFIX) and len(secret) > 40
    assert key.prefix == secret[len(DEFAULT_KEY_PREFIX) : len(DEFAULT_KEY_PREFIX) + LOOKUP_LENGTH]
    assert key.hashed == hash_secret(secret) != secret
    assert key.last4 == secret[-4:] and key.masked == f"{DEFAULT_KEY_PREFIX}…{secret[-4:]}"
    stored = ApiKey.objects.filter(pk=key.pk).values().get()
    assert not any(secret in str(value) for value in stored.values())


def test_two_keys_never_share_a_prefix_or_secret(customer: Any) -> None:
    minted = [ApiKey.objects.mint(user=customer.user) for _ in range(20)]

    assert len({key.prefix for key, _ in minted}) == 20
    assert len({secret for _, secret in minted}) == 20


@pytest.mark.parametrize(
    ("secret", "prefix"),
    [
        ("sk-sb-0123456789ab" + "x" * 43, "0123456789ab"),
        ("bst_0123456789ab" + "x-_" * 14 + "x", "0123456789ab"),
        ("sk-sb-0123456789ab" + "x" * 42, None),
        ("sk-sb-0123456789ab" + "x" * 44, None),
        ("sk-sb-0123456789AB" + "x" * 43, None),
        ("0123456789ab" + "x" * 43, None),
        ("9sk-0123456789ab" + "x" * 43, None),
        ("sk sb 0123456789ab" + "x" * 43, None),
        ("sk-sb-0123456789ab" + "x" * 42 + "=", None),
        ("", None),
    ],
)
def test_parse_secret_finds_the_lookup_prefix_of_a_well_formed_key(
    secret: str, prefix: str | None
) -> None:
    assert parse_secret(secret) == prefix


async def test_it_authenticates_a_valid_key(customer: Any) -> None:
    info = await authenticate(f"Bearer {customer.secret}")

    assert info.id == customer.api_key.pk
    assert (info.user_id, info.account_id) == (customer.user.pk, customer.account.pk)
    assert not info.revoked and info.allows_model("demo")


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
async def test_the_scheme_is_case_insensitive_and_space_is_trimmed(
    customer: Any, scheme: str
) -> None:
    info = await authenticate(f"{scheme} {customer.secret}  ")

    assert info.id == customer.api_key.pk


async def test_it_compares_the_hmac_of_the_presented_key_in_constant_time(
    customer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def recording(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    await authenticate(f"Bearer {customer.secret}")

    assert compared == [(customer.api_key.hashed, hash_secret(customer.secret))]


async def test_a_key_with_a_known_prefix_and_a_wrong_tail_is_refused(customer: Any) -> None:
    tail = "A" if customer.secret[-1] != "A" else "B"

    error = await refused(f"Bearer {customer.secret[:-1]}{tail}")

    assert error.message == "Incorrect API key provided."


async def test_keys_stop_working_when_the_secret_key_changes(customer: Any, settings: Any) -> None:
    settings.SECRET_KEY = "another-secret-key-" + "x" * 50

    await refused(f"Bearer {customer.secret}")


async def test_a_key_revoked_in_this_process_is_refused_at_once(customer: Any) -> None:
    await authenticate(f"Bearer {customer.secret}")

    await sync_to_async(customer.api_key.revoke)()

    error = await refused(f"Bearer {customer.secret}")
    assert "revoked" in error.message


async def test_a_key_revoked_by_another_worker_is_refused_within_the_cache_time(
    customer: Any, settings: Any
) -> None:
    settings.KEY_CACHE_SECONDS = 0.2
    await authenticate(f"Bearer {customer.secret}")

    # A queryset update sends no signal: this process learns of it only from the database.
    await ApiKey.objects.filter(pk=customer.api_key.pk).aupdate(revoked_at=timezone.now())

    for _ in range(50):
        try:
            await authenticate(f"Bearer {customer.secret}")
        except GatewayError as error:
            assert "revoked" in error.message
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("a revoked key was still accepted after 1 s")


@pytest.mark.parametrize(
    ("offset", "works"), [(timedelta(seconds=-1), False), (timedelta(hours=1), True)]
)
async def test_a_key_works_until_it_expires(
    make_customer: Any, offset: timedelta, works: bool
) -> None:
    customer = await sync_to_async(make_customer)(expires_at=timezone.now() + offset)

    if works:
        assert (await authenticate(f"Bearer {customer.secret}")).id == customer.api_key.pk
    else:
        assert "expired" in (await refused(f"Bearer {customer.secret}")).message


async def test_the_key_of_an_inactive_user_is_refused(customer: Any) -> None:
    await User.objects.filter(pk=customer.user.pk).aupdate(is_active=False)

    await refused(f"Bearer {customer.secret}")


def random_key() -> str:
    return f"{DEFAULT_KEY_PREFIX}{secrets.token_hex(LOOKUP_LENGTH // 2)}{secrets.token_urlsafe(32)}"


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prefixes looked up in the database, in order."""
    looked_up: list[str] = []
    real = auth._load_async

    async def recording(prefix: str) -> Any:
        looked_up.append(prefix)
        return await real(prefix)

    monkeypatch.setattr(auth, "_load_async", recording)
    return looked_up


async def throttled(authorization: str, client: str) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await authenticate(authorization, client=client)
    assert caught.value.status == 429
    assert caught.value.code == "rate_limit_exceeded"
    assert 1 <= int(caught.value.headers["Retry-After"]) <= 60
    return caught.value


async def fail_from(client: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(GatewayError) as caught:
            await authenticate(f"Bearer {random_key()}", client=client)
        assert caught.value.status == 401


async def test_failed_keys_from_one_address_are_throttled_before_any_lookup(
    settings: Any, lookups: list[str]
) -> None:
    settings.AUTH_FAILURES_PER_MINUTE = 3
    await fail_from("192.0.2.10", 2)
    with pytest.raises(GatewayError) as malformed:
        await authenticate("Bearer sk-sb-short", client="192.0.2.10")
    assert malformed.value.status == 401

    error = await throttled(f"Bearer {random_key()}", "192.0.2.10")
    await throttled("Bearer sk-sb-short", "192.0.2.10")

    assert "failed API key" in error.message
    assert len(lookups) == 2


async def test_a_missing_key_is_not_counted_as_a_failure(settings: Any) -> None:
    settings.AUTH_FAILURES_PER_MINUTE = 2
    for _ in range(5):
        with pytest.raises(GatewayError):
            await authenticate(None, client="192.0.2.11")

    await fail_from("192.0.2.11", 2)


async def test_failures_from_one_address_do_not_throttle_another(settings: Any) -> None:
    settings.AUTH_FAILURES_PER_MINUTE = 3
    await fail_from("192.0.2.12", 3)
    await throttled(f"Bearer {random_key()}", "192.0.2.12")

    await fail_from("192.0.2.13", 3)


@pytest.mark.parametrize("cache_seconds", [60, 0])
async def test_a_valid_key_keeps_working_from_a_throttled_address(
    customer: Any, settings: Any, cache_seconds: int
) -> None:
    """Fresh in the cache, or stale (looked up again): a key this worker knows is checked."""
    settings.AUTH_FAILURES_PER_MINUTE = 3
    settings.KEY_CACHE_SECONDS = cache_seconds
    await authenticate(f"Bearer {customer.secret}", client="192.0.2.14")
    await fail_from("192.0.2.14", 3)
    await throttled(f"Bearer {random_key()}", "192.0.2.14")

    info = await authenticate(f"Bearer {customer.secret}", client="192.0.2.14")

    assert info.id == customer.api_key.pk


async def test_a_key_this_worker_has_not_seen_waits_out_the_throttle(
    customer: Any, settings: Any, lookups: list[str]
) -> None:
    """The price of looking nothing up for a throttled address (README, Keys)."""
    settings.AUTH_FAILURES_PER_MINUTE = 3
    await fail_from("192.0.2.15", 3)

    await throttled(f"Bearer {customer.secret}", "192.0.2.15")

    assert customer.api_key.prefix not in lookups
    assert (await authenticate(f"Bearer {customer.secret}", client="192.0.2.16")).id


async def test_the_throttle_can_be_turned_off(settings: Any) -> None:
    settings.AUTH_FAILURES_PER_MINUTE = 0

    await fail_from("192.0.2.17", 30)


async def test_unknown_prefixes_are_remembered_in_a_bounded_cache(
    monkeypatch: pytest.MonkeyPatch, lookups: list[str]
) -> None:
    monkeypatch.setattr(auth, "NEGATIVE_CACHE_SIZE", 5)
    keys = [random_key() for _ in range(20)]
    for key in keys:
        await refused(f"Bearer {key}")

    await refused(f"Bearer {keys[-1]}")
    await refused(f"Bearer {keys[0]}")

    assert len(auth._cache) + len(auth._misses) <= 5
    assert lookups == [parse_secret(key) for key in [*keys, keys[0]]]


def test_the_api_throttles_failed_keys_per_client_address(client: Any, settings: Any) -> None:
    settings.AUTH_FAILURES_PER_MINUTE = 2

    def models(address: str) -> Any:
        return client.get(
            "/v1/models", HTTP_AUTHORIZATION=f"Bearer {random_key()}", REMOTE_ADDR=address
        )

    statuses = [models("198.51.100.20").status_code for _ in range(3)]
    refused = models("198.51.100.20")
    account_api = client.get(
        "/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {random_key()}", REMOTE_ADDR="198.51.100.20"
    )

    assert statuses == [401, 401, 429]
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused["Retry-After"]) >= 1
    assert account_api.status_code == 429
    assert models("198.51.100.21").status_code == 401
