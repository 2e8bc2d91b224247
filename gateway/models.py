from __future__ import annotations

import os

from django.db import models
from django.utils import timezone


class Provider(models.Model):
    """An upstream API: its protocol (kind), where it lives and how to authenticate."""

    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible"
        ANTHROPIC = "anthropic", "Anthropic Messages"
        GEMINI = "gemini", "Google Gemini"
        DEMO = "demo", "Built-in demo"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    base_url = models.URLField(max_length=500, blank=True)
    api_key = models.CharField(
        max_length=500, blank=True, help_text="Write-only: leave empty to keep the stored key."
    )
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="Name of an environment variable holding the key (wins over the stored key).",
    )
    enabled = models.BooleanField(default=True)
    timeout_seconds = models.PositiveIntegerField(default=120)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def resolve_api_key(self) -> str:
        if self.api_key_env:
            return os.environ.get(self.api_key_env, "")
        return self.api_key


class Model(models.Model):
    """A model customers can call, with its prices in micro-USD per million tokens."""

    id = models.CharField(max_length=200, primary_key=True)
    title = models.CharField(max_length=200, blank=True)
    aliases = models.JSONField(default=list, blank=True)
    owned_by = models.CharField(max_length=100, blank=True)
    context_length = models.PositiveIntegerField(default=8192)
    max_output_tokens = models.PositiveIntegerField(default=4096)
    input_price = models.BigIntegerField(
        null=True, blank=True, help_text="micro-USD per million input tokens; empty = no price"
    )
    output_price = models.BigIntegerField(
        null=True, blank=True, help_text="micro-USD per million output tokens; empty = no price"
    )
    cached_input_price = models.BigIntegerField(
        null=True, blank=True, help_text="micro-USD per million cached input tokens"
    )
    enabled = models.BooleanField(default=True)
    price_source = models.CharField(max_length=100, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.id

    @property
    def is_priced(self) -> bool:
        return self.input_price is not None and self.output_price is not None


class Route(models.Model):
    """One way to serve a model: a provider and the model's name there, by priority."""

    model = models.ForeignKey(Model, models.CASCADE, related_name="routes")
    provider = models.ForeignKey(Provider, models.CASCADE, related_name="routes")
    upstream_model = models.CharField(max_length=200)
    priority = models.PositiveSmallIntegerField(default=0, help_text="Lower is tried first.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["model", "priority", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "provider"], name="route_model_provider_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} → {self.provider.name}:{self.upstream_model}"
