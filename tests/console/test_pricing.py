"""GET /pricing/: public prices after markup, searchable and sortable."""

from __future__ import annotations

import pytest

from gateway.models import Model, Provider, Route

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(db, settings, warm_catalog) -> None:
    settings.PRICE_MARKUP_PERCENT = 10
    alpha = Provider.objects.create(name="alpha", kind="openai", base_url="http://127.0.0.1:9")
    beta = Provider.objects.create(name="beta", kind="openai", base_url="http://127.0.0.1:9")
    models = [
        ("gpt-mini", "GPT Mini", 150_000, 600_000, 128_000, [alpha, beta]),
        ("claude-big", "Claude Big", 3_000_000, 15_000_000, 200_000, [beta]),
        ("llama-small", "Llama Small", 75_000, 75_000, 8_192, [alpha]),
    ]
    for model_id, title, input_price, output_price, context, providers in models:
        model = Model.objects.create(
            id=model_id,
            title=title,
            input_price=input_price,
            output_price=output_price,
            context_length=context,
        )
        for provider in providers:
            Route.objects.create(model=model, provider=provider, upstream_model=model_id)
    Model.objects.create(
        id="retired", title="Retired", input_price=1, output_price=1, enabled=False
    )


def ids(response) -> list[str]:
    return [row.id for row in response.context["rows"]]


def test_the_pricing_page_is_public_and_lists_enabled_models(client, catalog):
    response = client.get("/pricing/")

    assert response.status_code == 200
    assert ids(response) == ["claude-big", "gpt-mini", "llama-small"]


def test_prices_include_the_markup_and_match_the_catalog_api(client, catalog):
    rows = {row.id: row for row in client.get("/pricing/").context["rows"]}
    api = {entry["id"]: entry for entry in client.get("/v1/catalog").json()["data"]}

    assert rows["gpt-mini"].input_price == 165_000
    assert rows["gpt-mini"].output_price == 660_000
    for model_id, row in rows.items():
        assert row.input_price == api[model_id]["pricing"]["input"]["micro_usd"]
        assert row.output_price == api[model_id]["pricing"]["output"]["micro_usd"]
        assert row.context_length == api[model_id]["context_length"]
        assert row.providers == len(set(api[model_id]["providers"]))


def test_the_table_shows_dollars_per_million_tokens_context_and_providers(client, catalog):
    body = client.get("/pricing/").content.decode()

    assert 'data-micro-usd="165000">$0.165</td>' in body
    assert 'data-micro-usd="3300000">$3.30</td>' in body
    assert '<td class="num" data-label="Context">128,000</td>' in body
    assert '<td class="num" data-label="Providers">2</td>' in body


def test_search_matches_ids_titles_and_providers(client, catalog):
    assert ids(client.get("/pricing/?q=claude")) == ["claude-big"]
    assert ids(client.get("/pricing/?q=ALPHA")) == ["gpt-mini", "llama-small"]
    assert ids(client.get("/pricing/?q=nothing-like-it")) == []


def test_sorting_by_price_context_and_providers(client, catalog):
    assert ids(client.get("/pricing/?sort=input")) == [
        "llama-small",
        "gpt-mini",
        "claude-big",
    ]
    assert ids(client.get("/pricing/?sort=output&dir=desc")) == [
        "claude-big",
        "gpt-mini",
        "llama-small",
    ]
    assert ids(client.get("/pricing/?sort=context")) == [
        "llama-small",
        "gpt-mini",
        "claude-big",
    ]
    assert ids(client.get("/pricing/?sort=providers&dir=desc"))[0] == "gpt-mini"


def test_an_unknown_sort_falls_back_to_the_model_name(client, catalog):
    assert ids(client.get("/pricing/?sort=drop-table")) == [
        "claude-big",
        "gpt-mini",
        "llama-small",
    ]


def test_the_current_sort_is_announced_on_its_column(client, catalog):
    body = client.get("/pricing/?sort=input&dir=desc").content.decode()

    assert 'aria-sort="descending"' in body
    assert '<option value="input" selected>' in body


def test_an_htmx_search_renders_only_the_table(client, catalog):
    response = client.get(
        "/pricing/?q=llama", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="pricing-table"
    )

    body = response.content.decode()
    assert body.startswith('<div id="pricing-table"')
    assert "1 model matching “llama”." in body
    assert "<html" not in body
