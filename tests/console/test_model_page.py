"""/models/<id>: one model's prices, limits, providers' health, sample and recent speed."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import UsageRecord
from console.model_pages import RECENT_LIMIT, recent_speed
from gateway import routing
from gateway.models import Model, Provider, Route

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(db, settings, warm_catalog) -> Model:
    settings.SITE_URL = "https://gw.example.com"
    primary = Provider.objects.create(name="primary", kind="openai", base_url="http://127.0.0.1:9")
    mirror = Provider.objects.create(name="mirror", kind="openai", base_url="http://127.0.0.1:9")
    model = Model.objects.create(
        id="meta-llama/llama-x",
        title="Llama X",
        aliases=["llx"],
        owned_by="meta",
        context_length=131_072,
        max_output_tokens=8_192,
        input_price=200_000,
        output_price=600_000,
        cached_input_price=50_000,
        cache_write_price=250_000,
        cache_write_1h_price=400_000,
    )
    Route.objects.create(model=model, provider=primary, upstream_model="x", priority=0)
    Route.objects.create(model=model, provider=mirror, upstream_model="x", priority=1)
    warm_catalog()
    return model


def test_it_shows_the_catalog_entry_and_a_sample_for_this_site(client, model):
    response = client.get("/models/meta-llama/llama-x")
    body = html.unescape(response.content.decode())

    assert response.status_code == 200
    assert "<h1>Llama X</h1>" in body
    assert '<code data-testid="model-id">meta-llama/llama-x</code>' in body
    assert "<code>llx</code>" in body
    for text in ("131,072 tokens", "8,192 tokens", "$0.20", "$0.60", "$0.05", "$0.25", "$0.40"):
        assert text in body, text
    assert "curl https://gw.example.com/v1/chat/completions" in body
    assert '"model": "meta-llama/llama-x"' in body
    assert body.index("primary") < body.index("mirror")
    assert body.count("Healthy") == 2
    assert "No requests in the last 7 days yet." in body


def test_a_cooling_provider_is_shown_resting(client, model):
    routing.cool_down(Provider.objects.get(name="mirror").pk, 30)

    body = client.get("/models/meta-llama/llama-x").content.decode()

    assert body.count("Healthy") == 1
    assert "Resting for 30 s" in body


@pytest.mark.parametrize("name", ["llx", "Llama%20X", "meta-llama/llama-x/"])
def test_an_alias_title_or_trailing_slash_leads_to_the_models_own_address(client, model, name):
    response = client.get(f"/models/{name}")

    assert response.status_code == 302
    assert response["Location"] == "/models/meta-llama/llama-x"


@pytest.mark.parametrize("name", ["nope", "retired", "", "%00"])
def test_an_unknown_or_disabled_model_is_a_404(client, model, name):
    Model.objects.create(id="retired", input_price=1, output_price=1, enabled=False)

    assert client.get(f"/models/{name}").status_code == 404


def test_recent_speed_is_the_median_and_p95_of_recent_successes_only(model, customer):
    now = timezone.now()
    for n, (latency, ttft) in enumerate([(100, 10), (200, 20), (300, None), (400, 40)]):
        UsageRecord.objects.create(
            request_id=f"req_ok{n}",
            account=customer.account,
            model=model.id,
            latency_ms=latency,
            ttft_ms=ttft,
        )
    UsageRecord.objects.create(
        request_id="req_err",
        account=customer.account,
        model=model.id,
        latency_ms=9000,
        status="error",
    )
    UsageRecord.objects.create(
        request_id="req_old",
        account=customer.account,
        model=model.id,
        latency_ms=9000,
        created_at=now - timedelta(days=8),
    )

    speed = recent_speed(model.id)

    assert (speed.requests, speed.latency_median, speed.latency_p95) == (4, 250, 400)
    assert (speed.ttft_median, speed.ttft_p95) == (20, 40)


def test_recent_speed_reads_a_bounded_number_of_rows(model, customer, django_assert_num_queries):
    UsageRecord.objects.bulk_create(
        UsageRecord(request_id=f"req_{n}", account=customer.account, model=model.id, latency_ms=n)
        for n in range(RECENT_LIMIT + 20)
    )

    with django_assert_num_queries(1):
        speed = recent_speed(model.id)

    assert speed.requests == RECENT_LIMIT


def test_the_pricing_page_links_each_model_to_its_page(client, model):
    body = client.get("/pricing/").content.decode()

    assert 'href="/models/meta-llama/llama-x"' in body
    assert 'data-label="Max output">8,192</td>' in body
