"""The two rate-limit backends agree: `limits` in memory, one Lua script in Redis.

With Redis, both of a key's windows are checked in one round trip by a script that
does the `limits` library's sliding-window-counter arithmetic; without Redis the
library itself does the work. The same sequence of requests must get the same
answers and the same headers from both.
"""

from __future__ import annotations

import pytest
import redis

from gateway import state
from gateway.errors import GatewayError
from gateway.ratelimit import address_wait, check_limits

LOCAL_REDIS = "redis://127.0.0.1:6379/14"
# (requests per minute, tokens per minute, tokens of this request)
SEQUENCE = [(5, 100, 30), (5, 100, 30), (5, 100, 30), (5, 100, 30), (5, 100, 5), (5, 100, 1)] + [
    (5, 1_000, 1)
] * 4


@pytest.fixture
def redis_url(settings) -> str:
    url = settings.REDIS_URL or LOCAL_REDIS
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"these tests need Redis at {url}: {exc}")
    client.flushdb()
    client.close()
    return url


async def outcomes(key_id: int) -> list[tuple[str, str, str]]:
    """(status, remaining requests, remaining tokens) for each request of SEQUENCE."""
    answers = []
    for rpm, tpm, tokens in SEQUENCE:
        try:
            headers = await check_limits(key_id=key_id, rpm=rpm, tpm=tpm, tokens=tokens)
            status = "ok"
        except GatewayError as exc:
            headers, status = exc.headers, exc.code or ""
        answers.append(
            (
                status,
                headers.get("x-ratelimit-remaining-requests", "-"),
                headers.get("x-ratelimit-remaining-tokens", "-"),
            )
        )
    return answers


async def test_redis_and_memory_limits_answer_alike(settings, redis_url):
    settings.REDIS_URL = ""
    settings.RATELIMIT_STORAGE_URI = "async+memory://"
    state.reset_process_state()
    in_memory = await outcomes(key_id=7)

    settings.REDIS_URL = redis_url
    state.reset_process_state()
    in_redis = await outcomes(key_id=7)

    assert in_redis == in_memory
    assert [status for status, _, _ in in_memory] == [
        "ok",
        "ok",
        "ok",
        "rate_limit_exceeded",
        "ok",
        "rate_limit_exceeded",
        "rate_limit_exceeded",
        "rate_limit_exceeded",
        "rate_limit_exceeded",
        "rate_limit_exceeded",
    ]


async def test_a_refused_request_says_when_to_retry(settings, redis_url):
    settings.REDIS_URL = redis_url
    state.reset_process_state()
    await check_limits(key_id=8, rpm=1, tpm=None, tokens=1)

    with pytest.raises(GatewayError) as refused:
        await check_limits(key_id=8, rpm=1, tpm=None, tokens=1)

    assert refused.value.status == 429
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 120
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "0"


async def address_outcomes() -> list[bool]:
    """Whether each look (count=False) or count (count=True) found room, 2 a minute."""
    answers = []
    for count in [False, True, False, True, False, True]:
        wait = await address_wait(scope="test", address="192.0.2.1", per_minute=2, count=count)
        assert 0 <= wait <= 60
        answers.append(wait == 0)
    return answers


async def test_address_limits_look_and_count_alike_in_redis_and_memory(settings, redis_url):
    settings.REDIS_URL = ""
    state.reset_process_state()
    in_memory = await address_outcomes()

    settings.REDIS_URL = redis_url
    state.reset_process_state()
    in_redis = await address_outcomes()

    assert in_redis == in_memory == [True, True, True, True, False, False]
