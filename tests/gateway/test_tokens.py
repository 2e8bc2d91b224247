"""Token counting (gateway.tokens), and the tiktoken internal it relies on.

gateway.tokens empties tiktoken's private Encoding._mergeable_ranks once the encoding
is built (27 MB less per worker, BENCHMARKS.md); the contract tests fail, naming
tiktoken's version, if a release stops keeping the ranks there or starts reading them
for anything but pickling.
"""

from __future__ import annotations

import inspect
import secrets
import threading
from importlib.metadata import version

import pytest
import tiktoken.core
from packaging.specifiers import SpecifierSet

from gateway import tokens
from gateway.tokens import count_prompt, count_text, encoding
from tests.contracts import assert_reads, pinned

TIKTOKEN = "0.14"  # the series gateway/tokens.py was checked against
USER = "gateway/tokens.py (drops Encoding._mergeable_ranks)"


def test_tiktoken_is_pinned_to_the_series_the_tokenizer_was_checked_against():
    requirement = pinned("tiktoken")
    assert requirement.specifier == SpecifierSet(f"~={TIKTOKEN}.0"), (
        f"pyproject.toml requires {requirement}, but {USER} was checked against tiktoken "
        f"{TIKTOKEN}.x only: run this file against the new release, then update TIKTOKEN."
    )
    assert version("tiktoken") in requirement.specifier, (
        f"tiktoken {version('tiktoken')} is installed, pyproject.toml requires {requirement}."
    )


def test_tiktoken_keeps_the_ranks_in_the_attribute_gateway_tokens_empties():
    assert_reads(
        tiktoken.core.Encoding.__init__,
        "self._mergeable_ranks = mergeable_ranks",
        distribution="tiktoken",
        user=USER,
    )
    # Only pickling reads the Python copy; encoding and decoding use the Rust core's.
    assert_reads(
        tiktoken.core.Encoding.__getstate__,
        "self._mergeable_ranks",
        distribution="tiktoken",
        user=USER,
    )
    uses = inspect.getsource(tiktoken.core).count("._mergeable_ranks")
    assert uses == 2, (
        f"tiktoken {version('tiktoken')}: tiktoken.core reads _mergeable_ranks in {uses} "
        f"places, not only in __init__ and __getstate__; check them before {USER}."
    )


def test_the_encoding_counts_without_its_python_copy_of_the_ranks():
    assert encoding()._mergeable_ranks == {}
    assert encoding().encode("hello world") == [24912, 2375]
    assert encoding().decode([24912, 2375]) == "hello world"
    assert count_text("hello world") == 2
    assert count_prompt([{"role": "user", "content": "hello world"}]) == 3 + 3 + 1 + 2


class CountingEncoding:
    """The real encoding, counting the characters it is asked to tokenize."""

    def __init__(self, real):
        self.real = real
        self.chars = 0

    def encode_ordinary(self, text):
        self.chars += len(text)
        return self.real.encode_ordinary(text)


def test_a_long_text_seen_before_is_not_tokenized_again(monkeypatch):
    counting = CountingEncoding(tokens.encoding())
    monkeypatch.setattr(tokens, "encoding", lambda: counting)
    system = "You are a careful coding agent. " * 2_000
    history = [{"role": "system", "content": system}, {"role": "user", "content": "hi"}]

    first = tokens.count_prompt(history)
    after_first = counting.chars
    again = tokens.count_prompt([*history, {"role": "user", "content": "and now?"}])

    assert after_first >= len(system)
    assert counting.chars - after_first < 100, "the system prompt was tokenized twice"
    assert again == first + tokens.count_prompt([{"role": "user", "content": "and now?"}]) - 3
    assert tokens.count_text(system) == len(counting.real.encode_ordinary(system))


def test_texts_of_the_same_length_are_counted_apart():
    one, other = "a" * 300, "b " * 150

    assert tokens.count_text(one) == len(tokens.encoding().encode_ordinary(one))
    assert tokens.count_text(other) == len(tokens.encoding().encode_ordinary(other))
    assert tokens.count_text(one) != tokens.count_text(other)


class ThreadNoting:
    """The real encoding, noting the threads that tokenize."""

    def __init__(self, real):
        self.real = real
        self.threads: set[int] = set()

    def encode_ordinary(self, text):
        self.threads.add(threading.get_ident())
        return self.real.encode_ordinary(text)


async def test_a_prompt_with_little_new_text_is_counted_on_the_event_loop(monkeypatch):
    noting = ThreadNoting(tokens.encoding())
    monkeypatch.setattr(tokens, "encoding", lambda: noting)
    known = "An agent's history, counted once before. " * 3_000
    tokens.count_text(known)
    noting.threads.clear()
    messages = [
        {"role": "system", "content": known},
        {"role": "user", "content": "And a new question, of a few hundred characters. " * 5},
    ]

    counted = await tokens.measure_prompt(messages, exact_chars=0).count_async()

    assert counted == tokens.count_prompt(messages)
    assert noting.threads == {threading.get_ident()}


async def test_a_prompt_with_much_new_text_is_counted_on_a_thread(monkeypatch):
    noting = ThreadNoting(tokens.encoding())
    monkeypatch.setattr(tokens, "encoding", lambda: noting)
    new = [f"Text {n} nobody sent before: " + "words " * 2_000 for n in range(8)]
    assert sum(map(len, new)) > tokens.IN_LOOP_CHARS
    messages = [{"role": "user", "content": text} for text in new]

    counted = await tokens.measure_prompt(messages, exact_chars=0).count_async()

    assert threading.get_ident() not in {t for t in noting.threads if t != threading.get_ident()}
    assert noting.threads - {threading.get_ident()}, (
        "the long new prompt was not counted on a thread"
    )
    assert counted == tokens.count_prompt(messages)


def test_the_counts_of_short_texts_are_kept_in_a_bounded_table(monkeypatch):
    monkeypatch.setattr(tokens, "SHORT_TEXTS", 8)
    tokens._short.clear()

    for n in range(20):
        assert tokens.count_text(f"name {n}") == len(tokens.encoding().encode_ordinary(f"name {n}"))

    assert 0 < len(tokens._short) <= 8


def fresh(label: str, words: int = 2_000) -> str:
    """A text no test has counted before (a random prefix), `words` words long."""
    return f"{label} {secrets.token_hex(8)}: " + "tokens flow through the gateway " * (words // 5)


@pytest.mark.parametrize(
    "text",
    [
        "plain English prose, the way most prompts are written. " * 400,
        "def f(x):\n    return {'a': [x, x * 2]}\n\t# code, tabs and symbols !@#$%^&*()\n" * 300,
        "中文的提示词，每个字符三个字节。日本語のテキストも。한국어도 있습니다. " * 400,
        "emoji 🚀🔥👩‍💻 and accents: café, naïve, Zürich. " * 400,
        "1234567890 " * 2_000 + " " * 5_000 + "\n\n\r\n" * 2_000,
        "".join(chr(c) for c in range(0x20, 0x3000)) * 3,
    ],
    ids=["english", "code", "cjk", "emoji", "digits-and-space", "every-character"],
)
def test_the_bound_is_never_below_the_count(text):
    messages = [
        {"role": "system", "content": f"{secrets.token_hex(8)} {text}"},
        {"role": "user", "content": [{"type": "text", "text": f"{secrets.token_hex(8)} {text}"}]},
    ]
    size = tokens.measure_prompt(messages, [{"type": "function", "name": "f"}])
    assert not size.exact

    bound = size.bound
    counted = size.count()

    assert size.exact and size.counted == counted
    assert counted == tokens.count_prompt(messages, [{"type": "function", "name": "f"}])
    assert counted <= bound
    assert size.bound == counted


def test_a_prompt_with_little_new_text_is_counted_at_once():
    messages = [{"role": "user", "content": fresh("small", 200)}]
    assert len(messages[0]["content"]) <= tokens.EXACT_CHARS

    size = tokens.measure_prompt(messages)

    assert size.exact and size.counted == tokens.count_prompt(messages)


def test_a_prompt_whose_new_text_is_long_is_measured_without_tokenizing_it(monkeypatch):
    known = fresh("known", 3_000)
    tokens.count_text(known)
    new = fresh("new", 4_000)
    tokens.count_prompt([{"role": "system", "content": ""}, {"role": "user"}])
    noting = ThreadNoting(tokens.encoding())
    monkeypatch.setattr(tokens, "encoding", lambda: noting)
    messages = [{"role": "system", "content": known}, {"role": "user", "content": new}]

    size = tokens.measure_prompt(messages)

    assert noting.threads == set()
    assert size.uncounted == [new]
    framing = tokens.count_prompt([{"role": "system", "content": ""}, {"role": "user"}])
    assert size.counted == framing + len(tokens.encoding().encode_ordinary(known))
    assert size.bound == size.counted + len(new.encode())


async def test_fitting_counts_the_longest_texts_first_and_no_more_than_it_needs():
    long, middle, short = fresh("long", 6_000), fresh("middle", 4_000), fresh("short", 3_000)
    messages = [{"role": "user", "content": text} for text in (short, long, middle)]
    size = tokens.measure_prompt(messages)
    limit = size.bound - len(long) // 2

    await size.fit_async(limit)

    assert size.bound <= limit
    assert sorted(size.uncounted) == sorted([short, middle])
    assert tokens._kept_count(long) is not None
    assert tokens._kept_count(middle) is None and tokens._kept_count(short) is None


async def test_fitting_below_what_the_count_can_reach_counts_everything():
    messages = [{"role": "user", "content": fresh("all", 6_000)}]
    size = tokens.measure_prompt(messages)

    await size.fit_async(5)

    assert size.exact and size.bound == size.counted == tokens.count_prompt(messages) > 5


def test_a_prompt_counted_from_two_threads_at_once_is_counted_once():
    """The settlement's count (on a thread) and a hold refresh's (on the loop) may meet;
    tiktoken lets go of the GIL while it tokenizes."""
    for _ in range(5):
        messages = [{"role": "user", "content": fresh(f"text {n}", 3_000)} for n in range(8)]
        fixed, texts = tokens._prompt_parts(messages, None)
        size = tokens.PromptSize(fixed, texts, sum(map(tokens.utf8_length, texts)))
        other = threading.Thread(target=size.count)
        other.start()
        size.count()
        other.join()

        assert size.exact and size.counted == tokens.count_prompt(messages)
