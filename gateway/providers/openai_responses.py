"""OpenAI's Responses API as an upstream, for the Responses door's native requests.

A provider that serves the Responses API (`Provider.serves_responses`) gets a Responses
request from the Responses door (NativeRequest "responses") as it came, at
`{base_url}/responses`, with `store: false` (Switchboard keeps nothing upstream either).
What comes back is read into the chat shapes every adapter answers in, so the call is
metered, limited and billed as any other: `chat_completion()` for a Response object, and
`StreamState` for the stream's events, each of which the door then relays as the
upstream said it (it rides under "native").
"""

from __future__ import annotations

import time
from typing import Any

from gateway.catalog import ProviderInfo
from gateway.providers import envelopes
from gateway.providers.base import ProviderError, masked, usage_dict

# A failed Response's error codes that another route might not share.
RETRYABLE_CODES = {"server_error", "rate_limit_exceeded", "vector_store_timeout"}
TEXT_DELTAS = {"response.output_text.delta", "response.refusal.delta"}
REASONING_DELTAS = {"response.reasoning_summary_text.delta", "response.reasoning_text.delta"}


def chat_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's chat usage for a Responses usage object (input includes the cached
    tokens and output the reasoning tokens, in both)."""
    input_details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    result = usage_dict(
        int(usage.get("input_tokens") or 0),
        int(usage.get("output_tokens") or 0),
        int(input_details.get("cached_tokens") or 0),
    )
    result["completion_tokens_details"] = {
        "reasoning_tokens": int(output_details.get("reasoning_tokens") or 0)
    }
    return result


def _finish_reason(response: dict[str, Any], called_tools: bool) -> str:
    reason = (response.get("incomplete_details") or {}).get("reason")
    if reason == "max_output_tokens":
        return "length"
    if reason == "content_filter":
        return "content_filter"
    return "tool_calls" if called_tools else "stop"


def failure(response: dict[str, Any], provider: ProviderInfo) -> ProviderError:
    """The ProviderError for a Response that failed (`status: failed`, or the stream's
    `response.failed` event)."""
    error = response.get("error") or {}
    code = str(error.get("code") or "server_error")
    text = masked(str(error.get("message") or "the response failed"), provider)
    return ProviderError(
        f"{provider.name} failed: {text}",
        status=400 if code == "context_length_exceeded" else 502,
        retryable=code in RETRYABLE_CODES,
        body={"error": {"code": code, "message": text}},
    )


def chat_completion(result: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """A chat.completion from a Response object: its text, function calls and usage;
    reasoning summaries as `reasoning_content`, counted as output when not reported."""
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for item in result.get("output") or ():
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    texts.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    texts.append(part.get("refusal") or "")
        elif kind == "function_call":
            tool_calls.append(
                envelopes.tool_call(
                    item.get("call_id") or item.get("id") or "",
                    item.get("name") or "",
                    item.get("arguments") or "",
                )
            )
        elif kind == "reasoning":
            reasoning += [s.get("text") or "" for s in item.get("summary") or ()]
    message = envelopes.assistant_message("".join(texts), tool_calls)
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    usage = result.get("usage")
    return envelopes.completion(
        id=str(result.get("id") or ""),
        created=int(result.get("created_at") or time.time()),
        model=result.get("model") or upstream_model,
        message=message,
        finish_reason=_finish_reason(result, bool(tool_calls)),
        usage=chat_usage(usage) if isinstance(usage, dict) else None,
    )


LAST_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def is_last_event(event: Any) -> bool:
    """Whether a Responses stream event is the stream's last."""
    return isinstance(event, dict) and event.get("type") in LAST_EVENTS


class StreamState(envelopes.ChunkStream):
    """Turns Responses stream events into chat.completion.chunk dicts."""

    def __init__(self, provider: ProviderInfo, upstream_model: str) -> None:
        super().__init__(upstream_model)
        self.provider = provider
        self.tool_index: dict[str, int] = {}
        self.ended = False

    def on_event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks one event becomes (often none: the door relays it all the same);
        `response.completed` (or `.incomplete`) ends the stream with its usage."""
        kind = event.get("type")
        delta = event.get("delta")
        if kind in TEXT_DELTAS and isinstance(delta, str) and delta:
            return [self.chunk({"content": delta})]
        if kind in REASONING_DELTAS and isinstance(delta, str) and delta:
            return [self.chunk({"reasoning_content": delta})]
        if kind == "response.function_call_arguments.delta" and isinstance(delta, str):
            index = self.tool_index.get(str(event.get("item_id")))
            if index is None or not delta:
                return []
            return [self.chunk({"tool_calls": [envelopes.tool_call_arguments(index, delta)]})]
        if kind == "response.output_item.added":
            return self._item_added(event.get("item") or {})
        if kind == "response.created":
            response = event.get("response") or {}
            self.id = str(response.get("id") or "")
            self.model = response.get("model") or self.model
        elif kind in ("response.completed", "response.incomplete"):
            return self._ended(event.get("response") or {})
        elif kind == "response.failed":
            raise failure(event.get("response") or {}, self.provider)
        elif kind == "error":
            raise failure({"error": event}, self.provider)
        return []

    def _item_added(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        if item.get("type") != "function_call":
            return []
        index = self.tool_index[str(item.get("id"))] = len(self.tool_index)
        start = envelopes.tool_call_start(
            index, item.get("call_id") or str(item.get("id")), item.get("name") or ""
        )
        chunks = [self.chunk({"tool_calls": [start]})]
        if item.get("arguments"):
            arguments = envelopes.tool_call_arguments(index, item["arguments"])
            chunks.append(self.chunk({"tool_calls": [arguments]}))
        return chunks

    def _ended(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        self.ended = True
        chunks = [self.finish_chunk(_finish_reason(response, bool(self.tool_index)))]
        usage = response.get("usage")
        if isinstance(usage, dict):
            chunks.append(self.usage_chunk(chat_usage(usage)))
        return chunks
