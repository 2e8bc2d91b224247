"""`/v1/estimate`: what a request would cost, before making it. Public, like the prices.

GET takes token counts; POST takes the chat body (messages, tools, max_tokens) and
counts the prompt itself with the same tokenizer the gateway reserves with. Without
an output budget the estimate is the worst case: the model's output cap.

Nobody pays for an estimate, so it is bounded: ESTIMATE_REQUESTS_PER_MINUTE per client
address, a body of at most ESTIMATE_MAX_BYTES, and the prompt is counted on a thread,
never on the event loop every stream of the worker shares.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from billing.money import credit_unit_json, micro_to_usd, unit_amount
from gateway import calls
from gateway.catalog import ModelInfo
from gateway.errors import invalid
from gateway.ratelimit import address_throttled, address_wait, client_address
from gateway.tokens import count_prompt
from gateway.validation import parse_json, requested_output_tokens
from gateway.views import api_view, json_response, read_body

MAX_TOKENS = 100_000_000


@api_view(("GET", "POST"), key_required=False)
async def estimate(request: HttpRequest) -> HttpResponse:
    """Cost in micro-USD (and USD, and the credit unit) of one request with `input_tokens`
    in and `output_tokens` out on a model: its per-request price plus the tokens'."""
    await _count_the_client(request)
    output: Any
    if request.method == "POST":
        body = parse_json(read_body(request, limit=settings.ESTIMATE_MAX_BYTES))
        name = body.get("model")
        input_tokens = await asyncio.to_thread(_prompt_tokens, body)
        output = requested_output_tokens(body)
        output_param = "max_tokens"
    else:
        name = request.GET.get("model")
        input_tokens = _tokens(request.GET.get("input_tokens", "0"), "input_tokens")
        output = request.GET.get("output_tokens")
        output_param = "output_tokens"
    model = await _priced_model(name)
    output_tokens = model.max_output_tokens if output is None else _tokens(output, output_param)
    cost = model.cost(prompt=input_tokens, completion=output_tokens)
    payload = {
        "object": "estimate",
        "model": model.id,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_price_micro_usd_per_mtok": model.input_price,
        "output_price_micro_usd_per_mtok": model.output_price,
        "request_price_micro_usd": model.request_price,
        "cost_micro_usd": cost,
        "cost_usd": float(micro_to_usd(cost)),
        "cost_units": unit_amount(cost),
        "credit_unit": credit_unit_json(),
    }
    return json_response(payload)


async def _count_the_client(request: HttpRequest) -> None:
    per_minute = settings.ESTIMATE_REQUESTS_PER_MINUTE
    if not per_minute:
        return
    wait = await address_wait(
        scope="estimate", address=client_address(request), per_minute=per_minute, count=True
    )
    if wait:
        raise address_throttled(
            f"Rate limit reached: {per_minute} estimates per minute from your address.", wait
        )


def _tokens(value: Any, param: str) -> int:
    if isinstance(value, bool):
        raise invalid(f"`{param}` must be a whole number of tokens.", param=param)
    try:
        tokens = int(value)
    except (TypeError, ValueError):
        raise invalid(f"`{param}` must be a whole number of tokens.", param=param) from None
    if not 0 <= tokens <= MAX_TOKENS:
        raise invalid(f"`{param}` must be between 0 and {MAX_TOKENS}.", param=param)
    return tokens


def _prompt_tokens(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise invalid("`messages` must be a list of message objects.", param="messages")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise invalid("`tools` must be a list.", param="tools")
    try:
        return count_prompt(messages, tools)
    except (AttributeError, TypeError) as exc:
        raise invalid("`messages` has a malformed message.", param="messages") from exc


async def _priced_model(name: Any) -> ModelInfo:
    if not isinstance(name, str) or not name.strip():
        raise invalid("`model` is required.", param="model")
    return calls.priced_model(await calls.current_catalog(), name)
