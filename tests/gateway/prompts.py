"""Prompts for the tests of the byte bound (gateway.tokens.PromptSize): new text, and
its count and bound worked out without keeping counts.

The live server runs in the tests' process, so a count kept here would have the gateway
know a prompt before it arrives: count_unkept() tokenizes the contents without keeping
their counts.
"""

from __future__ import annotations

import secrets
from typing import Any

from gateway.tokens import count_prompt, encoding

WORDS = ["the", "gateway", "holds", "credit", "for", "every", "request", "it", "relays"]


def fresh_text(chars: int) -> str:
    """Text of `chars` characters that nothing has counted before: words and random hex,
    which o200k counts at about three characters a token, so the fake upstream's usage
    (four) stays within the hold for the count."""
    parts, length = [secrets.token_hex(8)], 16
    while length < chars:
        parts.append(WORDS[len(parts) % len(WORDS)] if len(parts) % 2 else secrets.token_hex(3))
        length += len(parts[-1]) + 1
    return " ".join(parts)[:chars]


def _framing(messages: list[dict[str, Any]]) -> int:
    """The counted tokens of the messages with empty contents (keeping the roles' counts,
    so that a bound's framing is exact)."""
    return count_prompt([{**message, "content": ""} for message in messages])


def count_unkept(messages: list[dict[str, Any]]) -> int:
    """count_prompt(messages), its contents' counts not kept."""
    return _framing(messages) + sum(len(encoding().encode_ordinary(m["content"])) for m in messages)


def bound_of(messages: list[dict[str, Any]]) -> int:
    """The prompt's bound: its framing counted, its contents by their UTF-8 length."""
    return _framing(messages) + sum(len(m["content"].encode()) for m in messages)
