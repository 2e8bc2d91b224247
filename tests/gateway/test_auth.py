"""API-key authentication: format, prefix lookup, HMAC compare, revocation, expiry."""

from __future__ import annotations

import asyncio
import hmac
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.models import KEY_PREFIX, LOOKUP_LENGTH, ApiKey, User, hash_secret, parse_secret
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

    assert secret.startswith(KEY_PREFIX) and len(secret) > 40
    assert key.prefix == secret[len(KEY_PREFIX) : len(KEY_PREFIX) + LOOKUP_LENGTH]
    assert key.hashed == hash_secret(secret) != secret
    assert key.last4 == secret[-4:] and key.masked == f"{KEY_PREFIX}…{secret[-4:]}"
    stored = ApiKey.objects.filter(pk=key.pk).values().get()
    assert not any(secret in str(value) for value in stored.values())


def test_two_keys_never_share_a_prefix_or_secret(customer: Any) -> None:
    minted = [ApiKey.objects.mint(user=customer.user) for _ in range(20)]

    assert len({key.prefix for key, _ in minted}) == 20
    assert len({secret for _, secret in minted}) == 20


@pytest.mark.parametrize(
    ("secret", "prefix"),
    [
        ("sk-sb-0123456789ab" + "x" * 8, "0123456789ab"),
        ("sk-sb-0123456789ab" + "x" * 7, None),
        ("sk-0123456789ab" + "x" * 20, None),
        ("SK-SB-0123456789ab" + "x" * 20, None),
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
