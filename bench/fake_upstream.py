"""A fast fake OpenAI upstream for benchmarks: raw asyncio + httptools on uvloop.

It answers `POST …/chat/completions` and `POST …/responses` (OpenAI's Responses API,
which LiteLLM calls for an OpenAI model on its /v1/responses and /v1/messages doors),
streamed or not, with `--tokens` output tokens (or the request's own limit, where it
sets one), after a configurable time to first token and inter-token delay, and `GET
…/models`. No framework sits between the socket and the answer, so what it costs is
close to nothing next to the gateway under test.

    python bench/fake_upstream.py --port 9100 --tokens 64 --ttft-ms 0 --itl-ms 0
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
import uvloop

# The answer's tokens, in turn: all three bytes long, and not one chunk repeated over and
# over (LiteLLM ends a stream whose last 100 chunks are the same, as a model stuck in a loop).
WORDS = (" hi", " so", " an", " it", " we", " up", " go", " on", " as", " at", " by")


def answer_text(tokens: int) -> str:
    return "".join(WORDS[index % len(WORDS)] for index in range(tokens))


# A request's own output limit is honoured up to this (agent scenarios ask for 300).
MAX_TOKENS = 4_096


@dataclass(frozen=True, slots=True)
class Behaviour:
    tokens: int = 64
    ttft_ms: float = 0.0
    itl_ms: float = 0.0


def _head(status: int, content_type: str, length: int | None) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
    lines = [f"HTTP/1.1 {status} {reason}", f"content-type: {content_type}"]
    lines.append(
        f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    )
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _json(status: int, payload: Any) -> bytes:
    body = orjson.dumps(payload)
    return _head(status, "application/json", len(body)) + body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


class Answers:
    """Pre-rendered answers per (model, tokens): the hot path only joins bytes."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int, int, bool], tuple[bytes, bytes, list[bytes], bytes]] = {}

    def completion(self, model: str, prompt: int, tokens: int) -> bytes:
        return _json(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer_text(tokens)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(prompt, tokens),
            },
        )

    def stream_parts(
        self, model: str, prompt: int, tokens: int, include_usage: bool
    ) -> tuple[bytes, bytes, list[bytes], bytes]:
        """(head, first event, token events, tail): every part already chunk-encoded."""
        key = (model, prompt, tokens, include_usage)
        cached = self._cache.get(key)
        if cached is not None:
            return cached

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        first = _chunk(event({"role": "assistant", "content": ""}))
        pieces = [_chunk(event({"content": WORDS[i % len(WORDS)]})) for i in range(tokens)]
        tail = event({}, "stop")
        if include_usage:
            usage = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": _usage(prompt, tokens),
            }
            tail += b"data: " + orjson.dumps(usage) + b"\n\n"
        tail += b"data: [DONE]\n\n"
        parts = (
            _head(200, "text/event-stream", None),
            first,
            pieces,
            _chunk(tail) + b"0\r\n\r\n",
        )
        if len(self._cache) < 1024:
            self._cache[key] = parts
        return parts


def responses_parts(
    model: str, prompt: int, tokens: int
) -> tuple[tuple[bytes, bytes, list[bytes], bytes], dict[str, Any]]:
    """A Responses API stream in the event order OpenAI sends, chunk-encoded: (head,
    opening events, one `response.output_text.delta` per token, closing events), and
    the completed response (the non-streamed answer)."""
    sequence = iter(range(1_000_000))
    text = answer_text(tokens)

    def event(kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": next(sequence), **fields}
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    response = {
        "id": "resp_fake",
        "object": "response",
        "created_at": 0,
        "status": "in_progress",
        "model": model,
        "output": [],
        "usage": None,
    }
    item = {"id": "msg_fake", "type": "message", "role": "assistant", "status": "in_progress"}
    part = {"type": "output_text", "text": "", "annotations": []}
    opening = (
        event("response.created", response=response)
        + event("response.in_progress", response=response)
        + event("response.output_item.added", output_index=0, item={**item, "content": []})
        + event(
            "response.content_part.added",
            item_id="msg_fake",
            output_index=0,
            content_index=0,
            part=part,
        )
    )
    deltas = [
        _chunk(
            event(
                "response.output_text.delta",
                item_id="msg_fake",
                output_index=0,
                content_index=0,
                delta=WORDS[index % len(WORDS)],
            )
        )
        for index in range(tokens)
    ]
    done_part = {**part, "text": text}
    done_item = {**item, "status": "completed", "content": [done_part]}
    completed = {
        **response,
        "status": "completed",
        "output": [done_item],
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + tokens,
        },
    }
    closing = (
        event(
            "response.output_text.done",
            item_id="msg_fake",
            output_index=0,
            content_index=0,
            text=text,
        )
        + event(
            "response.content_part.done",
            item_id="msg_fake",
            output_index=0,
            content_index=0,
            part=done_part,
        )
        + event("response.output_item.done", output_index=0, item=done_item)
        + event("response.completed", response=completed)
    )
    return (
        _head(200, "text/event-stream", None),
        _chunk(opening),
        deltas,
        _chunk(closing) + b"0\r\n\r\n",
    ), completed


class Connection(asyncio.Protocol):
    """One keep-alive connection; requests are answered in order."""

    def __init__(self, behaviour: Behaviour, answers: Answers) -> None:
        self.behaviour = behaviour
        self.answers = answers
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.queue: list[tuple[bytes, bytes, bytes]] = []
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(_json(400, {"error": {"message": "bad request"}}))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.queue.append((self.parser.get_method(), self.url, b"".join(self.body)))
        self.url, self.body = b"", []
        if not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self.drain())

    async def drain(self) -> None:
        while self.queue and self.transport is not None:
            method, url, body = self.queue.pop(0)
            await self.answer(method, url, body)
        self.busy = False

    async def answer(self, method: bytes, url: bytes, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        path = url.split(b"?", 1)[0]
        if method == b"GET" and path.endswith(b"/models"):
            transport.write(
                _json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
            )
            return
        responses = path.endswith(b"/responses")
        if method != b"POST" or not (responses or path.endswith(b"/chat/completions")):
            transport.write(_json(404, {"error": {"message": "not found"}}))
            return
        try:
            request = orjson.loads(body)
            model = str(request.get("model") or "fake")
        except (orjson.JSONDecodeError, AttributeError):
            transport.write(_json(400, {"error": {"message": "invalid JSON"}}))
            return
        tokens = self.behaviour.tokens
        limit = (
            request.get("max_tokens")
            or request.get("max_completion_tokens")
            or request.get("max_output_tokens")
        )
        if isinstance(limit, int) and limit > 0:
            tokens = min(limit, MAX_TOKENS)
        prompt = max(1, len(body) // 4)
        if self.behaviour.ttft_ms:
            await asyncio.sleep(self.behaviour.ttft_ms / 1000)
        if responses:
            (head, first, events, tail), completed = responses_parts(model, prompt, tokens)
            if not request.get("stream"):
                transport.write(_json(200, completed))
                return
        elif not request.get("stream"):
            if self.behaviour.itl_ms:
                await asyncio.sleep(self.behaviour.itl_ms * tokens / 1000)
            if self.transport is not None:
                self.transport.write(self.answers.completion(model, prompt, tokens))
            return
        else:
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            head, first, events, tail = self.answers.stream_parts(
                model, prompt, tokens, include_usage
            )
        if not self.behaviour.itl_ms:
            transport.write(b"".join((head, first, *events, tail)))
            return
        transport.write(head + first)
        for piece in events:
            await asyncio.sleep(self.behaviour.itl_ms / 1000)
            if self.transport is None:
                return
            self.transport.write(piece)
        if self.transport is not None:
            self.transport.write(tail)


async def serve(host: str, port: int, behaviour: Behaviour) -> None:
    answers = Answers()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(behaviour, answers), host, port, backlog=1024, reuse_address=True
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--tokens", type=int, default=64, help="output tokens per answer")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first token")
    parser.add_argument("--itl-ms", type=float, default=0.0, help="delay between tokens")
    args = parser.parse_args()
    behaviour = Behaviour(tokens=args.tokens, ttft_ms=args.ttft_ms, itl_ms=args.itl_ms)
    started = time.monotonic()
    try:
        uvloop.run(serve(args.host, args.port, behaviour))
    except KeyboardInterrupt:
        print(f"fake upstream stopped after {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
