"""`make bench`'s agent prompts (bench/agent.py) and the fake upstream's Responses API.

The agent suite is only worth its numbers if its requests are what an agent sends:
deterministic, of the size asked, valid on each door (checked with the doors' own
translators and the chat validator), growing turn by turn or fresh each time; and if the
bench's fake upstream speaks the Responses API well enough for the official SDK.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from gateway.doors import messages as messages_door
from gateway.doors import responses as responses_door
from gateway.validation import validate_chat
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import agent  # noqa: E402  (bench/ is not a package)


@pytest.fixture(scope="module")
def corpus() -> agent.Corpus:
    return agent.Corpus(13)


def workload(corpus: agent.Corpus, door: str, tokens: int, variation: str) -> agent.Workload:
    ratio = agent.fit(corpus, tokens, 13)
    return agent.Workload(
        corpus,
        door=door,
        tokens=tokens,
        variation=variation,
        seed=13,
        model="bench",
        max_tokens=300,
        chars_per_token=ratio,
    )


def test_same_seed_same_bodies(corpus: agent.Corpus) -> None:
    first = workload(corpus, "chat", 10_000, "growing")
    second = workload(agent.Corpus(13), "chat", 10_000, "growing")
    assert [first.body(0) for _ in range(3)] == [second.body(0) for _ in range(3)]
    other_seed = agent.Workload(
        corpus,
        door="chat",
        tokens=10_000,
        variation="growing",
        seed=14,
        model="bench",
        max_tokens=300,
    )
    assert other_seed.body(0) != second.body(0)


@pytest.mark.parametrize("tokens", [1_000, 60_000])
def test_prompts_have_the_size_asked_and_twelve_tools(corpus: agent.Corpus, tokens: int) -> None:
    work = workload(corpus, "chat", tokens, "fresh")
    bodies = [work.body(0) for _ in range(3)]
    for body in bodies:
        assert abs(agent.prompt_tokens(body) - tokens) / tokens < 0.1
        request = orjson.loads(body)
        assert len(request["tools"]) == 12
        assert request["messages"][0]["role"] == "system"
    assert len(set(bodies)) == 3


def test_growing_session_resends_its_history_and_adds_one_turn(corpus: agent.Corpus) -> None:
    work = workload(corpus, "chat", 60_000, "growing")
    bodies = [work.body(0) for _ in range(work.session_turns + 1)]
    turns = [orjson.loads(body)["messages"] for body in bodies]
    assert len(turns[0]) > 100  # a history of many messages
    for before, after in itertools.pairwise(turns[: work.session_turns]):
        assert after[: len(before)] == before
        assert [m["role"] for m in after[len(before) :]][-2:] == ["assistant", "tool"]
    new_session = turns[work.session_turns]
    assert new_session[1]["content"] != turns[0][1]["content"]
    sizes = [agent.prompt_tokens(body) for body in bodies[:-1]]
    assert min(sizes) > 54_000 and max(sizes) < 66_000


def test_fresh_prompts_share_no_long_text(corpus: agent.Corpus) -> None:
    work = workload(corpus, "chat", 10_000, "fresh")

    def texts(body: bytes) -> set[str]:
        return {m["content"] for m in orjson.loads(body)["messages"] if len(m["content"]) > 200}

    first, second = texts(work.body(0)), texts(work.body(0))
    assert first and second and not first & second


def test_each_door_accepts_its_rendering(corpus: agent.Corpus) -> None:
    chat = orjson.loads(workload(corpus, "chat", 10_000, "growing").body(0))
    validate_chat(chat)
    anthropic = orjson.loads(workload(corpus, "messages", 10_000, "growing").body(0))
    translated = messages_door.to_chat(anthropic)
    validate_chat(translated)
    assert len(translated["messages"]) == len(chat["messages"])
    assert len(translated["tools"]) == 12
    responses = orjson.loads(workload(corpus, "responses", 10_000, "growing").body(0))
    bridged = responses_door.chat_body(responses)
    validate_chat(bridged)
    assert len(bridged["tools"]) == 12
    assert [m["role"] for m in bridged["messages"]][-2:] == ["assistant", "tool"]


@pytest.fixture
def fake_upstream() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "fake_upstream.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("the bench's fake upstream did not start")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_fake_upstream_streams_the_responses_api(fake_upstream: str) -> None:
    client = openai.OpenAI(base_url=fake_upstream, api_key="none", max_retries=0)
    events = list(
        client.responses.create(model="bench", input="hello", max_output_tokens=300, stream=True)
    )
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds.count("response.output_text.delta") == 300
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    completed = events[-1].response
    assert completed.usage is not None and completed.usage.output_tokens == 300
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == completed.output_text and len(text) == 900
    answer = client.responses.create(model="bench", input="hello", max_output_tokens=5)
    assert answer.output_text == " hi so an it we"
