"""Any /v1 path the gateway does not serve answers a JSON 404, never an HTML page."""

from __future__ import annotations

import pytest
from django.test import AsyncClient


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/"),
        ("post", "/v1/completions"),
        ("post", "/v1/embeddings"),
        ("delete", "/v1/models"),
    ],
)
async def test_an_unknown_endpoint_is_a_json_404(method, path):
    response = await getattr(AsyncClient(), method)(path)

    assert response.status_code in {404, 405}
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response["x-request-id"].startswith("req_")


async def test_a_trailing_slash_gets_a_hint():
    response = await AsyncClient().post(
        "/v1/chat/completions/", data=b"{}", content_type="application/json"
    )

    assert response.status_code == 404
    assert "/v1/chat/completions (no trailing slash)" in response.json()["error"]["message"]


async def test_the_404_names_every_front_door_and_the_docs():
    response = await AsyncClient().get("/v1/nothing-here")

    message = response.json()["error"]["message"]
    for door in ("/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/documents"):
        assert door in message
    assert "/docs/api/" in message
