"""A fake LLM upstream: a real HTTP server on 127.0.0.1 speaking four protocols.

`FakeUpstream` runs uvicorn with a small raw ASGI app in a daemon thread and answers:

- OpenAI: `POST /v1/chat/completions` (JSON, or SSE `data: {chunk}` … `data: [DONE]`
  with a final usage chunk when `stream_options.include_usage` is set);
- Anthropic Messages: `POST /v1/messages` (JSON, or the message_start /
  content_block_* / message_delta / message_stop events); it requires `x-api-key`,
  `anthropic-version`, `max_tokens`, and only user/assistant/system roles in `messages`;
- OpenAI Responses: `POST /v1/responses` (JSON, or the response.created …
  response.completed events, each with its sequence_number); it requires
  `store: false` and no `previous_response_id`;
- Gemini: `POST /v1beta/models/{model}:generateContent` and
  `:streamGenerateContent?alt=sse`; it requires `x-goog-api-key`.

Use the fixtures from tests/conftest.py: `fake_upstream` (reset for each test) is a
FakeUpstream whose `url` is e.g. `http://127.0.0.1:41234`, so an OpenAI or Anthropic
provider's base_url is `fake.url + "/v1"` and a Gemini one's `fake.url + "/v1beta"`.

Scripting, per upstream model name (the body's `model`, or the model in the Gemini
path), one behaviour consumed per request, `Ok()` once the queue is empty:

    fake.script("model-a", Fail(500), Ok(text="second try"))
    fake.script("model-b", Stall(2.0), Cut(after_chunks=3))

- `Ok(text=None, tool_calls=None, delay=0.0, usage=True, prompt_tokens=None,
  completion_tokens=None, cached_tokens=0, cache_creation_tokens=0,
  cache_creation_1h_tokens=0,
  reasoning_tokens=0, finish_reason=None)`: a normal answer. `text=None` means
  `default_text(model)` (no text when tool_calls are given); `tool_calls` is a list of
  (name, arguments JSON); `delay` is slept before every streamed event but the first
  (once, before the answer, when not streaming); `usage=False` reports no usage at all;
  `finish_reason` is OpenAI's word ("stop", "length", "tool_calls", "content_filter"),
  translated for each protocol, and any other word is sent verbatim. `stop_sequence`
  says the answer ended on that stop sequence (OpenAI: vLLM's `stop_reason` on the
  choice; Anthropic: `stop_reason: "stop_sequence"`). `reasoning_text` comes
  first, one token a piece: OpenAI as `reasoning_content` (as DeepSeek sends it),
  Anthropic as a thinking block with a signature; Gemini ignores it.
- `Fail(status=500, retry_after=None, message=...)`: the protocol's error object with
  that status (and a Retry-After header when given).
- `Stall(seconds, after_chunks=None)`: sends nothing for `seconds` (with
  `after_chunks=N`: the headers and N stream events first), then answers normally.
- `Cut(after_chunks=1)`: sends N stream events, then drops the connection without the
  closing events (not streaming: half of the JSON body, then drops it).
- `ErrorEvent(after_chunks=1, message=...)`: sends N stream events, then the
  protocol's in-stream error event and ends the stream (not streaming: a 500).
- `Linger(seconds)`: sends the whole stream, then keeps its body open `seconds` (or
  until the client leaves) before ending it (not streaming: a normal answer).

Token counts are deterministic: the text is streamed in pieces (`pieces(text)`: words
with their trailing spaces), one piece per event and one token each; a tool call costs
one token plus one per 8-character fragment of its arguments. Prompt tokens are
`prompt_tokens_for(...)`: characters of all text in the messages and system // 4 + 1.
`cached_tokens` and `cache_creation_tokens` are parts of `prompt_tokens` (Anthropic's
input_tokens is what is left), and `cache_creation_1h_tokens` the part of the cache
writes Anthropic's `cache_creation` reports as 1-hour ones; `reasoning_tokens` are part
of `completion_tokens`.
With `response_format` json_object/json_schema (OpenAI) or `responseMimeType`
application/json (Gemini) the text is `{"answer": <text>}`.

Records: `fake.requests` (RecordedRequest: protocol, path, query, headers with
lower-case names, json, model), `fake.requests_for(model)`, `fake.disconnects` (requests
the client abandoned before the answer was complete, e.g. a stream it stopped reading),
`fake.wait_for_disconnects(n)` (they are noticed asynchronously), `fake.connections`
(TCP connections accepted), and `fake.reset()`.

The three wire formats live in tests/fakes/wire.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tests.fakes.wire import (
    Answer,
    Call,
    Protocol,
    Reject,
    fragments,
    pieces,
    prompt_tokens_for,
    protocol_for,
)

__all__ = [
    "Behaviour",
    "Cut",
    "ErrorEvent",
    "Fail",
    "FakeUpstream",
    "Linger",
    "Ok",
    "RecordedRequest",
    "Stall",
    "default_text",
    "fragments",
    "pieces",
    "prompt_tokens_for",
]

# --- behaviours --------------------------------------------------------------------


@dataclass(frozen=True)
class Ok:
    text: str | None = None
    tool_calls: Sequence[tuple[str, str]] | None = None
    delay: float = 0.0
    usage: bool = True
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_creation_1h_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str | None = None
    stop_sequence: str | None = None
    reasoning_text: str | None = None


@dataclass(frozen=True)
class Fail:
    status: int = 500
    retry_after: float | None = None
    message: str = "the fake upstream failed on purpose"


@dataclass(frozen=True)
class Stall:
    seconds: float
    after_chunks: int | None = None


@dataclass(frozen=True)
class Cut:
    after_chunks: int = 1


@dataclass(frozen=True)
class ErrorEvent:
    after_chunks: int = 1
    message: str = "the fake upstream broke mid-stream"


@dataclass(frozen=True)
class Linger:
    seconds: float


Behaviour = Ok | Fail | Stall | Cut | ErrorEvent | Linger


@dataclass
class RecordedRequest:
    protocol: str
    path: str
    query: str
    headers: dict[str, str]
    json: Any
    model: str | None


# --- deterministic answers ---------------------------------------------------------


def default_text(model: str) -> str:
    return f"Hello from {model}. This answer is deterministic."


def _answer(call: Call, ok: Ok, serial: int) -> Answer:
    calls = list(ok.tool_calls or [])
    text = ok.text if ok.text is not None else ("" if calls else default_text(call.model))
    if call.json_mode:
        text = orjson.dumps({"answer": text}).decode()
    completion = len(pieces(text)) + sum(1 + len(fragments(args)) for _, args in calls)
    completion += len(pieces(ok.reasoning_text or ""))
    return Answer(
        model=call.model,
        text=text,
        tool_calls=calls,
        finish=ok.finish_reason or ("tool_calls" if calls else "stop"),
        usage=ok.usage,
        prompt=ok.prompt_tokens if ok.prompt_tokens is not None else call.prompt,
        completion=ok.completion_tokens if ok.completion_tokens is not None else completion,
        cached=ok.cached_tokens,
        cache_creation=ok.cache_creation_tokens,
        cache_creation_1h=ok.cache_creation_1h_tokens,
        reasoning=ok.reasoning_tokens,
        stop_sequence=ok.stop_sequence,
        reasoning_text=ok.reasoning_text or "",
        delay=ok.delay,
        serial=serial,
    )


# --- the server --------------------------------------------------------------------


class _CutConnection(Exception):
    """Raised after the response started: uvicorn then drops the connection."""


class _HideCuts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _CutConnection))


_hide_cuts = _HideCuts()


def _counting_protocol(count: Callable[[], None]) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol (the one it picks itself), calling `count` for every
    connection it accepts."""

    class CountingProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            count()
            super().connection_made(transport)

    return CountingProtocol


class _Exchange:
    """One request's response side, with a watcher that notices the client leaving."""

    def __init__(self, receive: Callable[[], Any], send: Callable[[dict[str, Any]], Any]) -> None:
        self._send = send
        self.gone = asyncio.Event()
        self._watcher = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Callable[[], Any]) -> None:
        # The body has been read: the next message can only be http.disconnect.
        await receive()
        self.gone.set()

    async def pause(self, seconds: float) -> bool:
        """Wait `seconds`; True if the client left meanwhile."""
        if seconds > 0:
            try:
                await asyncio.wait_for(self.gone.wait(), seconds)
            except TimeoutError:
                return False
        return self.gone.is_set()

    async def start(
        self, status: int, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        headers = [(b"content-type", content_type.encode())]
        headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, data: bytes, more: bool = True) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def json(
        self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None
    ) -> None:
        data = orjson.dumps(payload)
        await self.start(
            status, "application/json", {"content-length": str(len(data)), **(extra or {})}
        )
        await self.write(data, more=False)

    def close(self) -> None:
        self._watcher.cancel()


class FakeUpstream:
    """The fake upstream server; see the module docstring for how to script it."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        self.connections = 0
        self._scripts: dict[str, deque[Behaviour]] = {}
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self._generation = 0
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=0,
            interface="asgi3",
            http=_counting_protocol(self._connected),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        logging.getLogger("uvicorn.error").addFilter(_hide_cuts)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-upstream", daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def script(self, model: str, *behaviours: Behaviour) -> None:
        """Queue behaviours for requests naming `model`, one consumed per request."""
        with self._lock:
            self._scripts.setdefault(model, deque()).extend(behaviours)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests = []
            self.disconnects = 0
            self.connections = 0
            self._generation += 1

    def requests_for(self, model: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.model == model]

    def wait_for_disconnects(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait (bounded) until at least `count` abandoned requests have been noticed."""
        deadline = time.monotonic() + timeout
        while self.disconnects < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.disconnects >= count

    def _next(self, model: str) -> Behaviour:
        with self._lock:
            queue = self._scripts.get(model)
            return queue.popleft() if queue else Ok()

    def _connected(self) -> None:
        with self._lock:
            self.connections += 1

    def _abandoned(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self.disconnects += 1

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        exchange = _Exchange(receive, send)
        try:
            await self._respond(scope, body, exchange)
        finally:
            exchange.close()

    async def _respond(self, scope: dict[str, Any], raw: bytes, exchange: _Exchange) -> None:
        generation = self._generation
        path, query = scope["path"], scope["query_string"].decode()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        protocol = protocol_for(scope["method"], path)
        if protocol is None:
            await exchange.json(404, {"error": {"message": f"no route for {path}"}})
            return
        try:
            call = protocol.parse(path, query, headers, body)
        except Reject as reject:
            model = body.get("model") if isinstance(body, dict) else None
            self.requests.append(RecordedRequest(protocol.name, path, query, headers, body, model))
            await exchange.json(reject.status, protocol.error(reject.status, reject.message))
            return
        self.requests.append(RecordedRequest(protocol.name, path, query, headers, body, call.model))
        behaviour = self._next(call.model)
        if isinstance(behaviour, Fail) or (isinstance(behaviour, ErrorEvent) and not call.stream):
            status = behaviour.status if isinstance(behaviour, Fail) else 500
            extra = {}
            if isinstance(behaviour, Fail) and behaviour.retry_after is not None:
                extra["retry-after"] = f"{behaviour.retry_after:g}"
            await exchange.json(status, protocol.error(status, behaviour.message), extra)
            return
        answer = _answer(call, behaviour if isinstance(behaviour, Ok) else Ok(), next(self._serial))
        if call.stream:
            finished = await self._stream(exchange, protocol, call, answer, behaviour)
        else:
            finished = await self._complete(exchange, protocol, answer, behaviour)
        if not finished:
            self._abandoned(generation)

    async def _complete(
        self, exchange: _Exchange, protocol: Protocol, answer: Answer, behaviour: Behaviour
    ) -> bool:
        wait = behaviour.seconds if isinstance(behaviour, Stall) else answer.delay
        if await exchange.pause(wait):
            return False
        data = orjson.dumps(protocol.completion(answer))
        if isinstance(behaviour, Cut):
            await exchange.start(200, "application/json", {"content-length": str(len(data))})
            await exchange.write(data[: len(data) // 2])
            raise _CutConnection
        await exchange.start(200, "application/json", {"content-length": str(len(data))})
        await exchange.write(data, more=False)
        return True

    async def _stream(
        self,
        exchange: _Exchange,
        protocol: Protocol,
        call: Call,
        answer: Answer,
        behaviour: Behaviour,
    ) -> bool:
        stall = behaviour if isinstance(behaviour, Stall) else None
        if stall is not None and stall.after_chunks is None and await exchange.pause(stall.seconds):
            return False
        events = protocol.events(answer, call)
        await exchange.start(200, "text/event-stream", {"cache-control": "no-cache"})
        for index in range(len(events) + 1):
            if isinstance(behaviour, Cut) and index == behaviour.after_chunks:
                raise _CutConnection
            if isinstance(behaviour, ErrorEvent) and index == behaviour.after_chunks:
                await exchange.write(protocol.error_event(behaviour.message), more=False)
                return True
            if index == len(events):
                break
            if (
                stall is not None
                and index == stall.after_chunks
                and await exchange.pause(stall.seconds)
            ):
                return False
            if await exchange.pause(answer.delay if index else 0):
                return False
            await exchange.write(events[index])
        if isinstance(behaviour, Linger) and await exchange.pause(behaviour.seconds):
            return True  # the client had the whole answer
        await exchange.write(b"", more=False)
        return True
