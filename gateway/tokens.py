"""Offline token counting with tiktoken's o200k_base, shipped in gateway/data/.

The encoding file is loaded from the repository, never downloaded. Counts follow
OpenAI's chat accounting (a few tokens of framing per message); for other vendors'
tokenizers they are an estimate, which is why reservations add a margin.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import orjson
import tiktoken
from tiktoken.load import load_tiktoken_bpe

ENCODING_FILE = Path(__file__).parent / "data" / "o200k_base.tiktoken"
ENCODING_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
TOKENS_PER_IMAGE = 1_105
# Agents resend the same system prompt, tools and history on every turn: the count of
# each text but the shortest is kept, by a hash of the text and its length (at most
# REMEMBERED_TEXTS of them, about 2 MB), so a turn tokenizes only what is new.
REMEMBERED_TEXT_CHARS = 64
REMEMBERED_TEXTS = 16_384
_remembered: OrderedDict[int, int] = OrderedDict()
_remembered_lock = threading.Lock()


@functools.cache
def encoding() -> tiktoken.Encoding:
    ranks = load_tiktoken_bpe(str(ENCODING_FILE), expected_hash=ENCODING_SHA256)
    loaded = tiktoken.Encoding(
        name="o200k_base",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    )
    # The Rust core keeps its own tables; the Python dict of 200k ranks (about 27 MB in
    # every worker) is only read to pickle the encoding, which nothing here does. It is
    # tiktoken's private attribute: pyproject.toml keeps tiktoken within the 0.14 series
    # and tests/gateway/test_tokens.py checks that nothing else reads it.
    loaded._mergeable_ranks = {}
    del ranks
    _give_freed_memory_back()
    return loaded


def _give_freed_memory_back() -> None:
    """Building the encoding frees ~200k small Python objects; glibc keeps their pages
    unless asked to return them (measured: about 4.5 MB less RSS per worker)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return  # not glibc: nothing to do
    trim(0)


# Short texts (roles, names) are counted so often that their counts are kept too, in a
# table emptied when it fills (SHORT_TEXTS of them).
SHORT_TEXTS = 4_096
_short: dict[str, int] = {}
# How many characters a prompt may ask to tokenize (texts not seen before) while the
# event loop waits: about 2 ms of tiktoken. Past that the count goes to a thread.
IN_LOOP_CHARS = 64 * 1024


class _TooMuchNewText(Exception):
    """A prompt to count holds more text not seen before than its budget."""


def count_text(text: str) -> int:
    return _count_text(text, None)


def _count_text(text: str, budget: list[int] | None) -> int:
    if not text:
        return 0
    if len(text) < REMEMBERED_TEXT_CHARS:
        short = _short.get(text)
        if short is None:
            if len(_short) >= SHORT_TEXTS:
                _short.clear()
            short = _short[text] = len(encoding().encode_ordinary(text))
        return short
    key = hash((len(text), text))
    with _remembered_lock:
        known = _remembered.get(key)
        if known is not None:
            _remembered.move_to_end(key)
            return known
    if budget is not None:
        budget[0] -= len(text)
        if budget[0] < 0:
            raise _TooMuchNewText
    counted = len(encoding().encode_ordinary(text))
    with _remembered_lock:
        _remembered[key] = counted
        if len(_remembered) > REMEMBERED_TEXTS:
            _remembered.popitem(last=False)
    return counted


def _count_content(content: Any, budget: list[int] | None) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return _count_text(content, budget)
    total = 0
    for part in content:
        kind = part.get("type")
        if kind == "text":
            total += _count_text(part.get("text", ""), budget)
        elif kind in {"image_url", "input_image", "image"}:
            total += TOKENS_PER_IMAGE
        else:
            total += _count_text(orjson.dumps(part).decode(), budget)
    return total


def count_prompt(messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
    """Tokens the prompt will take, by OpenAI's chat accounting."""
    return _count_prompt(messages, tools, None)


async def count_prompt_async(messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
    """count_prompt() for a request: on the event loop while it has at most IN_LOOP_CHARS
    of new text to tokenize (an agent's growing conversation is all known but its last
    turn), on a thread beyond that, so that a long new prompt never stalls the loop."""
    try:
        return _count_prompt(messages, tools, [IN_LOOP_CHARS])
    except _TooMuchNewText:
        return await asyncio.to_thread(count_prompt, messages, tools)


def _count_prompt(
    messages: list[dict[str, Any]], tools: list[Any] | None, budget: list[int] | None
) -> int:
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE + _count_text(message.get("role", ""), budget)
        total += _count_content(message.get("content"), budget)
        if message.get("name"):
            total += 1 + _count_text(message["name"], budget)
        if message.get("tool_calls"):
            total += _count_text(orjson.dumps(message["tool_calls"]).decode(), budget)
    if tools:
        total += _count_text(orjson.dumps(tools).decode(), budget)
    return total
