"""Credit packages: seeded by a data migration, edited in the admin."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from billing.models import CreditPackage, LedgerEntry

pytestmark = pytest.mark.django_db


def test_the_migration_seeds_starter_plus_pro_and_ultra(default_packages):
    packages = CreditPackage.objects.active()

    assert [p.slug for p in packages] == ["starter", "plus", "pro", "ultra"]
    assert [p.price_micro_usd for p in packages] == [5_000_000, 20_000_000, 50_000_000, 100_000_000]
    assert all(p.total_credit_micro_usd >= p.price_micro_usd for p in packages)


def test_a_price_must_be_whole_cents(starter):
    starter.price_micro_usd = 5_000_001

    with pytest.raises(ValidationError, match="whole cents"):
        starter.full_clean()


def test_the_operator_edits_packages_in_the_admin(admin_client, starter):
    response = admin_client.post(
        f"/admin/billing/creditpackage/{starter.pk}/change/",
        {
            "slug": "starter",
            "name": "Starter",
            "price_micro_usd": 6_000_000,
            "credit_micro_usd": 6_000_000,
            "bonus_micro_usd": 500_000,
            "active": "on",
            "order": 0,
        },
    )

    assert response.status_code == 302
    starter.refresh_from_db()
    assert starter.total_credit_micro_usd == 6_500_000


def test_the_operator_creates_a_redemption_code_in_the_admin(admin_client):
    response = admin_client.post(
        "/admin/billing/redemptioncode/add/",
        {
            "code": "launch week",
            "amount_micro_usd": 3_000_000,
            "max_uses": 100,
            "active": "on",
            "redemptions-TOTAL_FORMS": 0,
            "redemptions-INITIAL_FORMS": 0,
        },
    )

    assert response.status_code == 302
    from billing.models import RedemptionCode

    assert RedemptionCode.objects.get().code == "LAUNCHWEEK"


def test_a_grant_from_the_admin_lands_in_the_ledger_with_its_reason(admin_client, customer):
    response = admin_client.post(
        f"/admin/billing/account/{customer.account.pk}/adjust/",
        {"amount_usd": "2.50", "kind": "grant", "reason": "Conference voucher"},
    )

    assert response.status_code == 302
    entry = customer.account.entries.get(memo__startswith="Conference voucher")
    assert entry.kind == LedgerEntry.Kind.GRANT
    assert entry.amount_micro_usd == 2_500_000


def test_the_admin_lists_purchases_and_stripe_events(admin_client):
    assert admin_client.get("/admin/billing/purchase/").status_code == 200
    assert admin_client.get("/admin/billing/stripeevent/").status_code == 200
    assert admin_client.get("/admin/billing/creditpackage/").status_code == 200
