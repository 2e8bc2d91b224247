from __future__ import annotations

from typing import Any, cast

from django import forms

from chat.models import MAX_MESSAGE_CHARS
from gateway.catalog import get_catalog
from gateway.models import Persona
from gateway.persona_forms import ROUTER_CHOICE
from gateway.personas import is_persona_name

NO_PERSONA = ("", "None: talk to the model")


class QuestionForm(forms.Form):
    """What the chat page's form sends over the socket."""

    message = forms.CharField(
        max_length=MAX_MESSAGE_CHARS,
        error_messages={
            "required": "Type a message first.",
            "max_length": f"Messages can be at most {MAX_MESSAGE_CHARS:,} characters.",
        },
    )


def model_choices() -> list[tuple[str, str]]:
    """Models the chat can use: enabled, priced and routed, by title; then the router."""
    models = get_catalog().callable()
    return [
        *((m.id, m.title or m.id) for m in sorted(models, key=lambda m: (m.title or m.id).lower())),
        ROUTER_CHOICE,
    ]


def persona_choices(user: Any) -> list[tuple[str, str]]:
    """The personas the user may talk to (their own and the public ones), by name."""
    personas = Persona.objects.visible_to(user) if user is not None else Persona.objects.none()
    return [NO_PERSONA, *((p.model_name, f"{p.avatar_text} {p.name}") for p in personas)]


class NewConversationForm(forms.Form):
    model = forms.ChoiceField(label="Model")
    persona = forms.ChoiceField(
        label="Persona", required=False, help_text="A persona answers with its own model."
    )

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.ChoiceField, self.fields["model"])
        field.choices = model_choices()
        ids = [value for value, _label in field.choices]
        field.initial = "demo" if "demo" in ids else (ids[0] if ids else None)
        cast(forms.ChoiceField, self.fields["persona"]).choices = persona_choices(user)
        if is_persona_name(self.initial.get("model") or ""):
            self.initial["persona"] = self.initial.pop("model")

    def conversation_model(self) -> str:
        """What the conversation calls: the persona when one was picked, else the model."""
        return self.cleaned_data["persona"] or self.cleaned_data["model"]
