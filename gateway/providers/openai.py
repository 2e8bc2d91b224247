"""Any OpenAI-compatible server: OpenAI, DeepSeek, Groq, Together, Mistral, vLLM, Ollama…"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from gateway.providers.base import DONE, Adapter, ProviderError, stream_error


class OpenAIAdapter(Adapter):
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
