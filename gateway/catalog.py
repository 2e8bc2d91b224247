"""A per-process snapshot of the catalog, so requests never query it.

The snapshot is rebuilt when it is older than CATALOG_CACHE_SECONDS and the shared
version (in the Django cache, Redis in production) has moved, or at once in the
process that saved a change. While Redis is away the version is unknown, so the
snapshot is rebuilt from the database every CATALOG_CACHE_SECONDS: the catalog is in
the database, Redis only says when to look. Without REDIS_URL the Django cache is one
process's memory, so the version is read from the database's CatalogStamp row instead
(one small query every CATALOG_CACHE_SECONDS): a `loadcatalog` run beside `make run`
reaches it. Prices here already carry the operator's markup.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import models

from billing.money import PER_MTOK, token_cost
from gateway import outages

VERSION_KEY = "catalog:version"
UNKNOWN = object()
"""The version while the shared cache is away: never equal to a snapshot's."""


def apply_markup(price: int | None) -> int | None:
    if price is None:
        return None
    return -(-price * (100 + settings.PRICE_MARKUP_PERCENT) // 100)


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    id: int
    name: str
    kind: str
    base_url: str
    api_key: str = field(repr=False)
    timeout_seconds: int
    serves_responses: bool = False


@dataclass(frozen=True, slots=True)
class RouteInfo:
    provider: ProviderInfo
    upstream_model: str
    priority: int


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    title: str
    aliases: tuple[str, ...]
    owned_by: str
    context_length: int
    max_output_tokens: int
    input_price: int | None
    output_price: int | None
    cached_input_price: int | None
    enabled: bool
    price_version: str
    cache_write_price: int | None = None
    cache_write_1h_price: int | None = None
    request_price: int = 0
    routes: tuple[RouteInfo, ...] = field(default=())
    created: int = 0
    """When the model joined the catalog, in Unix seconds (/v1/models' `created`)."""

    @property
    def is_priced(self) -> bool:
        """Priced per token (both input and output), or per request."""
        has_token_prices = self.input_price is not None and self.output_price is not None
        return has_token_prices or self.request_price > 0

    @property
    def cached_price(self) -> int:
        if self.cached_input_price is not None:
            return self.cached_input_price
        return self.input_price or 0

    @property
    def write_price(self) -> int:
        """Per million prompt tokens written to the cache (for 5 minutes)."""
        if self.cache_write_price is not None:
            return self.cache_write_price
        return self.input_price or 0

    @property
    def write_1h_price(self) -> int:
        if self.cache_write_1h_price is not None:
            return self.cache_write_1h_price
        return self.write_price

    def cost(
        self,
        *,
        prompt: int,
        completion: int,
        cached: int = 0,
        cache_write: int = 0,
        cache_write_1h: int = 0,
        requests: int = 1,
    ) -> int:
        """micro-USD for `requests` requests (0 or 1: a call that never reached an
        upstream pays nothing) using these tokens, at this model's prices: the
        per-request price plus the tokens' (cache reads and writes are parts of
        `prompt`, each at its own price)."""
        return requests * self.request_price + token_cost(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            input_price=self.input_price or 0,
            output_price=self.output_price or 0,
            cached_price=self.cached_price,
            cache_write_tokens=cache_write,
            cache_write_price=self.write_price,
            cache_write_1h_tokens=cache_write_1h,
            cache_write_1h_price=self.write_1h_price,
        )

    def unit_prices(self, metered_kinds: tuple[str, ...]) -> dict[str, int]:
        """The prices of what a call used, for its record's line items: per million
        tokens of each kind of token, and `request` (per request) where it has a price."""
        prices = {
            "request": self.request_price,
            "input": self.input_price or 0,
            "output": self.output_price or 0,
            "cache_read": self.cached_price,
            "cache_write": self.write_price,
            "cache_write_1h": self.write_1h_price,
        }
        return {kind: prices[kind] for kind in metered_kinds if kind != "request" or prices[kind]}

    def worst_case_cost(self, *, prompt: int, completion: int) -> int:
        """The most a request with these tokens can cost: its per-request price, and
        every prompt token at the dearest of the input and cache-write prices (a prompt
        may be written to the cache whole)."""
        dearest = max(self.input_price or 0, self.write_price, self.write_1h_price)
        tokens = -(-(prompt * dearest + completion * (self.output_price or 0)) // PER_MTOK)
        return self.request_price + tokens


class Catalog:
    """Models by id, alias and title (case-insensitive), with their routes."""

    def __init__(self, models: list[ModelInfo]) -> None:
        self.models = {m.id: m for m in models}
        self._names: dict[str, ModelInfo] = {}
        for m in models:
            for name in (m.title, *m.aliases):
                if name:
                    self._names.setdefault(name.casefold(), m)
        for m in models:
            self._names[m.id.casefold()] = m

    def resolve(self, name: str) -> ModelInfo | None:
        """The enabled model called `name` (id, alias or display title), if any."""
        model = self.models.get(name) or self._names.get(name.strip().casefold())
        if model is None or not model.enabled:
            return None
        return model

    def enabled(self) -> list[ModelInfo]:
        return [m for m in self.models.values() if m.enabled]

    def callable(self) -> list[ModelInfo]:
        """Enabled models that have a price and a route: the ones a request can reach."""
        return [m for m in self.models.values() if m.enabled and m.is_priced and m.routes]

    def all(self) -> list[ModelInfo]:
        return list(self.models.values())


def build_catalog() -> Catalog:
    from gateway.models import Model, Route

    routes: dict[str, list[RouteInfo]] = {}
    for route in Route.objects.filter(enabled=True, provider__enabled=True).select_related(
        "provider"
    ):
        p = route.provider
        info = ProviderInfo(
            id=p.pk,
            name=p.name,
            kind=p.kind,
            base_url=p.base_url.rstrip("/"),
            api_key=p.resolve_api_key(),
            timeout_seconds=p.timeout_seconds,
            serves_responses=p.serves_responses,
        )
        routes.setdefault(route.model_id, []).append(
            RouteInfo(provider=info, upstream_model=route.upstream_model, priority=route.priority)
        )
    models = []
    for m in Model.objects.all():
        models.append(
            ModelInfo(
                id=m.id,
                title=m.title,
                aliases=tuple(m.aliases or ()),
                owned_by=m.owned_by,
                context_length=m.context_length,
                max_output_tokens=m.max_output_tokens,
                input_price=apply_markup(m.input_price),
                output_price=apply_markup(m.output_price),
                cached_input_price=apply_markup(m.cached_input_price),
                cache_write_price=apply_markup(m.cache_write_price),
                cache_write_1h_price=apply_markup(m.cache_write_1h_price),
                request_price=apply_markup(m.request_price) or 0,
                enabled=m.enabled,
                price_version=m.updated_at.strftime("%Y%m%d%H%M%S") if m.updated_at else "",
                routes=tuple(sorted(routes.get(m.id, []), key=lambda r: r.priority)),
                created=int(m.created_at.timestamp()),
            )
        )
    return Catalog(models)


class _Snapshot:
    def __init__(self) -> None:
        self.catalog: Catalog | None = None
        self.version: Any = None
        self.checked_at = 0.0


_snapshot = _Snapshot()


def get_catalog() -> Catalog:
    """The current snapshot (sync: call through sync_to_async from async code)."""
    now = time.monotonic()
    if (
        _snapshot.catalog is not None
        and now - _snapshot.checked_at < settings.CATALOG_CACHE_SECONDS
    ):
        return _snapshot.catalog
    version = _announced_version()
    if _snapshot.catalog is None or version is UNKNOWN or version != _snapshot.version:
        _snapshot.catalog = build_catalog()
        _snapshot.version = version
    _snapshot.checked_at = now
    return _snapshot.catalog


def _announced_version() -> Any:
    """The catalog's version in the shared cache, or UNKNOWN while it is away."""
    if not settings.REDIS_URL:
        return _stamped_version()
    if not outages.may_try(outages.REDIS):
        return UNKNOWN
    try:
        version = cache.get(VERSION_KEY)
    except outages.REDIS_ERRORS as exc:
        outages.note(outages.REDIS, exc)
        return UNKNOWN
    outages.recovered(outages.REDIS)
    return version


def _stamped_version() -> Any:
    """The version in the database, for processes with no shared cache; while the
    database is away the snapshot stays (there is nothing newer to build it from)."""
    from django.db import DatabaseError

    from gateway.models import CatalogStamp

    try:
        return CatalogStamp.objects.values_list("version", flat=True).first()
    except DatabaseError as exc:
        outages.noted(exc)
        return _snapshot.version


def _stamp_version() -> None:
    from gateway.models import CatalogStamp

    if not CatalogStamp.objects.update(version=models.F("version") + 1):
        CatalogStamp.objects.create(version=1)


def model_choices() -> list[tuple[str, str]]:
    """The enabled models as form choices (id, "Title (id)"), for a key's allowlist."""
    models = sorted(get_catalog().enabled(), key=lambda m: m.id)
    return [(m.id, f"{m.title} ({m.id})" if m.title and m.title != m.id else m.id) for m in models]


def catalog_is_fresh() -> bool:
    return (
        _snapshot.catalog is not None
        and time.monotonic() - _snapshot.checked_at < settings.CATALOG_CACHE_SECONDS
    )


def invalidate_catalog() -> None:
    """Drop this process's snapshot and tell the others (through the shared cache, and
    the database's stamp for processes without one)."""
    _snapshot.catalog = None
    if not settings.REDIS_URL:
        _stamp_version()
        return
    try:
        cache.set(VERSION_KEY, time.time_ns(), timeout=None)
    except Exception:
        _snapshot.version = None


def _reset() -> None:
    _snapshot.catalog = None
    _snapshot.version = None
    _snapshot.checked_at = 0.0


from gateway.state import on_reset  # noqa: E402 - state imports this module lazily

on_reset(_reset)
