"""Offline token counting with tiktoken's o200k_base, shipped in gateway/data/.

The encoding file is loaded from the repository, never downloaded. Counts follow
OpenAI's chat accounting (a few tokens of framing per message); for other vendors'
tokenizers they are an estimate, which is why reservations add a margin.

A request's prompt is measured with `measure_prompt()`: a PromptSize, counted, or known
by a bound until something needs its count (README, "Counting the prompt").
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
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
# How much new text (not seen before) a prompt may bring for its count to run on the
# event loop; beyond it the new texts are tokenized on a thread, so that the loop is
# never stalled for long. (Measured, tiktoken is also faster there: 8.9 ms instead of
# 12.5 for a fresh 60k-token prompt, BENCHMARKS.md.)
IN_LOOP_CHARS = 64 * 1024


def count_text(text: str) -> int:
    kept = _kept_count(text)
    if kept is not None:
        return kept
    counted = len(encoding().encode_ordinary(text))
    if len(text) < REMEMBERED_TEXT_CHARS:
        if len(_short) >= SHORT_TEXTS:
            _short.clear()
        _short[text] = counted
        return counted
    with _remembered_lock:
        _remembered[hash((len(text), text))] = counted
        if len(_remembered) > REMEMBERED_TEXTS:
            _remembered.popitem(last=False)
    return counted


def _kept_count(text: str) -> int | None:
    """The text's count if it is kept (or the text is empty), else None."""
    if not text:
        return 0
    if len(text) < REMEMBERED_TEXT_CHARS:
        return _short.get(text)
    key = hash((len(text), text))
    with _remembered_lock:
        known = _remembered.get(key)
        if known is not None:
            _remembered.move_to_end(key)
        return known


def _prompt_parts(messages: list[dict[str, Any]], tools: list[Any] | None) -> tuple[int, list[str]]:
    """A prompt as OpenAI's chat accounting counts it: the tokens of its framing and
    images, and the texts to tokenize."""
    fixed = TOKENS_PER_REPLY
    texts: list[str] = []
    for message in messages:
        fixed += TOKENS_PER_MESSAGE
        texts.append(message.get("role", ""))
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif content is not None:
            for part in content:
                kind = part.get("type")
                if kind == "text":
                    texts.append(part.get("text", ""))
                elif kind in {"image_url", "input_image", "image"}:
                    fixed += TOKENS_PER_IMAGE
                else:
                    texts.append(orjson.dumps(part).decode())
        if message.get("name"):
            fixed += 1
            texts.append(message["name"])
        if message.get("tool_calls"):
            texts.append(orjson.dumps(message["tool_calls"]).decode())
    if tools:
        texts.append(orjson.dumps(tools).decode())
    return fixed, texts


def _count_texts(texts: list[str]) -> int:
    return sum(count_text(text) for text in texts)


def count_prompt(messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
    """Tokens the prompt will take, by OpenAI's chat accounting."""
    fixed, texts = _prompt_parts(messages, tools)
    return fixed + _count_texts(texts)


# A prompt that brings at most this much text not seen before is counted at once (about
# half a millisecond); one that brings more is measured by its bound (PromptSize).
EXACT_CHARS = 16 * 1024


def utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


@dataclass(slots=True)
class PromptSize:
    """A prompt's tokens as far as they are known without tokenizing all of it.

    `counted` tokens are known (the framing, the images and the texts whose counts are
    kept or were counted); the texts in `uncounted` are not counted yet, and each takes
    at most its UTF-8 length in tokens (every token of a byte-level BPE, o200k's and
    the other vendors' alike, is at least one byte). So `bound` is never below the
    count, and equals it once nothing is left uncounted (`exact`)."""

    counted: int
    uncounted: list[str] = field(default_factory=list)
    uncounted_bytes: int = 0
    # A settlement's count (on a thread) and a hold refresh's (on the loop) may meet.
    _counting: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def exact(self) -> bool:
        return not self.uncounted

    @property
    def bound(self) -> int:
        return self.counted + self.uncounted_bytes

    def count(self) -> int:
        """The count: the texts left are tokenized here (their counts are kept)."""
        self.fit(-1)
        return self.counted

    async def count_async(self) -> int:
        """count(), as fit_async() runs it."""
        await self.fit_async(-1)
        return self.counted

    def fit(self, limit: int) -> None:
        """Count the uncounted texts, the longest first, until the bound is at most
        `limit` or nothing is left uncounted."""
        with self._counting:
            self.uncounted.sort(key=len)
            while self.uncounted and self.bound > limit:
                text = self.uncounted.pop()
                tokens = count_text(text)
                self.uncounted_bytes -= utf8_length(text)
                self.counted += tokens

    async def fit_async(self, limit: int) -> None:
        """fit(), on a thread when the texts left are longer than IN_LOOP_CHARS (so the
        loop is never stalled for long; tiktoken is also faster there)."""
        if self.bound <= limit:
            return
        if sum(map(len, self.uncounted)) > IN_LOOP_CHARS:
            await asyncio.to_thread(self.fit, limit)
        else:
            self.fit(limit)


def measure_prompt(
    messages: list[dict[str, Any]],
    tools: list[Any] | None = None,
    *,
    exact_chars: int = EXACT_CHARS,
) -> PromptSize:
    """The prompt's size for a request: the kept counts read (on the event loop), the
    texts not seen before counted at once when they are at most `exact_chars` long (an
    agent's growing conversation is all known but its last turn), else left to bound
    the prompt by their length until something needs them counted."""
    counted, texts = _prompt_parts(messages, tools)
    new: list[str] = []
    for text in texts:
        kept = _kept_count(text)
        if kept is None:
            new.append(text)
        else:
            counted += kept
    if sum(map(len, new)) <= exact_chars:
        return PromptSize(counted + _count_texts(new))
    return PromptSize(counted, new, sum(map(utf8_length, new)))
