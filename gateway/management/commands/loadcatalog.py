from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from billing.money import usd_to_micro
from gateway.models import Model, Provider, Route

PROVIDER_KINDS = {choice.value for choice in Provider.Kind}


def _price(entry: dict[str, Any], field: str, model_id: str) -> int | None:
    value = entry.get(field)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise CommandError(f"model {model_id}: {field} must be a number >= 0")
    return usd_to_micro(str(value))


class Command(BaseCommand):
    help = "Declare providers, models and routes from a TOML file (see README)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            spec = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CommandError(f"{path}: {exc}") from exc
        with transaction.atomic():
            providers = {p.name: p for p in map(self.load_provider, spec.get("provider", []))}
            models = [self.load_model(m, providers) for m in spec.get("model", [])]
        self.stdout.write(
            f"Loaded {len(providers)} providers and {len(models)} models from {path}."
        )

    def load_provider(self, entry: dict[str, Any]) -> Provider:
        name = entry.get("name")
        kind = entry.get("kind")
        if not name or kind not in PROVIDER_KINDS:
            raise CommandError(
                f"provider {name!r}: needs a name and kind in {sorted(PROVIDER_KINDS)}"
            )
        if "api_key" in entry:
            raise CommandError(
                f"provider {name}: put the key in an environment variable (api_key_env)"
            )
        if entry.get("serves_responses") and kind != Provider.Kind.OPENAI:
            raise CommandError(f"provider {name}: only an openai provider serves_responses")
        provider, _ = Provider.objects.update_or_create(
            name=name,
            defaults={
                "kind": kind,
                "base_url": entry.get("base_url", ""),
                "api_key_env": entry.get("api_key_env", ""),
                "enabled": entry.get("enabled", True),
                "timeout_seconds": entry.get("timeout_seconds", 120),
                "serves_responses": entry.get("serves_responses", False),
            },
        )
        return provider

    def load_model(self, entry: dict[str, Any], providers: dict[str, Provider]) -> Model:
        model_id = entry.get("id")
        if not model_id:
            raise CommandError("every [[model]] needs an id")
        aliases = entry.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise CommandError(f"model {model_id}: aliases must be a list of strings")
        model, _ = Model.objects.update_or_create(
            id=model_id,
            defaults={
                "title": entry.get("title", ""),
                "aliases": aliases,
                "owned_by": entry.get("owned_by", ""),
                "context_length": entry.get("context_length", 8192),
                "max_output_tokens": entry.get("max_output_tokens", 4096),
                "input_price": _price(entry, "input_usd_per_mtok", model_id),
                "output_price": _price(entry, "output_usd_per_mtok", model_id),
                "cached_input_price": _price(entry, "cached_input_usd_per_mtok", model_id),
                "cache_write_price": _price(entry, "cache_write_usd_per_mtok", model_id),
                "cache_write_1h_price": _price(entry, "cache_write_1h_usd_per_mtok", model_id),
                "request_price": _price(entry, "request_usd", model_id) or 0,
                "enabled": entry.get("enabled", True),
                "price_source": "loadcatalog",
            },
        )
        model.routes.all().delete()
        for priority, route in enumerate(entry.get("routes", [])):
            provider_name = route.get("provider")
            provider = (
                providers.get(provider_name) or Provider.objects.filter(name=provider_name).first()
            )
            if provider is None:
                raise CommandError(f"model {model_id}: unknown provider {provider_name!r}")
            Route.objects.create(
                model=model,
                provider=provider,
                upstream_model=route.get("upstream_model", model_id),
                priority=priority,
            )
        return model
