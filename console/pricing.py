"""Rows of the public pricing page: search and sort over the catalog snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SORTS = {
    "model": lambda row: (row.title.casefold(), row.id),
    "input": lambda row: (row.input_price is None, row.input_price or 0, row.id),
    "output": lambda row: (row.output_price is None, row.output_price or 0, row.id),
    "cache_read": lambda row: (
        row.cached_input_price is None,
        row.cached_input_price or 0,
        row.id,
    ),
    "request": lambda row: (row.request_price, row.id),
    "context": lambda row: (row.context_length, row.id),
    "max_output": lambda row: (row.max_output_tokens, row.id),
    "providers": lambda row: (row.providers, row.id),
}
DEFAULT_SORT = "model"


@dataclass(frozen=True, slots=True)
class PricingRow:
    id: str
    title: str
    owned_by: str
    input_price: int | None
    output_price: int | None
    cached_input_price: int | None
    cache_write_price: int | None
    cache_write_1h_price: int | None
    request_price: int
    context_length: int
    max_output_tokens: int
    providers: int
    search_text: str


def pricing_rows(
    models: list[Any], *, query: str = "", sort: str = DEFAULT_SORT, descending: bool = False
) -> list[PricingRow]:
    """Enabled catalog models (gateway ModelInfo) as rows; prices already carry the markup."""
    rows = []
    for m in models:
        providers = sorted({route.provider.name for route in m.routes})
        rows.append(
            PricingRow(
                id=m.id,
                title=m.title or m.id,
                owned_by=m.owned_by,
                input_price=m.input_price,
                output_price=m.output_price,
                cached_input_price=m.cached_input_price,
                cache_write_price=m.cache_write_price,
                cache_write_1h_price=m.cache_write_1h_price,
                request_price=m.request_price,
                context_length=m.context_length,
                max_output_tokens=m.max_output_tokens,
                providers=len(providers),
                search_text=" ".join([m.id, m.title, m.owned_by, *m.aliases, *providers]),
            )
        )
    terms = query.casefold().split()
    if terms:
        rows = [r for r in rows if all(t in r.search_text.casefold() for t in terms)]
    rows.sort(key=SORTS.get(sort, SORTS[DEFAULT_SORT]), reverse=descending)
    return rows
