from __future__ import annotations

from django import forms
from django.contrib import admin

from gateway.models import (
    Model,
    Persona,
    PersonaMemory,
    Provider,
    Route,
    RouterProfile,
    RouterRule,
)
from gateway.personas import clean_persona_model


class ProviderForm(forms.ModelForm):
    base_url = forms.URLField(max_length=500, required=False, assume_scheme="https")
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only: leave empty to keep the stored key.",
    )

    class Meta:
        model = Provider
        fields = [
            "name",
            "kind",
            "base_url",
            "api_key",
            "api_key_env",
            "enabled",
            "timeout_seconds",
            "serves_responses",
        ]

    def clean_api_key(self) -> str:
        value = self.cleaned_data.get("api_key", "")
        if not value and self.instance.pk:
            return self.instance.api_key
        return value


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "kind", "base_url", "enabled", "has_key"]
    list_filter = ["kind", "enabled"]

    @admin.display(boolean=True, description="Key set")
    def has_key(self, obj: Provider) -> bool:
        return bool(obj.resolve_api_key())


class RouteInline(admin.TabularInline):
    model = Route
    extra = 1
    fields = ["provider", "upstream_model", "priority", "enabled"]


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "title",
        "enabled",
        "input_price",
        "output_price",
        "cached_input_price",
        "cache_write_price",
        "cache_write_1h_price",
        "request_price",
        "context_length",
    ]
    list_filter = ["enabled", "owned_by"]
    list_editable = ["enabled"]
    search_fields = ["id", "title"]
    inlines = [RouteInline]


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    list_display = ["model", "provider", "upstream_model", "priority", "enabled"]
    list_filter = ["provider", "enabled"]
    search_fields = ["model__id", "upstream_model"]


@admin.register(RouterProfile)
class RouterProfileAdmin(admin.ModelAdmin):
    list_display = ["model", "enabled", "tier", "tools", "vision", "reasoning"]
    list_editable = ["enabled", "tier", "tools", "vision", "reasoning"]
    list_filter = ["enabled", "tier"]
    search_fields = ["model__id", "model__title"]
    autocomplete_fields = ["model"]


@admin.register(RouterRule)
class RouterRuleAdmin(admin.ModelAdmin):
    list_display = ["signal", "min_tier", "enabled"]
    list_editable = ["min_tier", "enabled"]


class PersonaForm(forms.ModelForm):
    class Meta:
        model = Persona
        fields = ["name", "slug", "avatar", "owner", "model", "is_default", "system_prompt"]

    def clean_model(self) -> str:
        return clean_persona_model(self.cleaned_data["model"])


@admin.register(Persona)
class PersonaAdmin(admin.ModelAdmin):
    form = PersonaForm
    list_display = ["name", "slug", "model", "is_public", "is_default", "updated_at"]
    list_filter = ["is_default", ("owner", admin.EmptyFieldListFilter)]
    search_fields = ["name", "slug", "owner__email"]
    prepopulated_fields = {"slug": ["name"]}
    raw_id_fields = ["owner"]

    @admin.display(boolean=True, description="Public")
    def is_public(self, obj: Persona) -> bool:
        return obj.is_public


@admin.register(PersonaMemory)
class PersonaMemoryAdmin(admin.ModelAdmin):
    list_display = ["persona", "user", "updated_at"]
    search_fields = ["persona__slug", "user__email"]
    raw_id_fields = ["user", "persona"]
