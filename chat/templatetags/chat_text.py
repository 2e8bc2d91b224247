from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString

from chat.markdown import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    """{{ message.content|markdown }}: escaped, a small Markdown subset, sanitised."""
    return render_markdown(text or "")


@register.filter
def price_of(field: Any, model_id: str) -> str:
    """{{ form.model.field|price_of:value }}: the price label of one model choice."""
    return str(getattr(field, "prices", {}).get(model_id, ""))
