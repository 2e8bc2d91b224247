"""`/v1/pricing`: what each model costs the calling key, and `/v1/pricing/public`: the
credit packages, their bonuses and the credit unit, for partner platforms.

Both give every amount as exact integer micro-USD with USD and the operator's credit
unit beside it (billing.money.money_json). `/v1/pricing` gives the prices a call is
charged, after markup and with the cache prices resolved (a model without its own
cache-read price charges the input price for cache reads), where `/v1/catalog` gives
the catalog as configured.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from billing.models import CreditPackage
from billing.money import MICRO, credit_unit_json, money_json, unit_amount
from gateway import calls
from gateway.auth import KeyInfo
from gateway.catalog import ModelInfo
from gateway.errors import invalid
from gateway.sync import db_sync_to_async
from gateway.views import api_view, json_response


def model_prices(model: ModelInfo) -> dict[str, Any]:
    """One model's charged prices: per million tokens of each kind, and per request."""
    return {
        "id": model.id,
        "object": "model.pricing",
        "title": model.title or model.id,
        "per_million_tokens": {
            "input": money_json(model.input_price or 0),
            "output": money_json(model.output_price or 0),
            "cache_read": money_json(model.cached_price),
            "cache_write": money_json(model.write_price),
            "cache_write_1h": money_json(model.write_1h_price),
        },
        "per_request": money_json(model.request_price),
        "price_version": model.price_version,
    }


@api_view(("GET",))
async def pricing(request: HttpRequest) -> HttpResponse:
    """GET /v1/pricing[?model=<id, alias or title>]: the prices of the models this key
    may call (404 for a model it cannot reach, 403 for one its allowlist excludes)."""
    key: KeyInfo = request.api_key  # type: ignore[attr-defined]
    catalog = await calls.current_catalog()
    if "model" in request.GET:
        name = request.GET["model"].strip()
        if not name:
            raise invalid("`model`, when given, must name a model.", param="model")
        model = calls.priced_model(catalog, name, key)
        if not model.routes:
            raise calls.model_not_found(name, catalog, key)
        calls.check_policy(key, model)
        models = [model]
    else:
        models = sorted(
            (m for m in catalog.callable() if key.allows_model(m.id)), key=lambda m: m.id
        )
    return json_response(
        {
            "object": "list",
            "credit_unit": credit_unit_json(),
            "data": [model_prices(m) for m in models],
        }
    )


def _package(package: CreditPackage) -> dict[str, Any]:
    return {
        "id": package.slug,
        "object": "credit_package",
        "name": package.name,
        "price": money_json(package.price_micro_usd),
        "credit": money_json(package.credit_micro_usd),
        "bonus": money_json(package.bonus_micro_usd),
        "total_credit": money_json(package.total_credit_micro_usd),
        "bonus_percent": float(package.bonus_percent),
    }


def _public_pricing() -> dict[str, Any]:
    return {
        "object": "pricing.public",
        "currency": "usd",
        "credit_unit": credit_unit_json(),
        # What a dollar of credit is worth: one dollar, or so many of the credit unit.
        "exchange_rate": {
            "micro_usd_per_usd": MICRO,
            "units_per_usd": unit_amount(MICRO),
        },
        "signup_grant": money_json(settings.SIGNUP_GRANT_MICRO_USD),
        "packages": [_package(p) for p in CreditPackage.objects.active()],
        "bonus_tiers": [
            {
                "package": p.slug,
                "min_price": money_json(p.price_micro_usd),
                "bonus_percent": float(p.bonus_percent),
            }
            for p in CreditPackage.objects.bonus_tiers()
        ],
    }


_public_pricing_async = db_sync_to_async(_public_pricing)


@api_view(("GET",), key_required=False)
async def public_pricing(request: HttpRequest) -> HttpResponse:
    """GET /v1/pricing/public: packages with their bonuses, the bonus tiers and the
    credit exchange rate; no key, for partner platforms to show the operator's offer."""
    return json_response(await _public_pricing_async())
