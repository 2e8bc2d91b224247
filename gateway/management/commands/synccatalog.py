from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from billing.money import usd_to_micro
from gateway.catalog import invalidate_catalog
from gateway.models import Model, Provider, Route, RouterProfile, RouterTier

# genai-prices provider id → (our provider name, kind, base URL, env var with the key)
VENDORS: dict[str, tuple[str, str, str, str]] = {
    "openai": ("openai", "openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": ("anthropic", "anthropic", "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY"),
    "google": (
        "gemini",
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta",
        "GEMINI_API_KEY",
    ),
    "deepseek": ("deepseek", "openai", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "mistral": ("mistral", "openai", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "groq": ("groq", "openai", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "x-ai": ("xai", "openai", "https://api.x.ai/v1", "XAI_API_KEY"),
}
DEFAULT_MAX_OUTPUT = 16_384
DEMO_MODEL = {
    "id": "demo",
    "title": "Switchboard Demo",
    "aliases": ["demo-model"],
    "owned_by": "switchboard",
    "context_length": 32_768,
    "max_output_tokens": 1_024,
    "input_price": 1_000_000,
    "output_price": 2_000_000,
    "cached_input_price": 500_000,
}


MULTIMODAL_VENDORS = {"anthropic", "google"}
MULTIMODAL_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-5", "o3", "o4", "grok-4")
REASONING_PREFIXES = ("o1", "o3", "o4", "deepseek-reasoner", "grok-4")


def router_profile_defaults(model: Model) -> dict[str, Any]:
    """A new model's router profile: its tier by price (the dearer of input and output,
    at most $2 per million tokens fast, at most $10 balanced, else strongest), images for the
    vendors and families that read them, reasoning for the strongest and the reasoning
    families. The operator corrects them in the admin; a sync never overwrites them."""
    dearest = max(model.input_price or 0, model.output_price or 0)
    tier = (
        RouterTier.FAST
        if dearest <= 2_000_000
        else RouterTier.BALANCED
        if dearest <= 10_000_000
        else RouterTier.STRONG
    )
    return {
        "tier": tier,
        "vision": model.owned_by in MULTIMODAL_VENDORS or model.id.startswith(MULTIMODAL_PREFIXES),
        "reasoning": tier == RouterTier.STRONG or model.id.startswith(REASONING_PREFIXES),
    }


def plain_price(prices: Any) -> Any:
    """The model's current unconditional price set from genai-prices' data."""
    if isinstance(prices, list):
        return prices[-1].prices if prices else None
    return prices


def per_mtok(value: Any) -> int | None:
    """micro-USD per million tokens; tiered prices use their base rate."""
    if value is None:
        return None
    if not isinstance(value, Decimal):
        value = getattr(value, "base", None)
        if value is None:
            return None
    return usd_to_micro(value)


class Command(BaseCommand):
    help = "Seed the catalog with prices and context lengths from genai-prices' offline table."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--demo", action="store_true", help="Also seed the built-in demo.")
        parser.add_argument("--demo-only", action="store_true", help="Seed only the demo.")
        parser.add_argument(
            "--vendors",
            default=",".join(VENDORS),
            help="Comma-separated genai-prices provider ids to import.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            if options["demo"] or options["demo_only"]:
                self.seed_demo()
            if not options["demo_only"]:
                self.seed_vendors([v for v in options["vendors"].split(",") if v])
        # Refreshed prices are queryset updates (no signal): tell every worker's snapshot.
        invalidate_catalog()

    def seed_demo(self) -> None:
        provider, _ = Provider.objects.update_or_create(
            name="demo", defaults={"kind": Provider.Kind.DEMO, "base_url": "", "enabled": True}
        )
        fields = {k: v for k, v in DEMO_MODEL.items() if k != "id"}
        model, _ = Model.objects.update_or_create(
            id=DEMO_MODEL["id"], defaults={**fields, "price_source": "switchboard", "enabled": True}
        )
        Route.objects.update_or_create(
            model=model, provider=provider, defaults={"upstream_model": "demo", "priority": 0}
        )
        RouterProfile.objects.get_or_create(model=model, defaults=router_profile_defaults(model))
        self.stdout.write("Seeded the demo provider and model 'demo'.")

    def seed_vendors(self, vendor_ids: list[str]) -> None:
        from genai_prices import data

        unknown = set(vendor_ids) - set(VENDORS)
        if unknown:
            self.stderr.write(f"Skipping vendors without an adapter: {', '.join(sorted(unknown))}")
        created = updated = 0
        for vendor in data.providers:
            if vendor.id not in vendor_ids or vendor.id not in VENDORS:
                continue
            name, kind, base_url, env = VENDORS[vendor.id]
            provider, _ = Provider.objects.get_or_create(
                name=name, defaults={"kind": kind, "base_url": base_url, "api_key_env": env}
            )
            has_key = bool(os.environ.get(env))
            for info in vendor.models:
                prices = plain_price(info.prices)
                input_price = per_mtok(getattr(prices, "input_mtok", None))
                output_price = per_mtok(getattr(prices, "output_mtok", None))
                if info.deprecated or input_price is None or output_price is None:
                    continue
                context = info.context_window or 8_192
                values = {
                    "input_price": input_price,
                    "output_price": output_price,
                    "cached_input_price": per_mtok(getattr(prices, "cache_read_mtok", None)),
                    "cache_write_price": per_mtok(getattr(prices, "cache_write_mtok", None)),
                    "cache_write_1h_price": per_mtok(getattr(prices, "cache_write_1h_mtok", None)),
                    "context_length": context,
                    "price_source": f"genai-prices:{vendor.id}",
                }
                model = Model.objects.filter(id=info.id).first()
                if model is None:
                    model = Model.objects.create(
                        id=info.id,
                        title=info.name or info.id,
                        owned_by=vendor.id,
                        max_output_tokens=min(DEFAULT_MAX_OUTPUT, context),
                        enabled=has_key,
                        **values,
                    )
                    created += 1
                elif model.price_source == values["price_source"]:
                    if any(getattr(model, name) != value for name, value in values.items()):
                        # A new updated_at is a new price_version for usage from now on.
                        Model.objects.filter(pk=model.pk).update(
                            **values, updated_at=timezone.now()
                        )
                        updated += 1
                elif model.price_source.startswith("genai-prices"):
                    # Another vendor's model of the same name (Claude on Vertex is listed
                    # under google): its API cannot serve it, nor set its price.
                    continue
                Route.objects.get_or_create(
                    model=model, provider=provider, defaults={"upstream_model": info.id}
                )
                RouterProfile.objects.get_or_create(
                    model=model, defaults=router_profile_defaults(model)
                )
        self.stdout.write(f"Catalog: {created} models added, {updated} prices refreshed.")
