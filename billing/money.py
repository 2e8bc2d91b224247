"""Integer micro-USD helpers: 1 USD = 1,000,000 micro-USD, never floats in storage."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

MICRO = 1_000_000
PER_MTOK = 1_000_000


def usd_to_micro(usd: Decimal | str | int) -> int:
    """Exact conversion of a decimal USD amount, rounding fractions of a micro-dollar up."""
    return int((Decimal(str(usd)) * MICRO).to_integral_value(rounding=ROUND_CEILING))


def micro_to_usd(micro: int) -> Decimal:
    return Decimal(micro) / MICRO


def format_usd(micro: int) -> str:
    """$1.23 for display; small amounts keep their precision ($0.000123)."""
    usd = micro_to_usd(micro)
    if usd == 0:
        return "$0.00"
    if abs(usd) >= Decimal("0.01"):
        return f"{'-' if usd < 0 else ''}${abs(usd):,.2f}"
    return f"{'-' if usd < 0 else ''}${abs(usd).normalize():f}"


def token_cost(
    *,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int,
    input_price: int,
    output_price: int,
    cached_price: int,
    cache_write_tokens: int = 0,
    cache_write_price: int = 0,
    cache_write_1h_tokens: int = 0,
    cache_write_1h_price: int = 0,
) -> int:
    """Cost in micro-USD of a request; prices are micro-USD per million tokens.

    Cache reads (`cached_tokens`) and cache writes (`cache_write_tokens`, of which
    `cache_write_1h_tokens` were written for an hour) are parts of `prompt_tokens`
    (OpenAI's convention), each counted once and charged at its own price instead of the
    input price.
    """
    cached = min(cached_tokens, prompt_tokens)
    written = min(cache_write_tokens, prompt_tokens - cached)
    written_1h = min(cache_write_1h_tokens, written)
    plain = prompt_tokens - cached - written
    total = plain * input_price + completion_tokens * output_price + cached * cached_price
    total += (written - written_1h) * cache_write_price + written_1h * cache_write_1h_price
    return -(-total // PER_MTOK)


def format_rate(micro: int) -> str:
    """A price per million tokens: always cents, more digits only where they exist ($0.075)."""
    usd = micro_to_usd(micro)
    whole, _, fraction = f"{abs(usd):,.6f}".rstrip("0").partition(".")
    return f"{'-' if usd < 0 else ''}${whole}.{fraction.ljust(2, '0')}"
