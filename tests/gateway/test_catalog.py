"""GET /v1/catalog: public prices (after the operator's markup), limits and availability."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import AsyncClient

from gateway import routing
from gateway.models import Model, Provider, Route

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def catalog(demo_catalog: None) -> None:
    demo = Provider.objects.get(name="demo")
    odd = Model.objects.create(
        id="odd-prices", input_price=333, output_price=1, cached_input_price=None
    )
    Route.objects.create(model=odd, provider=demo, upstream_model="demo")
    Model.objects.create(id="unpriced", input_price=None, output_price=None)
    retired = Model.objects.create(id="retired", input_price=5, output_price=5, enabled=False)
    Route.objects.create(model=retired, provider=demo, upstream_model="demo")


async def entries(query: str = "") -> dict[str, dict[str, Any]]:
    response = await AsyncClient().get(f"/v1/catalog{query}")
    assert response.status_code == 200
    payload = response.json()
    assert payload["object"] == "list"
    return {entry["id"]: entry for entry in payload["data"]}


async def test_it_is_public_and_describes_each_model(catalog: None) -> None:
    demo = (await entries())["demo"]

    assert demo == {
        "id": "demo",
        "title": "Switchboard Demo",
        "aliases": ["demo-model"],
        "owned_by": "switchboard",
        "context_length": 32768,
        "max_output_tokens": 1024,
        "pricing": {
            "unit": "per_million_tokens",
            "input": {"micro_usd": 1_000_000, "usd": 1.0, "units": None},
            "output": {"micro_usd": 2_000_000, "usd": 2.0, "units": None},
            "cached_input": {"micro_usd": 500_000, "usd": 0.5, "units": None},
            "cache_write": None,
            "cache_write_1h": None,
            "per_request": {"micro_usd": 0, "usd": 0.0, "units": None},
        },
        "providers": ["demo"],
        "enabled": True,
        "priced": True,
        "available": True,
    }


async def test_it_lists_enabled_models_unless_asked_for_all(catalog: None) -> None:
    assert sorted(await entries()) == ["demo", "odd-prices", "unpriced"]
    assert sorted(await entries("?show_all=true")) == ["demo", "odd-prices", "retired", "unpriced"]
    assert (await entries("?show_all=true"))["retired"]["available"] is False


async def test_an_unpriced_or_routeless_model_is_shown_but_not_available(catalog: None) -> None:
    unpriced = (await entries())["unpriced"]

    assert unpriced["priced"] is False and unpriced["available"] is False
    assert unpriced["pricing"]["input"] is None and unpriced["providers"] == []


@pytest.mark.parametrize(
    ("markup", "demo_input", "demo_output", "odd_input", "odd_output"),
    [
        (0, 1_000_000, 2_000_000, 333, 1),
        (-10, 900_000, 1_800_000, 300, 1),
        (10, 1_100_000, 2_200_000, 367, 2),
    ],
)
async def test_prices_carry_the_markup_and_stay_whole_micro_dollars(
    catalog: None,
    settings: Any,
    markup: int,
    demo_input: int,
    demo_output: int,
    odd_input: int,
    odd_output: int,
) -> None:
    settings.PRICE_MARKUP_PERCENT = markup

    found = await entries()

    demo, odd = found["demo"]["pricing"], found["odd-prices"]["pricing"]
    assert (demo["input"]["micro_usd"], demo["output"]["micro_usd"]) == (demo_input, demo_output)
    assert (odd["input"]["micro_usd"], odd["output"]["micro_usd"]) == (odd_input, odd_output)
    assert odd["cached_input"] is None
    for price in (demo["input"], demo["output"], odd["input"], odd["output"]):
        assert isinstance(price["micro_usd"], int)
        assert price["usd"] == price["micro_usd"] / 1_000_000


async def test_a_cooling_provider_makes_its_models_unavailable_until_it_recovers(
    catalog: None,
) -> None:
    demo = await Provider.objects.aget(name="demo")

    routing.cool_down(demo.pk, 60)
    cooling = await entries()
    routing.recovered(demo.pk)
    recovered = await entries()

    assert cooling["demo"]["available"] is False and cooling["odd-prices"]["available"] is False
    assert cooling["demo"]["providers"] == ["demo"]
    assert recovered["demo"]["available"] is True


async def test_a_model_stays_available_while_one_of_its_routes_is_healthy(catalog: None) -> None:
    backup = await Provider.objects.acreate(name="backup", kind=Provider.Kind.DEMO)
    await Route.objects.acreate(model_id="demo", provider=backup, upstream_model="demo", priority=1)

    routing.cool_down((await Provider.objects.aget(name="demo")).pk, 60)
    demo = (await entries())["demo"]

    assert demo["providers"] == ["demo", "backup"]
    assert demo["available"] is True


async def test_it_answers_a_post_with_405_json(catalog: None) -> None:
    response = await AsyncClient().post("/v1/catalog")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
