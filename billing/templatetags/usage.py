from __future__ import annotations

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma

register = template.Library()


@register.filter
def ms(value: float | None) -> str:
    """{{ p95|ms }}: 1,740 ms, or 1.7 s from ten seconds; — when there is nothing."""
    if value is None:
        return "—"
    if value >= 10_000:
        return f"{value / 1000:,.1f} s"
    return f"{intcomma(round(value))} ms"


@register.filter
def percent(share: float | None) -> str:
    """{{ rate|percent }}: a 0-1 share as 2.4% (0% when none, <0.1% when tiny)."""
    if not share:
        return "0%"
    if share < 0.001:
        return "<0.1%"
    return f"{share * 100:.1f}%"
