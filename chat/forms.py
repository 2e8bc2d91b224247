from __future__ import annotations

from typing import Any, cast

from django import forms

from chat.models import MAX_MESSAGE_CHARS
from gateway.catalog import get_catalog


class QuestionForm(forms.Form):
    """What the chat page's form sends over the socket."""

    message = forms.CharField(
        max_length=MAX_MESSAGE_CHARS,
        error_messages={
            "required": "Type a message first.",
            "max_length": f"Messages can be at most {MAX_MESSAGE_CHARS:,} characters.",
        },
    )
    # RAG: ground the answer in the user's documents (gateway/documents/grounding.py).
    use_documents = forms.BooleanField(required=False, label="Use my documents")


def model_choices() -> list[tuple[str, str]]:
    """Models the chat can use: enabled, priced and routed, by title."""
    models = get_catalog().callable()
    return [
        (m.id, m.title or m.id) for m in sorted(models, key=lambda m: (m.title or m.id).lower())
    ]


class NewConversationForm(forms.Form):
    model = forms.ChoiceField(label="Model")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.ChoiceField, self.fields["model"])
        field.choices = model_choices()
        ids = [value for value, _label in field.choices]
        field.initial = "demo" if "demo" in ids else (ids[0] if ids else None)
