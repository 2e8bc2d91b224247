"""Router profiles: seeded by synccatalog with defaults, kept when the operator edits them,
and read afresh by the router when they change."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from gateway import router
from gateway.catalog import get_catalog
from gateway.models import Model, RouterProfile, RouterTier

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_vendor_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_synccatalog_gives_every_model_it_adds_a_profile_tiered_by_price(no_vendor_keys):
    call_command("synccatalog", "--demo", stdout=io.StringIO())

    assert RouterProfile.objects.count() == Model.objects.count()
    demo = RouterProfile.objects.get(model_id="demo")
    assert (demo.tier, demo.vision, demo.reasoning) == (RouterTier.FAST, False, False)
    for profile in RouterProfile.objects.select_related("model"):
        dearest = max(profile.model.input_price, profile.model.output_price)
        expected = 1 if dearest <= 2_000_000 else 2 if dearest <= 10_000_000 else 3
        assert profile.tier == expected, profile.model_id
    assert RouterProfile.objects.get(model_id="claude-sonnet-4-5").vision
    assert RouterProfile.objects.get(model_id="gpt-4o").vision


def test_synccatalog_keeps_the_operators_profile(no_vendor_keys):
    call_command("synccatalog", "--demo-only", stdout=io.StringIO())
    RouterProfile.objects.filter(model_id="demo").update(tier=3, enabled=False)

    call_command("synccatalog", "--demo-only", stdout=io.StringIO())

    assert RouterProfile.objects.filter(model_id="demo", tier=3, enabled=False).exists()


def test_a_changed_profile_brings_a_new_snapshot_which_the_router_reads_afresh(demo_catalog):
    # The router keeps its configuration per catalog snapshot (router.current_config).
    before = get_catalog()
    assert "demo" in router.load_config().profiles

    profile = RouterProfile.objects.get(model_id="demo")
    profile.enabled = False
    profile.save()

    assert get_catalog() is not before
    assert "demo" not in router.load_config().profiles
