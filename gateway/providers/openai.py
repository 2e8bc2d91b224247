"""Any OpenAI-compatible server: OpenAI, DeepSeek, Groq, Together, Mistral, vLLM, Ollama…"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from gateway.providers.base import (
    Adapter,
    ProviderError,
    error_from_response,
    stream_error,
    transport_error,
)
from gateway.providers.sse import sse_events


class OpenAIAdapter(Adapter):
    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.provider.api_key:
            headers["authorization"] = f"Bearer {self.provider.api_key}"
        return headers

    def _url(self) -> str:
        return f"{self.provider.base_url}/chat/completions"

    async def complete(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        payload = {**body, "model": upstream_model, "stream": False}
        try:
            response = await self.client.post(
                self._url(),
                content=orjson.dumps(payload),
                headers=self._headers(),
                timeout=self.timeout(),
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.provider) from exc
        if response.status_code != 200:
            raise error_from_response(response, self.provider)
        try:
            result = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise ProviderError(f"{self.provider.name} sent invalid JSON", retryable=True) from exc
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
        try:
            async with self.client.stream(
                "POST",
                self._url(),
                content=orjson.dumps(payload),
                headers=self._headers(),
                timeout=self.timeout(),
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise error_from_response(response, self.provider)
                async for _event, data in sse_events(response):
                    if data == "[DONE]":
                        return
                    try:
                        chunk = orjson.loads(data)
                    except orjson.JSONDecodeError as exc:
                        raise ProviderError(
                            f"{self.provider.name} sent an invalid stream event", retryable=True
                        ) from exc
                    if not isinstance(chunk, dict):
                        raise ProviderError(
                            f"{self.provider.name} sent an invalid stream event", retryable=True
                        )
                    if "error" in chunk:
                        raise stream_error(chunk["error"], self.provider)
                    yield chunk
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.provider) from exc
        raise ProviderError(f"{self.provider.name} ended the stream early", retryable=True)
