"""Integer micro-USD helpers: 1 USD = 1,000,000 micro-USD, never floats in storage.

Money is shown by one rule, everywhere (pages, admin, error messages, JSON `display`
fields): exact to the micro-dollar, never rounded, at least two decimals, and no
trailing zeros past the cents: `$1.00`, `$1,234.50`, `$0.012345`, `$0.000099`. What a
customer sees is what the books hold, so a charge never reads differently on two pages.

An operator may also name a credit unit (`CREDIT_UNIT_NAME`, worth
`CREDIT_UNIT_MICRO_USD`, e.g. "ICO" at 1,000 micro-USD = $0.001): amounts are then shown
in that unit first and in USD beside it (`1,230 ICO ($1.23)`), by the same exact rule.
The books stay in micro-USD; the unit is only a way of showing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from django.conf import settings

MICRO = 1_000_000
PER_MTOK = 1_000_000
# A unit worth a fraction of a micro-dollar cannot be shown exactly; six places is as
# fine as the books.
UNIT_PLACES = Decimal("0.000001")


def usd_to_micro(usd: Decimal | str | int) -> int:
    """Exact conversion of a decimal USD amount, rounding fractions of a micro-dollar up."""
    return int((Decimal(str(usd)) * MICRO).to_integral_value(rounding=ROUND_CEILING))


def micro_to_usd(micro: int) -> Decimal:
    return Decimal(micro) / MICRO


@dataclass(frozen=True, slots=True)
class CreditUnit:
    """The operator's named unit of credit: `name`, worth `micro_usd` micro-USD each."""

    name: str
    micro_usd: int

    def amount(self, micro: int) -> Decimal:
        """`micro` micro-USD in this unit (exact when the unit divides a power of ten)."""
        return (Decimal(micro) / self.micro_usd).quantize(UNIT_PLACES).normalize()

    def format(self, micro: int) -> str:
        """`1,230 ICO`, `0.099 ICO`."""
        amount = self.amount(micro)
        whole, _, fraction = f"{abs(amount):,f}".partition(".")
        number = f"{whole}.{fraction}" if fraction else whole
        return f"{'-' if amount < 0 else ''}{number} {self.name}"


def credit_unit() -> CreditUnit | None:
    """The configured credit unit, or None when money is shown in USD only."""
    name, micro_usd = settings.CREDIT_UNIT_NAME, settings.CREDIT_UNIT_MICRO_USD
    if not name or micro_usd <= 0:
        return None
    return CreditUnit(name, micro_usd)


def format_usd(micro: int) -> str:
    """USD by the one rule: exact, at least cents (`$0.000099`, `$1.20`, `$1,234.50`)."""
    usd = micro_to_usd(micro)
    whole, _, fraction = f"{abs(usd):,.6f}".partition(".")
    return f"{'-' if usd < 0 else ''}${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def format_money(micro: int) -> str:
    """An amount as customers see it: USD, or the credit unit with USD beside it."""
    unit = credit_unit()
    if unit is None:
        return format_usd(micro)
    return f"{unit.format(micro)} ({format_usd(micro)})"


def unit_amount(micro: int | None) -> float | None:
    """`micro` in the credit unit for JSON (None without a unit, or without an amount)."""
    unit = credit_unit()
    if unit is None or micro is None:
        return None
    return float(unit.amount(micro))


def money_json(micro: int) -> dict[str, Any]:
    """An amount in a JSON API: exact integer micro-USD, USD, and the credit unit's amount."""
    return {"micro_usd": micro, "usd": micro / MICRO, "units": unit_amount(micro)}


def credit_unit_json() -> dict[str, Any] | None:
    """The credit unit as JSON APIs describe it (`{"name": "ICO", "micro_usd": 1000}`)."""
    unit = credit_unit()
    return None if unit is None else {"name": unit.name, "micro_usd": unit.micro_usd}


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
