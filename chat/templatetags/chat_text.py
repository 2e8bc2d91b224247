from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from chat.markdown import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    """{{ message.content|markdown }}: escaped, a small Markdown subset, sanitised."""
    return render_markdown(text or "")
