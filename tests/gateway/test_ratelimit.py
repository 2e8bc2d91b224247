"""The two rate-limit backends agree: `limits` in memory, one Lua script in Redis.

With Redis, both of a key's windows are checked in one round trip by a script that
does the `limits` library's sliding-window-counter arithmetic; without Redis the
library itself does the work. The same sequence of requests (counted, read, given
back) must get the same answers and the same headers from both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis

from gateway import state
from gateway.errors import GatewayError
from gateway.ratelimit import UNLIMITED, address_wait, check_limits, current_limits, give_back
from tests.xdist_workers import local_redis_url

HEADERS = [
    f"x-ratelimit-{what}-{kind}"
    for kind in ("requests", "tokens")
    for what in ("limit", "remaining", "reset")
]
# OpenAI's reset format, which clients parse as a Go-style duration: 20ms, 1.5s, 6m0s.
DURATION = re.compile(r"^(\d+ms|\d+(\.\d+)?s|\d+m\d+s)$")

# (operation, requests per minute, tokens per minute, tokens of this request)
SEQUENCE: list[tuple[str, int | None, int | None, int]] = [
    ("take", 5, 100, 30),
    ("take", 5, 100, 30),
    ("take", 5, 100, 30),
    ("take", 5, 100, 30),
    ("peek", 5, 100, 0),
    ("take", 5, 100, 5),
    ("take", 5, 100, 1),
    ("give", 5, 100, 30),
    ("peek", 5, 100, 0),
    ("take", 5, 100, 30),
    ("take", 5, 1_000, 1),
    ("take", 5, 1_000, 1),
    ("take", 5, None, 1),
    ("peek", None, 100, 0),
    ("take", None, None, 1),
    ("take", 5, 100, 101),
]


@pytest.fixture
def redis_url(settings) -> str:
    url = settings.REDIS_URL or local_redis_url()
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"these tests need Redis at {url}: {exc}")
    client.flushdb()
    client.close()
    return url


@pytest.fixture(params=["memory", "redis"])
def backend(request, settings, redis_url) -> Iterator[str]:
    """Each test below runs once on the in-memory limiter and once on the Lua script."""
    settings.REDIS_URL = redis_url if request.param == "redis" else ""
    state.reset_process_state()
    yield request.param
    state.reset_process_state()


def comparable(headers: dict[str, str]) -> tuple[str, ...]:
    """The six headers with each reset checked for its format (the two backends' windows
    start at different instants, so the exact reset differs by design)."""
    assert set(HEADERS) <= set(headers), headers
    for name in HEADERS:
        if "-reset-" in name:
            assert DURATION.match(headers[name]), headers[name]
    return tuple("reset" if "-reset-" in name else headers[name] for name in HEADERS)


async def outcomes(key_id: int) -> list[tuple[str, tuple[str, ...]]]:
    """(status, the six headers) after each operation of SEQUENCE."""
    answers = []
    for operation, rpm, tpm, tokens in SEQUENCE:
        status = "ok"
        if operation == "take":
            try:
                headers = await check_limits(key_id=key_id, rpm=rpm, tpm=tpm, tokens=tokens)
            except GatewayError as exc:
                headers, status = exc.headers, exc.code or ""
        else:
            if operation == "give":
                await give_back(key_id=key_id, rpm=rpm, tpm=tpm, tokens=tokens)
            headers = await current_limits(key_id=key_id, rpm=rpm, tpm=tpm)
            status = operation
        answers.append((status, comparable(headers)))
    return answers


async def test_redis_and_memory_limits_answer_alike(settings, redis_url):
    settings.REDIS_URL = ""
    state.reset_process_state()
    in_memory = await outcomes(key_id=7)

    settings.REDIS_URL = redis_url
    state.reset_process_state()
    in_redis = await outcomes(key_id=7)

    assert in_redis == in_memory
    unlimited = str(UNLIMITED)
    assert in_memory == [
        ("ok", ("5", "4", "reset", "100", "70", "reset")),
        ("ok", ("5", "3", "reset", "100", "40", "reset")),
        ("ok", ("5", "2", "reset", "100", "10", "reset")),
        # Refused for tokens: the request still counts, the tokens do not.
        ("rate_limit_exceeded", ("5", "1", "reset", "100", "10", "reset")),
        ("peek", ("5", "1", "reset", "100", "10", "reset")),
        ("ok", ("5", "0", "reset", "100", "5", "reset")),
        # Refused for requests: the tokens window is read, not counted.
        ("rate_limit_exceeded", ("5", "0", "reset", "100", "5", "reset")),
        ("give", ("5", "1", "reset", "100", "35", "reset")),
        ("peek", ("5", "1", "reset", "100", "35", "reset")),
        ("ok", ("5", "0", "reset", "100", "5", "reset")),
        ("rate_limit_exceeded", ("5", "0", "reset", "1000", "905", "reset")),
        ("rate_limit_exceeded", ("5", "0", "reset", "1000", "905", "reset")),
        ("rate_limit_exceeded", ("5", "0", "reset", unlimited, unlimited, "reset")),
        ("peek", (unlimited, unlimited, "reset", "100", "5", "reset")),
        ("ok", (unlimited, unlimited, "reset", unlimited, unlimited, "reset")),
        ("rate_limit_exceeded", ("5", "0", "reset", "100", "5", "reset")),
    ]


async def test_a_refused_request_says_when_to_retry(backend):
    await check_limits(key_id=8, rpm=1, tpm=None, tokens=1)

    with pytest.raises(GatewayError) as refused:
        await check_limits(key_id=8, rpm=1, tpm=None, tokens=1)

    assert refused.value.status == 429
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 120
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.value.headers["x-ratelimit-limit-tokens"] == str(UNLIMITED)


async def test_a_refusal_for_requests_still_says_where_the_tokens_stand(backend):
    await check_limits(key_id=9, rpm=1, tpm=500, tokens=120)

    with pytest.raises(GatewayError) as refused:
        await check_limits(key_id=9, rpm=1, tpm=500, tokens=120)

    headers = refused.value.headers
    assert (headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-remaining-tokens"]) == (
        "500",
        "380",
    )
    comparable(headers)


async def test_a_request_too_large_for_the_token_limit_is_refused_with_every_header(backend):
    with pytest.raises(GatewayError) as refused:
        await check_limits(key_id=10, rpm=None, tpm=50, tokens=51)

    assert "Request too large" in refused.value.message
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "50"
    comparable(refused.value.headers)


async def test_a_key_without_limits_is_told_it_is_unlimited_without_a_store(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: no store is asked
    state.reset_process_state()

    counted = await check_limits(key_id=11, rpm=None, tpm=None, tokens=10**9)
    read = await current_limits(key_id=11, rpm=None, tpm=None)
    await give_back(key_id=11, rpm=None, tpm=None, tokens=5)

    assert counted == read
    assert comparable(read) == (str(UNLIMITED), str(UNLIMITED), "reset") * 2
    assert read["x-ratelimit-reset-requests"] == "0s"


async def test_reading_the_limits_does_not_count(backend):
    await check_limits(key_id=12, rpm=3, tpm=100, tokens=10)

    for _ in range(5):
        read = await current_limits(key_id=12, rpm=3, tpm=100)

    assert (read["x-ratelimit-remaining-requests"], read["x-ratelimit-remaining-tokens"]) == (
        "2",
        "90",
    )
    fresh = await current_limits(key_id=13, rpm=3, tpm=100)
    assert (fresh["x-ratelimit-remaining-requests"], fresh["x-ratelimit-reset-requests"]) == (
        "3",
        "0s",
    )


async def test_giving_back_a_request_lets_another_one_in(backend):
    await check_limits(key_id=14, rpm=2, tpm=None, tokens=1)
    await check_limits(key_id=14, rpm=2, tpm=None, tokens=1)
    with pytest.raises(GatewayError):
        await check_limits(key_id=14, rpm=2, tpm=None, tokens=1)

    await give_back(key_id=14, rpm=2, tpm=None, tokens=1)

    headers = await check_limits(key_id=14, rpm=2, tpm=None, tokens=1)
    assert headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(GatewayError):
        await check_limits(key_id=14, rpm=2, tpm=None, tokens=1)


async def test_giving_back_tokens_lets_them_be_spent_again(backend):
    await check_limits(key_id=15, rpm=None, tpm=100, tokens=60)
    with pytest.raises(GatewayError):
        await check_limits(key_id=15, rpm=None, tpm=100, tokens=50)

    await give_back(key_id=15, rpm=None, tpm=100, tokens=60)

    headers = await check_limits(key_id=15, rpm=None, tpm=100, tokens=100)
    assert headers["x-ratelimit-remaining-tokens"] == "0"


async def test_giving_back_never_leaves_more_than_the_limit(backend):
    await check_limits(key_id=16, rpm=2, tpm=100, tokens=10)

    await give_back(key_id=16, rpm=2, tpm=100, tokens=10)
    await give_back(key_id=16, rpm=2, tpm=100, tokens=10)

    read = await current_limits(key_id=16, rpm=2, tpm=100)
    assert (read["x-ratelimit-remaining-requests"], read["x-ratelimit-remaining-tokens"]) == (
        "2",
        "100",
    )


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
