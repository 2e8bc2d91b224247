from __future__ import annotations

from django import template

from billing.money import format_rate, format_usd

register = template.Library()


@register.filter
def usd(micro: int | None) -> str:
    """{{ amount|usd }}: micro-USD as $1.23."""
    return "—" if micro is None else format_usd(micro)


@register.filter
def rate(micro: int | None) -> str:
    """{{ price|rate }}: micro-USD per million tokens as $0.075."""
    return "—" if micro is None else format_rate(micro)
