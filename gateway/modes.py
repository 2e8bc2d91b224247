"""Modes: names in a request's `model` field that resolve to a catalog model.

`auto`, `router` and `strap` are the smart router (gateway.router); `lcm` and
`persona/<slug>` are personas with memory (gateway.personas), whose model may itself be
`auto`. `open_call()` asks
`resolve()` before it prices the model, so a mode's call is then validated, held,
routed, billed and settled like any other, at the chosen model's price; the usage
record keeps what was asked (`requested_model`) beside what served it (`model`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway import personas, router
from gateway.auth import KeyInfo
from gateway.catalog import Catalog

if TYPE_CHECKING:
    from gateway.calls import Call

ROUTED_HEADER = "x-routed-model"


@dataclass(slots=True)
class Resolution:
    """What a mode made of a request: the body to call with (its `model` a catalog id)."""

    body: dict[str, Any]
    requested: str
    # A door's native request skips what a mode added to the canonical body.
    keeps_native: bool = True
    # Run once the call is settled (never raises): a persona's memory update.
    on_settled: Callable[[Call, str], None] | None = None


def pop_route_options(body: dict[str, Any], price_header: str | None) -> int | None:
    """The router's price ceiling (micro-USD per million tokens), taken out of the body."""
    return router.route_options(body, price_header)


async def resolve(
    catalog: Catalog, body: dict[str, Any], *, key: KeyInfo, ceiling: int | None
) -> Resolution | None:
    """The resolution of a mode name in `body["model"]`, or None for a plain model name.
    Raises GatewayError when the mode cannot serve the request."""
    requested = body["model"]
    resolution = Resolution(body=body, requested=requested)
    if personas.is_persona_name(requested):
        resolution.body, found = await personas.expand(body, key=key)
        # The persona's prompt is in the canonical body only: a native request lacks it.
        resolution.keeps_native = False
        resolution.on_settled = personas.after_answer(found, key)
    elif not router.is_router_name(requested):
        return None
    if router.is_router_name(resolution.body["model"]):
        chosen = await router.route(catalog, resolution.body, key=key, ceiling=ceiling)
        resolution.body = {**resolution.body, "model": chosen.id}
    return resolution
