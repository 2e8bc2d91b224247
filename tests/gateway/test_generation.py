"""GET /v1/generation/<request id>: tokens and cost of a past request, for its owner only."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

pytestmark = pytest.mark.django_db(transaction=True)


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def fast_demo(settings: Any, demo_catalog: None) -> None:
    settings.DEMO_TOKEN_DELAY_MS = 1


async def complete(secret: str, **fields: Any) -> Any:
    body = {"model": "demo", "messages": [{"role": "user", "content": "Hi"}], **fields}
    response = await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps(body),
        content_type="application/json",
        headers=auth(secret),
    )
    assert response.status_code == 200
    return response


async def generation(request_id: str, secret: str) -> Any:
    return await AsyncClient().get(f"/v1/generation/{request_id}", headers=auth(secret))


async def test_the_owner_sees_the_tokens_and_cost_of_a_request(
    fast_demo: None, customer: Any
) -> None:
    answer = await complete(customer.secret, max_tokens=7)
    request_id = answer["x-request-id"]
    usage = answer.json()["usage"]

    response = await generation(request_id, customer.secret)

    assert response.status_code == 200
    found = response.json()
    assert found["id"] == request_id and found["object"] == "generation"
    assert (found["model"], found["provider"], found["upstream_model"]) == ("demo",) * 3
    assert found["status"] == "ok" and found["error"] is None and found["stream"] is False
    assert found["prompt_tokens"] == usage["prompt_tokens"]
    assert found["completion_tokens"] == usage["completion_tokens"] == 7
    assert found["total_tokens"] == usage["total_tokens"]
    assert found["cost_micro_usd"] == int(answer["X-Request-Cost-Micro-Usd"]) > 0
    assert found["cost"] == found["cost_micro_usd"] / 1_000_000
    assert found["api_key"] == "test" and found["attempts"] == 1
    assert isinstance(found["created"], int) and found["price_version"]


async def test_it_records_a_streamed_request_too(fast_demo: None, customer: Any) -> None:
    answer = await complete(customer.secret, stream=True, max_tokens=5)
    assert b"data: [DONE]" in b"".join([chunk async for chunk in answer.streaming_content])

    found = (await generation(answer["x-request-id"], customer.secret)).json()

    assert found["stream"] is True and found["completion_tokens"] == 5
    assert found["time_to_first_token_ms"] is not None


async def test_another_users_key_gets_404(fast_demo: None, make_customer: Any) -> None:
    owner, stranger = await sync_to_async(lambda: (make_customer(), make_customer()))()
    answer = await complete(owner.secret)

    response = await generation(answer["x-request-id"], stranger.secret)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "generation_not_found"


@pytest.mark.parametrize("request_id", ["req_000000000000000000000000", "nothing", "%20"])
async def test_an_unknown_id_gets_404(fast_demo: None, customer: Any, request_id: str) -> None:
    response = await generation(request_id, customer.secret)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "generation_not_found"


async def test_it_needs_a_key(fast_demo: None, customer: Any) -> None:
    answer = await complete(customer.secret)

    response = await AsyncClient().get(f"/v1/generation/{answer['x-request-id']}")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
