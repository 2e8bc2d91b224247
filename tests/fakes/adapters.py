"""Helpers for driving provider adapters directly against the fake upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.catalog import ProviderInfo
from tests.fakes.upstream import FakeUpstream

API_PATHS = {"openai": "/v1", "anthropic": "/v1", "gemini": "/v1beta"}


def provider_for(fake: FakeUpstream, kind: str, timeout_seconds: int = 1) -> ProviderInfo:
    """A ProviderInfo of `kind` whose base_url points at the fake upstream."""
    return ProviderInfo(
        id=1,
        name=f"{kind}-fake",
        kind=kind,
        base_url=fake.url + API_PATHS[kind],
        api_key="k",
        timeout_seconds=timeout_seconds,
    )


async def collect(chunks: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every chunk of an adapter's stream (the stream is bounded by the fake's script)."""
    return [chunk async for chunk in chunks]


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def streamed_tool_calls(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool-call deltas folded the way the OpenAI SDK folds them."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(delta["index"], {"id": None, "name": None, "arguments": ""})
                call["id"] = delta.get("id") or call["id"]
                function = delta.get("function") or {}
                call["name"] = function.get("name") or call["name"]
                call["arguments"] += function.get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


def finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        c["choices"][0]["finish_reason"]
        for c in chunks
        if c["choices"] and c["choices"][0]["finish_reason"]
    ]
