"""A cheap closed-loop load generator for OpenAI chat completions.

Each of `concurrency` virtual users holds one HTTP/1.1 keep-alive connection and sends
the same request again as soon as the previous answer is complete. Raw asyncio
protocols with httptools' C parser on uvloop keep the client's own CPU small, since
it shares the machine with the server it measures. Reports requests per second,
p50/p90/p99 latency, time to first byte of the body (TTFT for streams) and errors.

    python bench/loadgen.py --url http://127.0.0.1:8000/v1/chat/completions \\
        --key sk-… --model bench --stream --concurrency 10 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson
import uvloop


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    path: str
    key: str
    model: str
    stream: bool
    max_tokens: int = 64
    # Agent scenarios: the next body for virtual user N (bench/agent.py's Workload.body),
    # instead of the same small chat request every time; and the bytes only a complete
    # stream of that door contains.
    bodies: Callable[[int], bytes] | None = None
    done_marker: bytes = b"[DONE]"

    @classmethod
    def from_url(cls, url: str, **fields: Any) -> Target:
        parts = urlsplit(url)
        return cls(
            host=parts.hostname or "127.0.0.1", port=parts.port or 80, path=parts.path, **fields
        )

    def request_bytes(self, user: int = 0) -> bytes:
        if self.bodies is not None:
            body = self.bodies(user)
        else:
            body = orjson.dumps(
                {
                    "model": self.model,
                    "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
                    "max_tokens": self.max_tokens,
                    "stream": self.stream,
                }
            )
        head = (
            f"POST {self.path} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.key}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


class Connection(asyncio.Protocol):
    """One keep-alive connection that runs one request at a time."""

    def __init__(self, marker: bytes = b"[DONE]") -> None:
        self.marker = marker
        self.seen = False
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, float | None, bytes]] | None = None
        self.status = 0
        self.first_byte: float | None = None
        self.tail = b""
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed mid-answer"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(exc)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter()
        self.received += len(body)
        window = self.tail + body
        self.seen = self.seen or self.marker in window
        self.tail = window[-64:]

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.status, self.first_byte, self.tail))

    def send(self, request: bytes) -> asyncio.Future[tuple[int, float | None, bytes]]:
        assert self.transport is not None
        self.first_byte, self.tail, self.status, self.seen = None, b"", 0, False
        self.received = 0
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    answer_bytes: int = 0
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_examples) < 3:
            self.error_examples.append(what)


async def _connect(target: Target) -> Connection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: Connection(target.done_marker), target.host, target.port
    )
    return protocol


async def _user(
    target: Target,
    request: bytes,
    deadline: float,
    budget: list[int],
    samples: Samples | None,
    user: int = 0,
) -> None:
    connection: Connection | None = None
    while budget[0] > 0 and time.perf_counter() < deadline:
        budget[0] -= 1
        if target.bodies is not None:
            request = target.request_bytes(user)
        try:
            if connection is None or connection.transport is None:
                connection = await _connect(target)
            started = time.perf_counter()
            status, first_byte, tail = await asyncio.wait_for(connection.send(request), 60)
            ended = time.perf_counter()
        except (OSError, ConnectionError, TimeoutError, httptools.HttpParserError) as exc:
            connection = None
            if samples is not None:
                samples.error(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.01)
            continue
        if samples is None:
            continue
        if status != 200 or (target.stream and not connection.seen):
            samples.error(f"HTTP {status}: {tail!r}")
            continue
        samples.latencies.append(ended - started)
        samples.ttfts.append((first_byte or ended) - started)
        samples.answer_bytes += connection.received
    if connection is not None and connection.transport is not None:
        connection.transport.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run_load(
    target: Target,
    *,
    concurrency: int,
    duration: float,
    max_requests: int = 1_000_000,
    warmup: float = 0.5,
    probe: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Warm up, then measure for `duration` seconds (or `max_requests`, whichever first).

    `probe` is called right before and right after the measured window (the caller reads
    the server's CPU counters there).
    """
    request = b"" if target.bodies is not None else target.request_bytes()
    if warmup > 0:
        until = time.perf_counter() + warmup
        budget = [max(concurrency * 20, 50)]
        await asyncio.gather(
            *(_user(target, request, until, budget, None, user) for user in range(concurrency))
        )
    samples = Samples()
    if probe is not None:
        probe()
    started = time.perf_counter()
    deadline = started + duration
    budget = [max_requests]
    await asyncio.gather(
        *(_user(target, request, deadline, budget, samples, user) for user in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    if probe is not None:
        probe()
    ms = 1000.0
    return {
        "requests": len(samples.latencies),
        "errors": samples.errors,
        "error_examples": samples.error_examples,
        "seconds": round(elapsed, 3),
        "rps": len(samples.latencies) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(samples.latencies, 50) * ms,
        "p90_ms": percentile(samples.latencies, 90) * ms,
        "p99_ms": percentile(samples.latencies, 99) * ms,
        "ttft_p50_ms": percentile(samples.ttfts, 50) * ms,
        "ttft_p90_ms": percentile(samples.ttfts, 90) * ms,
        "ttft_p99_ms": percentile(samples.ttfts, 99) * ms,
        "answer_kb": samples.answer_bytes / 1024 / max(1, len(samples.latencies)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", default="none")
    parser.add_argument("--model", default="bench")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()
    target = Target.from_url(
        args.url, key=args.key, model=args.model, stream=args.stream, max_tokens=args.max_tokens
    )
    result = uvloop.run(
        run_load(
            target,
            concurrency=args.concurrency,
            duration=args.duration,
            max_requests=args.max_requests,
            warmup=args.warmup,
        )
    )
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
