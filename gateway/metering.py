"""What a call used: the text the upstream generated, and its usage checked against it.

Upstream usage is checked, not trusted. Usage that is missing, malformed, or zero while
text was delivered is replaced by our own count (tiktoken over what we saw); usage far
above what was relayed is kept, flagged `usage_suspect`, and the charge stays capped at
the hold by the ledger. The flags go onto the usage record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.providers.base import usage_dict
from gateway.tokens import PromptSize, count_text

# Reported output beyond this many times what we saw (plus slack) is suspect: hidden
# reasoning is reported apart (completion_tokens_details.reasoning_tokens) and excluded.
SUSPECT_OUTPUT_RATIO = 2
SUSPECT_OUTPUT_SLACK = 64
# Other vendors' tokenizers count differently from o200k, and images are estimated.
SUSPECT_PROMPT_RATIO = 2
SUSPECT_PROMPT_SLACK = 1024


@dataclass(frozen=True, slots=True)
class Metered:
    """The usage a call is billed for (OpenAI's usage object) and what was doubtful."""

    usage: dict[str, Any]
    flags: tuple[str, ...] = ()
    # Requests billed: 1 once an upstream was sent the call (so it pays the per-request
    # price exactly when it pays for its prompt, cancelled before the first token too).
    requests: int = 1

    @property
    def prompt_tokens(self) -> int:
        return int(self.usage["prompt_tokens"])

    @property
    def completion_tokens(self) -> int:
        return int(self.usage["completion_tokens"])

    @property
    def cached_tokens(self) -> int:
        return int(self.usage["prompt_tokens_details"]["cached_tokens"])

    @property
    def cache_write_tokens(self) -> int:
        return int(self.usage["prompt_tokens_details"].get("cache_write_tokens", 0))

    @property
    def cache_write_1h_tokens(self) -> int:
        return int(self.usage["prompt_tokens_details"].get("cache_write_1h_tokens", 0))

    def kinds(self) -> tuple[str, ...]:
        """The kinds of token used (the line items of the cost)."""
        written_1h = self.cache_write_1h_tokens
        counts = {
            "input": self.prompt_tokens - self.cached_tokens - self.cache_write_tokens,
            "cache_read": self.cached_tokens,
            "cache_write": self.cache_write_tokens - written_1h,
            "cache_write_1h": written_1h,
            "output": self.completion_tokens,
        }
        used = tuple(kind for kind, tokens in counts.items() if tokens > 0)
        return ("request", *used) if self.requests else used


NOTHING = Metered(usage_dict(0, 0), requests=0)


def chunk_text(chunk: dict[str, Any]) -> Iterable[str]:
    """The generated text in one stream chunk: content, reasoning and tool-call parts."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        for name in ("content", "reasoning_content", "refusal"):
            if isinstance(delta.get(name), str):
                yield delta[name]
        for tool_call in delta.get("tool_calls") or ():
            function = tool_call.get("function") or {}
            yield function.get("name") or ""
            yield function.get("arguments") or ""


def has_content(chunk: dict[str, Any]) -> bool:
    """Whether a chunk carries more than the assistant's role: text, a tool call, a
    finish reason or the usage. A route that fails before such a chunk can still fall
    back, as nothing worth keeping has been seen."""
    if chunk.get("usage"):
        return True
    for choice in chunk.get("choices") or ():
        if choice.get("finish_reason"):
            return True
        delta = choice.get("delta") or {}
        if delta.get("tool_calls") or delta.get("function_call"):
            return True
        if any(delta.get(name) for name in ("content", "reasoning_content", "refusal")):
            return True
    return False


def completion_text(result: dict[str, Any]) -> str:
    """The generated text of a non-streamed completion, for our own count."""
    parts: list[str] = []
    for choice in result.get("choices") or ():
        message = choice.get("message") or {}
        parts.append(message.get("content") or "")
        # Reasoning is generated (and billed as output) like the text; streams count it too.
        if isinstance(message.get("reasoning_content"), str):
            parts.append(message["reasoning_content"])
        for tool_call in message.get("tool_calls") or ():
            parts.append(orjson.dumps(tool_call.get("function", {})).decode())
    return "".join(parts)


def _count(value: Any) -> int | None:
    """A token count as reported, or None when it is not a non-negative integer."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _reported(raw: Any) -> tuple[int, int, int, int, int, int] | None:
    """(prompt, completion, cached, cache written, of it for an hour, hidden reasoning)
    as reported, or None if malformed."""
    if not isinstance(raw, dict):
        return None
    prompt_details = raw.get("prompt_tokens_details") or {}
    output_details = raw.get("completion_tokens_details") or {}
    if not isinstance(prompt_details, dict) or not isinstance(output_details, dict):
        return None
    counts = (
        _count(raw.get("prompt_tokens")),
        _count(raw.get("completion_tokens")),
        _count(prompt_details.get("cached_tokens", 0)),
        _count(prompt_details.get("cache_write_tokens", 0)),
        _count(prompt_details.get("cache_write_1h_tokens", 0)),
        _count(output_details.get("reasoning_tokens", 0)),
    )
    if any(count is None for count in counts):
        return None
    return counts  # type: ignore[return-value]


def needs_prompt_count(raw: Any) -> bool:
    """Whether billing `raw` takes our own count of the prompt: the upstream reported no
    usable prompt tokens."""
    reported = _reported(raw)
    return reported is None or reported[0] == 0


def checked_usage(raw: Any, *, prompt: PromptSize, generated: str) -> Metered:
    """The usage to bill: the upstream's when it is plausible, else our own count (of
    the prompt, counted here if it was known only by its bound)."""
    own_completion = count_text(generated) if generated else 0
    if raw is None:
        return Metered(usage_dict(prompt.count(), own_completion), ("usage_counted",))
    reported = _reported(raw)
    if reported is None:
        return Metered(usage_dict(prompt.count(), own_completion), ("usage_replaced",))
    reported_prompt, completion, cached, written, written_1h, hidden = reported
    flags: list[str] = []
    if reported_prompt == 0:
        reported_prompt, cached, written, written_1h = prompt.count(), 0, 0, 0
        flags.append("usage_replaced")
    if completion == 0 and own_completion > 0:
        completion = own_completion
        flags.append("usage_replaced")
    visible = completion - min(hidden, completion)
    if (
        visible > SUSPECT_OUTPUT_RATIO * own_completion + SUSPECT_OUTPUT_SLACK
        # Against the count, or (not to count for this alone) the bound above it.
        or reported_prompt > SUSPECT_PROMPT_RATIO * prompt.bound + SUSPECT_PROMPT_SLACK
    ):
        flags.append("usage_suspect")
    cached = min(cached, reported_prompt)
    written = min(written, reported_prompt - cached)
    usage = usage_dict(reported_prompt, completion, cached, written, min(written_1h, written))
    if hidden:
        usage["completion_tokens_details"] = {"reasoning_tokens": hidden}
    return Metered(usage, tuple(dict.fromkeys(flags)))


def cost_fields(charge: int) -> dict[str, Any]:
    """The cost of a call as the usage object carries it: USD and integer micro-USD."""
    return {"cost": charge / 1_000_000, "cost_micro_usd": charge}
