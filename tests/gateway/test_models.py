"""GET /v1/models and /v1/models/<id>: what this key may call, as OpenAI lists it."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from gateway.models import Model, Provider, Route

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def catalog(demo_catalog: None) -> None:
    """The demo plus one model of every kind that must stay out of the list."""
    demo = Provider.objects.get(name="demo")
    for model in (
        Model(id="zeta-priced", owned_by="acme", input_price=1, output_price=1),
        Model(id="unpriced", input_price=None, output_price=None),
        Model(id="half-priced", input_price=1, output_price=None),
        Model(id="disabled", input_price=1, output_price=1, enabled=False),
    ):
        model.save()
        Route.objects.create(model=model, provider=demo, upstream_model="demo")
    Model.objects.create(id="routeless", input_price=1, output_price=1)


async def get(path: str, secret: str | None) -> Any:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return await AsyncClient().get(path, headers=headers)


async def test_it_lists_only_enabled_priced_routed_models_in_openais_shape(
    catalog: None, customer: Any
) -> None:
    response = await get("/v1/models", customer.secret)

    assert response.status_code == 200
    assert response["x-request-id"].startswith("req_")
    payload = response.json()
    assert payload["object"] == "list"
    assert [m["id"] for m in payload["data"]] == ["demo", "zeta-priced"]
    for model in payload["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert model["object"] == "model" and isinstance(model["created"], int)
    assert [m["owned_by"] for m in payload["data"]] == ["switchboard", "acme"]


async def test_it_lists_only_the_models_on_the_keys_allowlist(
    catalog: None, make_customer: Any
) -> None:
    customer = await sync_to_async(make_customer)(allowed_models=["zeta-priced", "unpriced"])

    response = await get("/v1/models", customer.secret)

    assert [m["id"] for m in response.json()["data"]] == ["zeta-priced"]


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/demo"])
@pytest.mark.parametrize("secret", [None, "sk-sb-000000000000notakeyatall"])
async def test_it_needs_a_valid_key(demo_catalog: None, path: str, secret: str | None) -> None:
    response = await get(path, secret)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("name", ["demo", "demo-model", "Switchboard Demo", "DEMO"])
async def test_it_retrieves_a_model_by_id_alias_or_title(
    catalog: None, customer: Any, name: str
) -> None:
    response = await get(f"/v1/models/{name}", customer.secret)
    joined = await sync_to_async(lambda: Model.objects.get(id="demo").created_at)()

    assert response.status_code == 200
    assert response.json() == {
        "id": "demo",
        "object": "model",
        "created": int(joined.timestamp()),
        "owned_by": "switchboard",
    }


@pytest.mark.parametrize(
    "name", ["no-such-model", "unpriced", "half-priced", "disabled", "routeless"]
)
async def test_it_answers_404_for_a_model_it_would_not_list(
    catalog: None, customer: Any, name: str
) -> None:
    response = await get(f"/v1/models/{name}", customer.secret)

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "demo, zeta-priced" in error["message"]


async def test_it_answers_404_for_a_model_outside_the_keys_allowlist(
    catalog: None, make_customer: Any
) -> None:
    customer = await sync_to_async(make_customer)(allowed_models=["demo"])

    response = await get("/v1/models/zeta-priced", customer.secret)

    assert response.status_code == 404
    assert "Available models: demo." in response.json()["error"]["message"]


@pytest.fixture
def slashed_model(demo_catalog: None) -> None:
    model = Model.objects.create(id="vendor/model-x", input_price=1, output_price=1)
    Route.objects.create(
        model=model, provider=Provider.objects.get(name="demo"), upstream_model="demo"
    )


async def test_it_retrieves_a_model_whose_id_has_a_slash(
    slashed_model: None, customer: Any
) -> None:
    response = await get("/v1/models/vendor/model-x", customer.secret)

    assert response.status_code == 200
    assert response.json()["id"] == "vendor/model-x"


async def test_it_answers_a_post_with_405_json(demo_catalog: None, customer: Any) -> None:
    response = await AsyncClient().post(
        "/v1/models", headers={"Authorization": f"Bearer {customer.secret}"}
    )

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response["Allow"] == "GET"


async def test_created_is_when_the_model_joined_the_catalog(catalog: None, customer: Any) -> None:
    joined = await sync_to_async(lambda: Model.objects.get(id="zeta-priced").created_at)()

    response = await get("/v1/models/zeta-priced", customer.secret)

    assert response.json()["created"] == int(joined.timestamp())
    assert response.json()["created"] > 1_700_000_000
