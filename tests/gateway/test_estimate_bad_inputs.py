"""/v1/estimate refuses bad input with a 4xx OpenAI error object; it never moves money.

The catalog (demo, an unpriced model) is committed once for the module: the view reads
it on a worker thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import AsyncClient

from gateway.models import Model, Provider, Route
from tests.books import money_snapshot

pytestmark = pytest.mark.django_db

PATH = "/v1/estimate"
HI = [{"role": "user", "content": "Hi"}]

# (id, query string, expected status, expected param or None)
BAD_QUERIES: list[tuple[str, str, int, str | None]] = [
    ("no-model", "input_tokens=5", 400, "model"),
    ("empty-model", "model=&input_tokens=5", 400, "model"),
    ("blank-model", "model=%20%20", 400, "model"),
    ("unknown-model", "model=no-such-model", 404, "model"),
    ("model-with-nul", "model=demo%00", 404, "model"),
    ("unpriced-model", "model=unpriced", 400, "model"),
    ("input-words", "model=demo&input_tokens=many", 400, "input_tokens"),
    ("input-negative", "model=demo&input_tokens=-1", 400, "input_tokens"),
    ("input-fraction", "model=demo&input_tokens=1.5", 400, "input_tokens"),
    ("input-exponent", "model=demo&input_tokens=1e3", 400, "input_tokens"),
    ("input-empty", "model=demo&input_tokens=", 400, "input_tokens"),
    ("input-huge", "model=demo&input_tokens=" + "9" * 30, 400, "input_tokens"),
    ("input-hex", "model=demo&input_tokens=0x10", 400, "input_tokens"),
    ("input-nul", "model=demo&input_tokens=1%00", 400, "input_tokens"),
    ("output-words", "model=demo&output_tokens=lots", 400, "output_tokens"),
    ("output-negative", "model=demo&output_tokens=-5", 400, "output_tokens"),
    ("output-huge", "model=demo&output_tokens=100000000000", 400, "output_tokens"),
    ("output-empty", "model=demo&output_tokens=", 400, "output_tokens"),
]

# (id, POST body: raw bytes or JSON-able, expected status, expected param or None)
BAD_BODIES: list[tuple[str, bytes | Any, int, str | None]] = [
    ("not-json", b"{nope", 400, None),
    ("empty-body", b"", 400, None),
    ("array-body", [{"model": "demo"}], 400, None),
    ("string-body", "demo", 400, None),
    ("null-body", None, 400, None),
    ("deeply-nested", b"[" * 10_000 + b"]" * 10_000, 400, None),
    ("nan", b'{"model": "demo", "messages": [], "max_tokens": NaN}', 400, None),
    ("bad-utf8", b'{"model": "\xff"}', 400, None),
    ("no-model", {"messages": HI}, 400, "model"),
    ("model-a-number", {"model": 5, "messages": HI}, 400, "model"),
    ("model-a-list", {"model": ["demo"], "messages": HI}, 400, "model"),
    ("unknown-model", {"model": "no-such-model", "messages": HI}, 404, "model"),
    ("no-messages", {"model": "demo"}, 400, "messages"),
    ("messages-a-string", {"model": "demo", "messages": "Hi"}, 400, "messages"),
    ("messages-an-object", {"model": "demo", "messages": {"role": "user"}}, 400, "messages"),
    ("message-a-string", {"model": "demo", "messages": ["Hi"]}, 400, "messages"),
    ("message-a-number", {"model": "demo", "messages": [5]}, 400, "messages"),
    ("tools-a-string", {"model": "demo", "messages": HI, "tools": "lookup"}, 400, "tools"),
    ("tools-an-object", {"model": "demo", "messages": HI, "tools": {}}, 400, "tools"),
    ("max-tokens-words", {"model": "demo", "messages": HI, "max_tokens": "x"}, 400, None),
    ("max-tokens-negative", {"model": "demo", "messages": HI, "max_tokens": -1}, 400, None),
    ("max-tokens-bool", {"model": "demo", "messages": HI, "max_tokens": True}, 400, None),
    ("max-tokens-list", {"model": "demo", "messages": HI, "max_tokens": [5]}, 400, None),
    (
        "max-tokens-huge",
        b'{"model": "demo", "messages": [], "max_tokens": 100000000000000000000}',
        400,
        None,
    ),
    (
        "max-completion-tokens-words",
        {"model": "demo", "messages": HI, "max_completion_tokens": "x"},
        400,
        None,
    ),
]


@pytest.fixture(scope="module")
def catalog(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        call_command("synccatalog", "--demo-only", verbosity=0)
        model = Model.objects.create(id="unpriced", input_price=None, output_price=None)
        Route.objects.create(
            model=model, provider=Provider.objects.get(name="demo"), upstream_model="demo"
        )
        yield
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
async def client(catalog: None) -> AsyncIterator[AsyncClient]:
    before = await sync_to_async(money_snapshot)()
    yield AsyncClient()
    assert await sync_to_async(money_snapshot)() == before


def assert_openai_error(response: Any, status: int, param: str | None) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    payload = orjson.loads(response.content)
    assert set(payload) == {"error"} and set(payload["error"]) >= {"message", "type", "param"}
    assert payload["error"]["message"].strip()
    if param is not None:
        assert payload["error"]["param"] == param


@pytest.mark.parametrize(
    ("query", "status", "param"), [pytest.param(q, s, p, id=n) for n, q, s, p in BAD_QUERIES]
)
async def test_a_bad_query_is_refused(
    client: AsyncClient, query: str, status: int, param: str | None
) -> None:
    assert_openai_error(await client.get(f"{PATH}?{query}"), status, param)


@pytest.mark.parametrize(
    ("payload", "status", "param"), [pytest.param(b, s, p, id=n) for n, b, s, p in BAD_BODIES]
)
async def test_a_bad_body_is_refused(
    client: AsyncClient, payload: Any, status: int, param: str | None
) -> None:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    response = await client.post(PATH, data=raw, content_type="application/json")
    assert_openai_error(response, status, param)


async def test_the_valid_requests_the_tables_spoil_are_answered(client: AsyncClient) -> None:
    assert (await client.get(f"{PATH}?model=demo&input_tokens=5")).status_code == 200
    body = orjson.dumps({"model": "demo", "messages": HI, "max_tokens": 5})
    response = await client.post(PATH, data=body, content_type="application/json")
    assert response.status_code == 200
