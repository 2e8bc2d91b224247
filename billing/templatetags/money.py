from __future__ import annotations

from django import template

from billing.money import format_money, format_usd

register = template.Library()


@register.filter
def usd(micro: int | None) -> str:
    """{{ amount|usd }}: micro-USD by the one money rule ($1.23, or 1,230 ICO ($1.23))."""
    return "—" if micro is None else format_money(micro)


@register.filter
def dollars(micro: int | None) -> str:
    """{{ price|dollars }}: what is paid in cash (a package's price), in USD only."""
    return "—" if micro is None else format_usd(micro)
