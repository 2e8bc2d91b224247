"""GET /metrics: Prometheus text behind a bearer token, fed by every /v1 call."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from billing.models import UsageRecord
from gateway.models import Model, Provider, Route
from tests.fakes.upstream import Fail, Ok

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-secret-for-tests"
MESSAGES = [{"role": "user", "content": "Count me."}]


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.fixture
def catalog(fake_upstream):
    """metered-model → primary, then mirror (both the fake upstream)."""

    def provider(name: str) -> Provider:
        return Provider.objects.create(
            name=name, kind="openai", base_url=fake_upstream.url + "/v1", timeout_seconds=2
        )

    primary, mirror = provider("primary"), provider("mirror")
    model = Model.objects.create(
        id="metered-model",
        context_length=8_000,
        max_output_tokens=1_000,
        input_price=2_000_000,
        output_price=8_000_000,
    )
    Route.objects.create(model=model, provider=primary, upstream_model="up-primary", priority=0)
    Route.objects.create(model=model, provider=mirror, upstream_model="up-mirror", priority=1)
    return fake_upstream


@pytest.fixture
def client(live_server_url, customer, catalog):
    return openai.OpenAI(
        base_url=live_server_url + "/v1", api_key=customer.secret, max_retries=0, timeout=10
    )


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET /metrics, by name and sorted labels."""
    response = httpx.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for_record(request_id: str) -> UsageRecord:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        record = UsageRecord.objects.filter(request_id=request_id).first()
        if record is not None:
            return record
        time.sleep(0.02)
    raise AssertionError(f"no usage record for {request_id}")


def test_it_is_not_found_while_no_token_is_configured(live_server_url, settings):
    settings.METRICS_TOKEN = ""

    response = httpx.get(f"{live_server_url}/metrics", headers={"Authorization": "Bearer x"})

    assert response.status_code == 404


def test_it_refuses_a_missing_or_wrong_token(live_server_url, metrics_token):
    missing = httpx.get(f"{live_server_url}/metrics")
    wrong = httpx.get(f"{live_server_url}/metrics", headers={"Authorization": "Bearer nope"})

    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    assert "switchboard" not in wrong.text


def test_it_counts_a_completion_its_tokens_and_the_credit_spent(
    client, live_server_url, metrics_token
):
    before = scrape(live_server_url)

    raw = client.chat.completions.with_raw_response.create(model="metered-model", messages=MESSAGES)

    record = UsageRecord.objects.get(request_id=raw.headers["x-request-id"])
    after = scrape(live_server_url)
    model = {"model": "metered-model"}

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("switchboard_completions_total", stream="false", status="ok", **model) == 1
    assert delta("switchboard_tokens_total", kind="prompt", **model) == record.prompt_tokens
    assert delta("switchboard_tokens_total", kind="completion", **model) == record.completion_tokens
    assert delta("switchboard_credits_spent_micro_usd_total", **model) == record.cost_micro_usd
    assert delta("switchboard_http_requests_total", route="chat_completions", status="200") == 1
    assert delta("switchboard_http_request_duration_seconds_count", route="chat_completions") == 1


def test_it_counts_refused_requests_by_status(live_server_url, metrics_token, catalog):
    before = scrape(live_server_url)

    response = httpx.post(
        f"{live_server_url}/v1/chat/completions",
        json={"model": "metered-model", "messages": MESSAGES},
        headers={"Authorization": "Bearer sk-sb-not-a-real-key-at-all-000000"},
    )

    assert response.status_code == 401
    after = scrape(live_server_url)
    labels = {"route": "chat_completions", "status": "401"}
    assert (
        value(after, "switchboard_http_requests_total", **labels)
        - value(before, "switchboard_http_requests_total", **labels)
        == 1
    )


def test_it_counts_upstream_errors_by_provider_even_when_a_fallback_answers(
    client, live_server_url, metrics_token, catalog
):
    catalog.script("up-primary", Fail(500))
    before = scrape(live_server_url)

    reply = client.chat.completions.create(model="metered-model", messages=MESSAGES)

    assert reply.choices[0].message.content
    after = scrape(live_server_url)
    name = "switchboard_upstream_errors_total"
    assert value(after, name, provider="primary") - value(before, name, provider="primary") == 1
    assert value(after, name, provider="mirror") == value(before, name, provider="mirror")


def test_a_stream_is_in_flight_until_it_ends_and_then_counted_once(
    client, live_server_url, metrics_token, catalog
):
    catalog.script("up-primary", Ok(delay=0.2))
    name = "switchboard_http_requests_in_flight"
    idle = value(scrape(live_server_url), name)

    stream = client.chat.completions.with_raw_response.create(
        model="metered-model", messages=MESSAGES, stream=True
    )
    chunks = stream.parse()
    next(iter(chunks))
    during = value(scrape(live_server_url), name)
    rest = list(chunks)
    record = wait_for_record(stream.headers["x-request-id"])
    after = scrape(live_server_url)

    assert rest
    assert during == idle + 1
    assert value(after, name) == idle
    assert record.status == UsageRecord.Status.OK
    assert value(after, "switchboard_time_to_first_token_seconds_count", model="metered-model")


def test_it_counts_revenue_lost_to_capping_and_settlements_by_flag(
    client, live_server_url, metrics_token, catalog
):
    """An upstream that reports far more usage than the hold covers: the charge is capped
    at the hold, and /metrics shows the micro-USD left uncharged and the flag."""
    catalog.script("up-primary", Ok(completion_tokens=900_000))
    before = scrape(live_server_url)

    raw = client.chat.completions.with_raw_response.create(
        model="metered-model", messages=MESSAGES, max_tokens=10
    )

    record = wait_for_record(raw.headers["x-request-id"])
    after = scrape(live_server_url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert "capped" in record.flags.split()
    assert record.uncharged_micro_usd > 0
    uncharged = "switchboard_credits_uncharged_micro_usd_total"
    assert delta(uncharged, model="metered-model") == record.uncharged_micro_usd
    assert delta("switchboard_settlements_flagged_total", flag="capped") == 1
    assert delta("switchboard_settlements_flagged_total", flag="hold_missing") == 0


def test_it_counts_every_flag_of_a_settlement_once(live_server_url, metrics_token, customer):
    """Settlements flagged by the caller and by settle() itself, counted once per flag."""
    from billing.ledger import release_expired_holds, reserve_credits, settle
    from gateway.metrics import completion_settled

    usage = {"model": "flagged-model", "status": "ok", "flags": "usage_suspect"}
    reservation = reserve_credits(
        account_id=customer.account.pk, amount=100, request_id="req_flagged"
    )
    release_expired_holds(now=reservation_expired())
    before = scrape(live_server_url)

    completion_settled(settle(reservation=reservation, cost=250, usage=usage))
    completion_settled(
        settle(
            reservation=reserve_credits(
                account_id=customer.account.pk, amount=100, request_id="req_plain"
            ),
            cost=50,
            usage={"model": "flagged-model", "status": "ok"},
        )
    )

    after = scrape(live_server_url)
    flagged = "switchboard_settlements_flagged_total"
    assert (
        value(after, flagged, flag="usage_suspect") - value(before, flagged, flag="usage_suspect")
        == 1
    )
    assert (
        value(after, flagged, flag="hold_missing") - value(before, flagged, flag="hold_missing")
        == 1
    )
    assert value(after, flagged, flag="capped") - value(before, flagged, flag="capped") == 1
    uncharged = "switchboard_credits_uncharged_micro_usd_total"
    assert (
        value(after, uncharged, model="flagged-model")
        - value(before, uncharged, model="flagged-model")
        == 150
    )


def reservation_expired():
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now() + timedelta(days=1)
