"""The adapter registry: provider kind → dotted path of its Adapter class."""

from __future__ import annotations

from functools import cache

import httpx
from django.utils.module_loading import import_string

from gateway.catalog import ProviderInfo
from gateway.providers.base import Adapter

ADAPTERS = {
    "openai": "gateway.providers.openai.OpenAIAdapter",
    "anthropic": "gateway.providers.anthropic.AnthropicAdapter",
    "gemini": "gateway.providers.gemini.GeminiAdapter",
    "demo": "gateway.providers.demo.DemoAdapter",
}


@cache
def adapter_class(kind: str) -> type[Adapter]:
    return import_string(ADAPTERS[kind])


def get_adapter(provider: ProviderInfo, client: httpx.AsyncClient) -> Adapter:
    return adapter_class(provider.kind)(provider, client)
