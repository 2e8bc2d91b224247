"""Front doors: each speaks one client protocol and translates it at the edge.

A door turns its protocol's request into the canonical OpenAI chat body, runs it through
`gateway.calls` (the one call lifecycle: hold, route, relay, settle), and turns the
canonical answer, chunks and errors back into its protocol. Helpers shared by doors
live here; each door is one module (`gateway/doors/messages.py`: Anthropic Messages,
`gateway/doors/responses.py`: OpenAI Responses).
"""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpRequest

from gateway.validation import parse_json
from gateway.views import read_body


def read_json(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object, within MAX_REQUEST_BYTES (413 beyond, 400 if not JSON)."""
    return parse_json(read_body(request))


def sse_event(name: str, payload: dict[str, Any]) -> bytes:
    """One named server-sent event, as the Anthropic and Responses streams send them."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
