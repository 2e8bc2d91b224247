from __future__ import annotations

from django import template

from billing.money import format_usd

register = template.Library()


@register.filter
def usd(micro_usd: int | None) -> str:
    """Integer micro-USD as dollars for display ($1.23)."""
    return format_usd(micro_usd or 0)
