"""Offline token counting with tiktoken's o200k_base, shipped in gateway/data/.

The encoding file is loaded from the repository, never downloaded. Counts follow
OpenAI's chat accounting (a few tokens of framing per message); for other vendors'
tokenizers they are an estimate, which is why reservations add a margin.
"""

from __future__ import annotations

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


def count_text(text: str) -> int:
    if not text:
        return 0
    if len(text) < REMEMBERED_TEXT_CHARS:
        return len(encoding().encode_ordinary(text))
    key = hash((len(text), text))
    with _remembered_lock:
        known = _remembered.get(key)
        if known is not None:
            _remembered.move_to_end(key)
            return known
    counted = len(encoding().encode_ordinary(text))
    with _remembered_lock:
        _remembered[key] = counted
        if len(_remembered) > REMEMBERED_TEXTS:
            _remembered.popitem(last=False)
    return counted


def _count_content(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text(content)
    total = 0
    for part in content:
        kind = part.get("type")
        if kind == "text":
            total += count_text(part.get("text", ""))
        elif kind in {"image_url", "input_image", "image"}:
            total += TOKENS_PER_IMAGE
        else:
            total += count_text(orjson.dumps(part).decode())
    return total


def count_prompt(messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
    """Tokens the prompt will take, by OpenAI's chat accounting."""
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE + count_text(message.get("role", ""))
        total += _count_content(message.get("content"))
        if message.get("name"):
            total += 1 + count_text(message["name"])
        if message.get("tool_calls"):
            total += count_text(orjson.dumps(message["tool_calls"]).decode())
    if tools:
        total += count_text(orjson.dumps(tools).decode())
    return total
