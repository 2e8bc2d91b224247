"""/v1 through the real ASGI application (console.asgi, so the lean handler): request
ids in paths, Host headers, unknown paths and methods, and the headers every answer
carries. Each refusal is an OpenAI error object, a 4xx, and moves no money.

`world` commits one customer with one past request for the module and flushes once at
the end (the views read on worker threads, which only see committed rows).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from django.core.management import call_command

from accounts.models import ApiKey, User
from billing.ledger import account_for
from billing.models import UsageRecord
from tests.books import money_snapshot

pytestmark = pytest.mark.django_db

KNOWN_ID = "req_0123456789abcdef01234567"

# (id, the path after /v1/generation/ as sent on the wire); each is a 404.
BAD_REQUEST_IDS: list[tuple[str, str]] = [
    ("nul", "req_%00"),
    ("nul-in-the-middle", "req_01%0023"),
    ("only-nul", "%00"),
    ("newline", "req_%0a"),
    ("forged-log-line", "req_1%0a2026-01-01%20ERROR%20forged"),
    ("carriage-return", "req_%0d%0a"),
    ("tab", "req_%09"),
    ("escape-sequence", "req_%1b%5b31m"),
    ("del-character", "req_%7f"),
    ("space", "req_%20"),
    ("quote", "req_%27%20OR%201=1"),
    ("percent-sign", "req_%25"),
    ("angle-brackets", "%3Cscript%3E"),
    ("non-ascii", "req_%C3%A9"),
    ("emoji", "req_%F0%9F%92%B8"),
    ("invalid-utf8", "req_%ff%fe"),
    ("line-separator", "req_%E2%80%A8"),
    ("too-long", "req_" + "a" * 61),
    ("very-long", "req_" + "a" * 5_000),
    ("dots", "%2e%2e"),
    ("unknown-but-well-formed", "req_ffffffffffffffffffffffff"),
    ("another-accounts-request", "req_someone_elses"),
]

# (id, method, path): every one a JSON error with this status.
BAD_PATHS: list[tuple[str, str, str, int]] = [
    ("post-generation", "POST", f"/v1/generation/{KNOWN_ID}", 405),
    ("delete-generation", "DELETE", f"/v1/generation/{KNOWN_ID}", 405),
    ("generation-without-id", "GET", "/v1/generation/", 404),
    ("generation-with-slash-in-id", "GET", "/v1/generation/a/b", 404),
    ("unknown-path-with-newline", "GET", "/v1/chat%0acompletions", 404),
    ("unknown-path-with-nul", "GET", "/v1/models%00", 404),
    ("unknown-path", "GET", "/v1/embeddings", 404),
    ("get-chat-completions", "GET", "/v1/chat/completions", 405),
    ("put-models", "PUT", "/v1/models", 405),
    ("post-catalog", "POST", "/v1/catalog", 405),
    ("delete-estimate", "DELETE", "/v1/estimate", 405),
]

BAD_HOSTS = [
    pytest.param("evil.example", id="foreign"),
    pytest.param("evil.example:8000", id="foreign-with-port"),
    pytest.param("localhost.evil.example", id="suffix-of-an-allowed-host"),
    pytest.param("127.0.0.1@evil.example", id="userinfo"),
    pytest.param("", id="empty"),
    pytest.param("bad host", id="space"),
    pytest.param("[::1", id="unclosed-ipv6"),
]


@pytest.fixture(scope="module")
def world(django_db_setup: None, django_db_blocker: Any) -> Iterator[dict[str, Any]]:
    with django_db_blocker.unblock():
        call_command("synccatalog", "--demo-only", verbosity=0)
        user = User.objects.create_user("v1-requests@example.com", "pw-123-secret")
        key, secret = ApiKey.objects.mint(user=user, name="test")
        UsageRecord.objects.create(
            request_id=KNOWN_ID, account=account_for(user), api_key=key, model="demo"
        )
        other = User.objects.create_user("v1-requests-other@example.com", "pw-123-secret")
        UsageRecord.objects.create(
            request_id="req_someone_elses", account=account_for(other), model="demo"
        )
        yield {"secret": secret}
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
async def client(world: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on console.asgi's application, with the customer's key; no money
    moves while it is used."""
    from console.asgi import application

    before = await _books()
    transport = httpx.ASGITransport(app=application)
    headers = {"Authorization": f"Bearer {world['secret']}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as http:
        yield http
    assert await _books() == before


async def _books() -> dict[str, int]:
    from asgiref.sync import sync_to_async

    return await sync_to_async(money_snapshot)()


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response.headers["content-type"].startswith("application/json")
    payload = orjson.loads(response.content)
    assert set(payload) == {"error"}
    error = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"].strip()
    return error


def assert_no_control_characters(text: str) -> None:
    assert all(c.isprintable() for c in text), repr(text)


@pytest.mark.parametrize(("raw_id"), [pytest.param(r, id=n) for n, r in BAD_REQUEST_IDS])
async def test_a_malformed_or_unknown_request_id_is_a_404(
    client: httpx.AsyncClient, raw_id: str
) -> None:
    response = await client.get(f"/v1/generation/{raw_id}")
    error = assert_openai_error(response, 404)
    assert error["code"] == "generation_not_found"
    assert_no_control_characters(error["message"])


@pytest.mark.parametrize(
    ("method", "path", "status"), [pytest.param(m, p, s, id=n) for n, m, p, s in BAD_PATHS]
)
async def test_other_paths_and_methods_are_json_errors(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert_openai_error(response, status)


@pytest.mark.parametrize("host", BAD_HOSTS)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/models"), ("GET", "/v1/catalog"), ("POST", "/v1/chat/completions")],
)
async def test_a_host_outside_allowed_hosts_is_a_400(
    client: httpx.AsyncClient, host: str, method: str, path: str
) -> None:
    body = {"model": "demo", "messages": [{"role": "user", "content": "Hi"}]}
    response = await client.request(
        method, path, headers={"Host": host}, json=body if method == "POST" else None
    )
    error = assert_openai_error(response, 400)
    assert error["code"] == "invalid_host"
    assert "ALLOWED_HOSTS" in error["message"]


async def test_an_allowed_host_is_served(client: httpx.AsyncClient) -> None:
    for host in ("testserver", "localhost", "127.0.0.1:8000"):
        response = await client.get("/v1/models", headers={"Host": host})
        assert response.status_code == 200, host


async def test_the_probes_answer_any_host(client: httpx.AsyncClient) -> None:
    """Load balancers probe by address; the probes carry no account data."""
    response = await client.get("/healthz", headers={"Host": "10.1.2.3"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/v1/models", 200, id="models"),
        pytest.param("GET", "/v1/catalog", 200, id="catalog"),
        pytest.param("GET", f"/v1/generation/{KNOWN_ID}", 200, id="generation"),
        pytest.param("GET", "/v1/estimate?model=demo&input_tokens=5", 200, id="estimate"),
        pytest.param("GET", "/v1/generation/req_%00", 404, id="not-found"),
        pytest.param("GET", "/v1/chat/completions", 405, id="wrong-method"),
        pytest.param("POST", "/v1/chat/completions", 400, id="bad-body"),
        pytest.param("GET", "/v1/nowhere", 404, id="unknown-endpoint"),
    ],
)
async def test_every_answer_is_neither_sniffed_nor_cached(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


async def test_an_unauthenticated_answer_is_not_cached_either(world: dict[str, Any]) -> None:
    from console.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/v1/models")
    assert response.status_code == 401
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


async def test_the_known_request_is_found(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/generation/{KNOWN_ID}")
    assert response.status_code == 200
    assert response.json()["id"] == KNOWN_ID
