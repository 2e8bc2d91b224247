from __future__ import annotations

from typing import Any, cast

from django import forms

from billing.money import format_money
from chat.models import MAX_MESSAGE_CHARS, TITLE_LENGTH, Conversation
from gateway.catalog import ModelInfo, get_catalog
from gateway.models import Persona
from gateway.persona_forms import ROUTER_CHOICE
from gateway.personas import is_persona_name

NO_PERSONA = ("", "None: talk to the model")
ROUTED_PRICE = "billed at the chosen model's price"


class QuestionForm(forms.Form):
    """What the chat page's form sends over the socket."""

    message = forms.CharField(
        max_length=MAX_MESSAGE_CHARS,
        error_messages={
            "required": "Type a message first.",
            "max_length": (
                f"Messages can be at most {MAX_MESSAGE_CHARS:,} characters "
                "(this one has %(show_value)s)."
            ),
        },
    )
    # RAG: ground the answer in the user's documents (gateway/documents/grounding.py).
    use_documents = forms.BooleanField(required=False, label="Use my documents")


def price_label(model: ModelInfo) -> str:
    """ "$1.00 in / $2.00 out per 1M tokens" (and "+ $0.019 per message" where the model
    has a per-request price): what a model costs, for choosing one."""
    label = (
        f"{format_money(model.input_price or 0)} in / "
        f"{format_money(model.output_price or 0)} out per 1M tokens"
    )
    if model.request_price:
        label += f" + {format_money(model.request_price)} per message"
    return label


def chat_models() -> list[ModelInfo]:
    """Models the chat can use: enabled, priced and routed, by title."""
    return sorted(get_catalog().callable(), key=lambda m: (m.title or m.id).lower())


class ModelChoiceMixin:
    """A `model` field offering the chat's models, their prices beside them."""

    fields: dict[str, forms.Field]

    def _offer_models(self) -> None:
        field = cast(forms.ChoiceField, self.fields["model"])
        models = chat_models()
        field.choices = chat_choices()
        field.prices = {m.id: price_label(m) for m in models}  # type: ignore[attr-defined]
        field.prices[ROUTER_CHOICE[0]] = ROUTED_PRICE  # type: ignore[attr-defined]


def chat_choices() -> list[tuple[str, str]]:
    """The chat's models by title, then the smart router."""
    return [*((m.id, m.title or m.id) for m in chat_models()), ROUTER_CHOICE]


def persona_choices(user: Any) -> list[tuple[str, str]]:
    """The personas the user may talk to (their own and the public ones), by name."""
    personas = Persona.objects.visible_to(user) if user is not None else Persona.objects.none()
    return [NO_PERSONA, *((p.model_name, f"{p.avatar_text} {p.name}") for p in personas)]


class NewConversationForm(ModelChoiceMixin, forms.Form):
    model = forms.ChoiceField(label="Model")
    persona = forms.ChoiceField(
        label="Persona", required=False, help_text="A persona answers with its own model."
    )

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._offer_models()
        ids = [model.id for model in chat_models()]
        self.fields["model"].initial = "demo" if "demo" in ids else (ids[0] if ids else None)
        cast(forms.ChoiceField, self.fields["persona"]).choices = persona_choices(user)
        if is_persona_name(self.initial.get("model") or ""):
            self.initial["persona"] = self.initial.pop("model")

    def conversation_model(self) -> str:
        """What the conversation calls: the persona when one was picked, else the model."""
        return self.cleaned_data["persona"] or self.cleaned_data["model"]


class ConversationSettingsForm(ModelChoiceMixin, forms.ModelForm):
    """The model, system prompt, temperature and answer length of one conversation;
    every later turn is sent with them."""

    model = forms.ChoiceField(label="Model")

    class Meta:
        model = Conversation
        fields = ["model", "system_prompt", "temperature", "max_tokens"]
        labels = {"max_tokens": "Max answer tokens", "system_prompt": "System prompt"}
        widgets = {
            "system_prompt": forms.Textarea(attrs={"rows": 3}),
            "temperature": forms.NumberInput(attrs={"step": "0.1", "min": "0", "max": "2"}),
            "max_tokens": forms.NumberInput(attrs={"min": "1"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._offer_models()
        if is_persona_name(self.instance.model):
            # A persona's conversation may keep its persona (and change the rest).
            field = cast(forms.ChoiceField, self.fields["model"])
            field.choices = [(self.instance.model, "Its persona"), *chat_choices()]
            field.prices[self.instance.model] = "its model's price"  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        model = get_catalog().resolve(cleaned.get("model") or "")
        limit = cleaned.get("max_tokens")
        if model is not None and limit is not None and limit > model.max_output_tokens:
            self.add_error(
                "max_tokens",
                f"{model.title or model.id} writes at most {model.max_output_tokens:,} tokens "
                "per answer.",
            )
        return cleaned


class RenameForm(forms.ModelForm):
    class Meta:
        model = Conversation
        fields = ["title"]
        labels = {"title": "Title"}

    def clean_title(self) -> str:
        title = " ".join(cast(str, self.cleaned_data["title"]).split())[:TITLE_LENGTH]
        if not title:
            raise forms.ValidationError("Give the conversation a title.", code="required")
        return title


class SearchForm(forms.Form):
    q = forms.CharField(label="Search conversations", max_length=200, required=False)
    before = forms.CharField(required=False, max_length=80)
    current = forms.IntegerField(required=False, min_value=1)
