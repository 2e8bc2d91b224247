"""The smart router: `model: "auto"` (or `router`, `strap`) picks a catalog model per request.

A request's needs are read from its body: the prompt's size against each model's context
window, tools, images, code and a cue for careful reasoning. The candidates are the
models with an enabled router profile (gateway.models.RouterProfile, edited in the
admin) that the key may call, that fit the prompt, take what the request carries and,
when the client sets a ceiling (`"route": {"max_price_per_mtok": 3}` in the body or an
`X-Route-Max-Price: 3` header, USD per million tokens, compared with the dearer of a
model's input and output prices), cost no more. Router rules (RouterRule) name the
least tier each signal needs; the cheapest candidate of the lowest tier that meets the
need is chosen, or the strongest candidate when none meets it.

`auto` and `router` keep a conversation on one model: a conversation is the key plus
its first system and first user message (clients resend the whole history, so every
turn starts the same way), remembered in the shared cache for
ROUTER_CONVERSATION_SECONDS. A turn goes to the remembered model while it is still a
candidate, and is routed afresh when the conversation outgrows it (a longer prompt
than its window, tools or images it cannot take). `strap` routes every request afresh.

The choice is final before the credit hold, so the call holds and bills the chosen
model's worst case; fallback stays among that model's routes.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import cache

from billing.money import format_usd, usd_to_micro
from gateway import outages
from gateway.auth import KeyInfo
from gateway.catalog import Catalog, ModelInfo
from gateway.errors import GatewayError, invalid
from gateway.state import on_reset
from gateway.sync import db_sync_to_async
from gateway.tokens import measure_prompt
from gateway.validation import requested_output_tokens

log = logging.getLogger(__name__)

STICKY_NAMES = frozenset({"auto", "router"})
NAMES = STICKY_NAMES | {"strap"}
PRICE_HEADER = "X-Route-Max-Price"
# Room a chosen model must leave for an answer when the request sets no max_tokens.
MIN_ANSWER_TOKENS = 256
# Only the end of a long conversation is searched for code and cues.
SCANNED_CHARS = 20_000

CODE = re.compile(
    r"```|^\s*(def |class |import |from \S+ import |#include|function |const |let |SELECT )"
    r"|\b(def|function|fn|func)\s+\w+\s*\(|;\s*$|\{\s*$",
    re.MULTILINE | re.IGNORECASE,
)
REASONING = re.compile(
    r"\b(step[- ]by[- ]step|think (it through|carefully|hard)|reason (through|about)"
    r"|prove|proof|derive|analy[sz]e|trade-?offs?|rigorous(ly)?)\b",
    re.IGNORECASE,
)


def is_router_name(name: str) -> bool:
    return name.strip().casefold() in NAMES


@dataclass(frozen=True, slots=True)
class Profile:
    model_id: str
    tier: int
    tools: bool
    vision: bool
    reasoning: bool


@dataclass(frozen=True, slots=True)
class Config:
    profiles: dict[str, Profile]
    rule_tiers: dict[str, int]


def load_config() -> Config:
    """The enabled router profiles and rules, from the database."""
    from gateway.models import RouterProfile, RouterRule

    profiles = {
        p.model_id: Profile(p.model_id, p.tier, p.tools, p.vision, p.reasoning)
        for p in RouterProfile.objects.filter(enabled=True)
    }
    rules = {r.signal: r.min_tier for r in RouterRule.objects.filter(enabled=True)}
    return Config(profiles, rules)


_load_async = db_sync_to_async(load_config)


@dataclass(slots=True)
class _Known:
    """The configuration last read, and the catalog snapshot it was read for."""

    catalog: Catalog | None = None
    config: Config | None = None


_known = _Known()


async def current_config(catalog: Catalog) -> Config:
    """The router's configuration, read once per catalog snapshot: saving a profile or a
    rule invalidates the catalog (gateway.signals), which brings a new snapshot."""
    if _known.config is not None and _known.catalog is catalog:
        return _known.config
    config = await _load_async()
    _known.catalog, _known.config = catalog, config
    return config


@on_reset
def _reset() -> None:
    _known.catalog = _known.config = None


# --- the client's limits ------------------------------------------------------------


def _price_ceiling(value: Any, param: str) -> int:
    """USD per million tokens → micro-USD per million tokens, or a 400 naming `param`."""
    message = (
        f"{param} must be a price in USD per million tokens: a number from 0, e.g. 2.5 "
        "(compared with the dearer of a model's input and output prices)."
    )
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(message, param, "invalid_route")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise invalid(message, param, "invalid_route") from None
    if not amount.is_finite() or amount < 0 or amount > 1_000_000:
        raise invalid(message, param, "invalid_route")
    return usd_to_micro(amount)


def route_options(body: dict[str, Any], header: str | None) -> int | None:
    """Take the `route` object out of the body (it is the router's, never the upstream's)
    and return the price ceiling it and the header set, the lower of the two, in micro-USD
    per million tokens (None: no ceiling). Any model may carry them; only the router
    reads them."""
    ceilings = []
    route = body.pop("route", None)
    if route is not None:
        if not isinstance(route, dict):
            raise invalid(
                'route must be an object, e.g. {"max_price_per_mtok": 2.5}.',
                "route",
                "invalid_route",
            )
        unknown = sorted(set(route) - {"max_price_per_mtok"})
        if unknown:
            raise invalid(
                f"Unrecognized route option: {', '.join(unknown)} "
                "(route takes max_price_per_mtok).",
                f"route.{unknown[0]}",
                "invalid_route",
            )
        if route.get("max_price_per_mtok") is not None:
            ceilings.append(_price_ceiling(route["max_price_per_mtok"], "route.max_price_per_mtok"))
    if header is not None:
        ceilings.append(_price_ceiling(header, PRICE_HEADER))
    return min(ceilings) if ceilings else None


# --- what the request needs ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Needs:
    prompt_tokens: int
    output_tokens: int | None
    tools: bool
    images: bool
    code: bool
    reasoning: bool

    @property
    def signals(self) -> list[str]:
        named = {
            "code": self.code,
            "reasoning": self.reasoning,
            "tools": self.tools,
            "images": self.images,
        }
        return ["default", *(name for name, present in named.items() if present)]


def message_text(content: Any) -> str:
    """The text of a message's content, a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return ""


def _has_images(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(part, dict) and part.get("type") in {"image_url", "input_image", "image"}
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


async def read_needs(body: dict[str, Any], windows: Iterable[int] = ()) -> Needs:
    """What a (validated) chat body asks of a model. Its prompt is measured as for the
    hold (gateway.tokens.PromptSize) and counted only as far as the model `windows` need
    to tell whether it fits them: the `prompt_tokens` of the Needs is then a bound that
    fits each window exactly when the count does."""
    messages, tools = body["messages"], body.get("tools") or body.get("functions")
    size = measure_prompt(messages, tools)
    answer = requested_output_tokens(body) or MIN_ANSWER_TOKENS
    for window in sorted(set(windows), reverse=True):
        if size.bound + answer > window:
            # (A window that the bound leaves undecided: fitted to it, or counted.)
            await size.fit_async(window - answer)
    prompt = size.bound
    text = "\n".join(message_text(m.get("content")) for m in messages)[-SCANNED_CHARS:]
    last_user = next(
        (message_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    return Needs(
        prompt_tokens=prompt,
        output_tokens=requested_output_tokens(body),
        tools=bool(tools),
        images=_has_images(messages),
        code=bool(CODE.search(text)),
        reasoning=bool(REASONING.search(last_user[-SCANNED_CHARS:])),
    )


# --- the choice ---------------------------------------------------------------------


def dearest_price(model: ModelInfo) -> int:
    return max(model.input_price or 0, model.output_price or 0)


def _unfit_reason(
    model: ModelInfo, profile: Profile, needs: Needs, key: KeyInfo, ceiling: int | None
) -> str | None:
    """Why `model` cannot take this request (a short phrase), or None when it can."""
    if not key.allows_model(model.id):
        return "not allowed for this key"
    if ceiling is not None and dearest_price(model) > ceiling:
        return f"above the price ceiling of {format_usd(ceiling)} per million tokens"
    answer = needs.output_tokens or MIN_ANSWER_TOKENS
    if needs.output_tokens is not None and needs.output_tokens > model.max_output_tokens:
        return f"cannot write {needs.output_tokens} tokens of output"
    if needs.prompt_tokens + answer > model.context_length:
        return f"a context window too small for the {needs.prompt_tokens}-token prompt"
    if needs.tools and not profile.tools:
        return "cannot call tools"
    if needs.images and not profile.vision:
        return "cannot read images"
    return None


def _no_model_fits(reasons: dict[str, list[str]], name: str) -> GatewayError:
    if not reasons:
        detail = "the operator has made no model available to the router"
    else:
        detail = "; ".join(
            f"{', '.join(sorted(ids))}: {reason}" for reason, ids in sorted(reasons.items())
        )
    return GatewayError(
        400,
        f"No model can take this request through '{name}' ({detail}). "
        "Name a model instead, or relax the request's limits.",
        code="no_model_fits",
        param="model",
    )


def choose(
    catalog: Catalog,
    config: Config,
    needs: Needs,
    *,
    key: KeyInfo,
    ceiling: int | None,
    name: str,
    kept: str | None = None,
) -> ModelInfo:
    """The model for this request: `kept` (the conversation's model) while it still fits,
    else the cheapest candidate of the lowest tier the request's signals need."""
    candidates: list[tuple[ModelInfo, Profile]] = []
    reasons: dict[str, list[str]] = {}
    for model in catalog.callable():
        profile = config.profiles.get(model.id)
        if profile is None:
            continue
        reason = _unfit_reason(model, profile, needs, key, ceiling)
        if reason is None:
            candidates.append((model, profile))
        else:
            reasons.setdefault(reason, []).append(model.id)
    if not candidates:
        raise _no_model_fits(reasons, name)
    for model, _profile in candidates:
        if model.id == kept:
            return model
    least = max(config.rule_tiers.get(signal, 0) for signal in needs.signals)
    good = [c for c in candidates if c[1].tier >= least]
    if not good:
        # Nothing strong enough within the limits: the strongest there is.
        return min(candidates, key=lambda c: (-c[1].tier, dearest_price(c[0]), c[0].id))[0]

    def preference(candidate: tuple[ModelInfo, Profile]) -> tuple[int, int, int, str]:
        model, profile = candidate
        unsuited = int(needs.reasoning and not profile.reasoning)
        return (unsuited, profile.tier, dearest_price(model), model.id)

    return min(good, key=preference)[0]


# --- conversations ------------------------------------------------------------------


def conversation_key(key: KeyInfo, messages: list[dict[str, Any]]) -> str | None:
    """The cache key of the conversation these messages belong to: the API key and the
    first system and first user message (None before there is a user message)."""
    first_user = next((m for m in messages if m.get("role") == "user"), None)
    if first_user is None:
        return None
    first_system = next((m for m in messages if m.get("role") in {"system", "developer"}), None)
    seed = orjson.dumps(
        [key.id, first_system and first_system.get("content"), first_user.get("content")]
    )
    return "router:conversation:" + hashlib.sha256(seed).hexdigest()[:40]


async def _recall(cache_key: str) -> str | None:
    if not outages.may_try(outages.REDIS):
        return None
    try:
        model_id = await cache.aget(cache_key)
    except outages.REDIS_ERRORS as exc:
        outages.note(outages.REDIS, exc)
        return None
    outages.recovered(outages.REDIS)  # this may have been the outage's probe
    return model_id


async def _remember(cache_key: str, model_id: str) -> None:
    if not outages.may_try(outages.REDIS):
        return
    try:
        await cache.aset(cache_key, model_id, timeout=settings.ROUTER_CONVERSATION_SECONDS)
    except outages.REDIS_ERRORS as exc:
        outages.note(outages.REDIS, exc)
    else:
        outages.recovered(outages.REDIS)


async def route(
    catalog: Catalog, body: dict[str, Any], *, key: KeyInfo, ceiling: int | None
) -> ModelInfo:
    """The model a router request (`body["model"]` is a router name) goes to."""
    name = body["model"].strip().casefold()
    config = await current_config(catalog)
    windows = [model.context_length for model in catalog.callable() if model.id in config.profiles]
    needs = await read_needs(body, windows)
    cache_key = conversation_key(key, body["messages"]) if name in STICKY_NAMES else None
    kept = await _recall(cache_key) if cache_key else None
    model = choose(catalog, config, needs, key=key, ceiling=ceiling, name=name, kept=kept)
    if cache_key:
        await _remember(cache_key, model.id)
    log.debug("routed %s to %s (needs %s)", name, model.id, needs)
    return model
