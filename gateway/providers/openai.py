"""Any OpenAI-compatible server: OpenAI, DeepSeek, Groq, Together, Mistral, vLLM, Ollama…

One that also serves the Responses API (`serves_responses`) takes the Responses door's
requests untranslated (gateway/providers/openai_responses.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx

from gateway.catalog import ProviderInfo
from gateway.providers import openai_responses
from gateway.providers.base import DONE, Adapter, NativeRequest, ProviderError, stream_error


class OpenAIAdapter(Adapter):
    def __init__(self, provider: ProviderInfo, client: httpx.AsyncClient) -> None:
        super().__init__(provider, client)
        self.native_protocol = "responses" if provider.serves_responses else None

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.provider.api_key:
            headers["authorization"] = f"Bearer {self.provider.api_key}"
        return headers

    def _url(self) -> str:
        return f"{self.provider.base_url}/chat/completions"

    async def complete(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        payload = {**body, "model": upstream_model, "stream": False}
        result = await self.post_json(self._url(), payload)
        if not isinstance(result, dict) or not isinstance(result.get("choices"), list):
            raise ProviderError(f"{self.provider.name} sent no choices", retryable=True)
        return result

    async def stream(
        self, body: dict[str, Any], upstream_model: str
    ) -> AsyncIterator[dict[str, Any]]:
        payload = {
            **body,
            "model": upstream_model,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with aclosing(self.stream_events(self._url(), payload)) as chunks:
            async for chunk in chunks:
                if chunk is DONE:
                    return
                if not isinstance(chunk, dict):
                    raise ProviderError(
                        f"{self.provider.name} sent an invalid stream event", retryable=True
                    )
                if "error" in chunk:
                    raise stream_error(chunk["error"], self.provider)
                yield chunk
        raise self.ended_early()

    async def complete_native(self, native: NativeRequest, upstream_model: str) -> dict[str, Any]:
        payload = {**native.body, "model": upstream_model, "stream": False, "store": False}
        url = f"{self.provider.base_url}/responses"
        result = await self.post_json(url, payload, headers=native.headers)
        if not isinstance(result, dict) or not isinstance(result.get("output"), list):
            raise ProviderError(f"{self.provider.name} sent no output", retryable=True)
        if result.get("status") == "failed":
            raise openai_responses.failure(result, self.provider)
        return {**openai_responses.chat_completion(result, upstream_model), "native": result}

    async def stream_native(
        self, native: NativeRequest, upstream_model: str
    ) -> AsyncIterator[dict[str, Any]]:
        """The upstream's events, each carried (under "native") by the canonical chunk it
        became, or by a chunk with an empty delta."""
        payload = {**native.body, "model": upstream_model, "stream": True, "store": False}
        url = f"{self.provider.base_url}/responses"
        state = openai_responses.StreamState(self.provider, upstream_model)
        events = self.stream_events(
            url, payload, headers=native.headers, last=openai_responses.is_last_event
        )
        async with aclosing(events) as upstream:
            async for event in upstream:
                if not isinstance(event, dict):
                    continue
                chunks = state.on_event(event) or [state.chunk({})]
                chunks[0]["native"] = [event]
                for chunk in chunks:
                    yield chunk
                if state.ended:
                    return
        raise self.ended_early()
