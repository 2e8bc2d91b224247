"""The console's persona and memory forms (the admin has its own, gateway.admin)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.text import slugify

from gateway.catalog import get_catalog
from gateway.models import MAX_FACTS, MAX_MEMORY_CHARS, Persona, clean_facts
from gateway.personas import clean_persona_model

ROUTER_CHOICE = ("auto", "Auto: the smart router picks per request")
MAX_AVATAR_CHARS = 4


def persona_model_choices() -> list[tuple[str, str]]:
    """The router, then the models a persona can answer with: enabled, priced, routed."""
    models = sorted(get_catalog().callable(), key=lambda m: (m.title or m.id).lower())
    return [ROUTER_CHOICE, *((m.id, m.title or m.id) for m in models)]


class PersonaForm(forms.ModelForm):
    """A customer's own persona: its slug is unique among theirs."""

    model = forms.ChoiceField(label="Model", help_text="The model that answers as this persona.")
    slug = forms.SlugField(
        required=False,
        max_length=60,
        help_text='Letters, digits and hyphens; call it as model "persona/&lt;slug&gt;". '
        "Empty: made from the name.",
    )

    class Meta:
        model = Persona
        fields = ["name", "slug", "avatar", "model", "system_prompt"]
        labels = {"system_prompt": "System prompt"}
        help_texts = {
            "avatar": "An emoji or up to two letters. Empty: the name's initials.",
            "system_prompt": "How the persona behaves; what it remembers about you is added "
            "after it.",
        }
        widgets = {"system_prompt": forms.Textarea(attrs={"rows": 6})}

    def __init__(self, *args: Any, owner: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner
        field = self.fields["model"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = persona_model_choices()

    def clean_avatar(self) -> str:
        avatar = self.cleaned_data["avatar"].strip()
        if len(avatar) > MAX_AVATAR_CHARS or any(c.isspace() or c in "<>&\"'" for c in avatar):
            raise forms.ValidationError("Use one emoji or up to two letters.")
        return avatar

    def clean_model(self) -> str:
        return clean_persona_model(self.cleaned_data["model"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        slug = cleaned.get("slug") or slugify(cleaned.get("name") or "")[:60]
        if not slug:
            self.add_error("slug", "Give the persona a slug (letters, digits and hyphens).")
            return cleaned
        taken = Persona.objects.owned_by(self.owner).filter(slug=slug)
        if self.instance.pk:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            self.add_error("slug", f"You already have a persona called persona/{slug}.")
        cleaned["slug"] = slug
        return cleaned

    def save(self, commit: bool = True) -> Persona:
        persona: Persona = super().save(commit=False)
        persona.owner = self.owner
        persona.slug = self.cleaned_data["slug"]
        if commit:
            persona.save()
        return persona


class MemoryForm(forms.Form):
    """The facts a persona keeps about the user, one a line, as the user edits them."""

    facts = forms.CharField(
        required=False,
        max_length=MAX_MEMORY_CHARS,
        label="What it remembers",
        help_text=f"One fact a line, at most {MAX_FACTS}. The persona reads them at the start "
        "of every conversation.",
        widget=forms.Textarea(attrs={"rows": 10}),
    )

    def clean_facts(self) -> str:
        facts = clean_facts(self.cleaned_data["facts"].splitlines())
        if len(facts) > MAX_FACTS:
            raise forms.ValidationError(f"Keep at most {MAX_FACTS} facts ({len(facts)} given).")
        return "\n".join(facts)
