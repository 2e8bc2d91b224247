"""The usage dashboard's figures, read from the hourly rollups (never the raw rows).

A range is whole days in the user's time zone. Rollups are per UTC hour, so a day in
any zone with a whole-hour offset is exactly 24 (23, 25 across a DST change) hourly
rows. In zones offset by a half or quarter hour (India, Nepal, parts of Australia) each
UTC hour counts toward the local day it starts in: a day there runs from 00:30 (00:45)
to 00:30 the next day, and the page says so.

Percentiles come from the rollups' fixed histograms (billing.models.LATENCY_BOUNDS_MS),
interpolated within a bucket: a p95 of "1,740 ms" is good to the width of its bucket.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from django.db.models import Sum
from django.db.models.functions import TruncDate, TruncHour

from billing.models import (
    LATENCY_BOUNDS_MS,
    LATENCY_BUCKETS,
    TTFT_BUCKETS,
    UsageHourQuerySet,
    UsageRecord,
)
from billing.money import MICRO
from billing.rollups import SUMS

# Models beyond this many are stacked together as "Other" in the spend chart.
CHART_MODELS = 8


def percentile(counts: list[int], q: float) -> float | None:
    """The q-quantile (0-1) of a histogram over LATENCY_BOUNDS_MS, in ms; None when empty.
    Linear within the bucket it falls in; the open last bucket answers its lower bound."""
    total = sum(counts)
    if not total:
        return None
    target = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= target:
            lower = LATENCY_BOUNDS_MS[index - 1] if index else 0
            if index == len(LATENCY_BOUNDS_MS):
                return float(lower)
            upper = LATENCY_BOUNDS_MS[index]
            return lower + (upper - lower) * (target - seen) / count
        seen += count
    return float(LATENCY_BOUNDS_MS[-1])


@dataclass
class Tally:
    """Sums of rollup columns, and what people read off them."""

    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUMS, 0))

    def add(self, row: dict[str, Any]) -> None:
        for name in SUMS:
            self.sums[name] += row[name] or 0

    def __getattr__(self, name: str) -> int:
        try:
            return self.__dict__["sums"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def tokens(self) -> int:
        return self.sums["prompt_tokens"] + self.sums["completion_tokens"]

    def rate(self, name: str) -> float:
        """The share of requests counted in `name` (errors, refused, ...), 0-1."""
        return self.sums[name] / self.sums["requests"] if self.sums["requests"] else 0.0

    @property
    def error_rate(self) -> float:
        return self.rate("errors")

    @property
    def refusal_rate(self) -> float:
        return self.rate("refused")

    @property
    def cancel_rate(self) -> float:
        return self.rate("cancelled")

    @property
    def answered(self) -> int:
        s = self.sums
        return s["requests"] - s["errors"] - s["cancelled"] - s["refused"]

    def _quantile(self, buckets: tuple[str, ...], q: float) -> float | None:
        return percentile([self.sums[name] for name in buckets], q)

    @property
    def latency_p50(self) -> float | None:
        return self._quantile(LATENCY_BUCKETS, 0.5)

    @property
    def latency_p95(self) -> float | None:
        return self._quantile(LATENCY_BUCKETS, 0.95)

    @property
    def ttft_p50(self) -> float | None:
        return self._quantile(TTFT_BUCKETS, 0.5)

    @property
    def ttft_p95(self) -> float | None:
        return self._quantile(TTFT_BUCKETS, 0.95)


@dataclass(frozen=True, slots=True)
class Span:
    """The rollup hours of whole local days [first, last] in `zone`: [start, end) UTC."""

    first: date
    last: date
    zone: tzinfo
    start: datetime
    end: datetime

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def hourly(self) -> bool:
        """One day is charted per hour, longer ranges per day."""
        return self.first == self.last

    @property
    def offset_is_whole_hours(self) -> bool:
        offset = datetime.combine(self.first, datetime.min.time(), self.zone).utcoffset()
        return not offset or offset % timedelta(hours=1) == timedelta(0)


def _first_hour_from(moment: datetime) -> datetime:
    """The first UTC hour that starts at `moment` or later."""
    utc = moment.astimezone(UTC)
    hour = utc.replace(minute=0, second=0, microsecond=0)
    return hour if hour == utc else hour + timedelta(hours=1)


def span(first: date, last: date, zone: tzinfo) -> Span:
    """The hours that make the local days first..last (see the module's docstring)."""
    start = datetime.combine(first, datetime.min.time(), zone)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone)
    return Span(first, last, zone, _first_hour_from(start), _first_hour_from(end))


@dataclass
class Breakdown:
    """One row of a by-model, by-key or by-protocol table."""

    label: str
    tally: Tally
    code: bool = False


@dataclass
class Dashboard:
    span: Span
    total: Tally
    slots: list[tuple[Any, Tally]]
    spend_by_model: dict[str, dict[Any, int]]
    by_model: list[Breakdown]
    by_key: list[Breakdown]
    by_source: list[Breakdown]

    @property
    def is_empty(self) -> bool:
        return not self.total.requests

    def slot_label(self, slot: Any) -> str:
        if self.span.hourly:
            return f"{slot:%H:%M}"
        return f"{slot:%b} {slot.day}"

    def chart_data(self) -> dict[str, Any]:
        """The charts' series (for json_script): money in USD, times in ms."""
        labels = [self.slot_label(slot) for slot, _ in self.slots]
        ranked = [row.label for row in self.by_model]
        shown, rest = ranked[:CHART_MODELS], ranked[CHART_MODELS:]
        spend = [
            {
                "label": model,
                "data": [self.spend_by_model[model].get(slot, 0) / MICRO for slot, _ in self.slots],
            }
            for model in shown
        ]
        if rest:
            spend.append(
                {
                    "label": "Other models",
                    "data": [
                        sum(self.spend_by_model[m].get(slot, 0) for m in rest) / MICRO
                        for slot, _ in self.slots
                    ],
                }
            )

        def series(values: list[float | None]) -> list[float | None]:
            return [None if v is None else round(v) for v in values]

        tallies = [tally for _, tally in self.slots]
        return {
            "labels": labels,
            "spend": spend,
            "requests": [
                {"label": "Answered", "data": [t.answered for t in tallies], "color": "#2451c7"},
                {"label": "Errors", "data": [t.errors for t in tallies], "color": "#b42318"},
                {"label": "Cancelled", "data": [t.cancelled for t in tallies], "color": "#d9730d"},
                {"label": "Refused", "data": [t.refused for t in tallies], "color": "#6d4c41"},
            ],
            "latency": [
                {"label": "Latency p50", "data": series([t.latency_p50 for t in tallies])},
                {"label": "Latency p95", "data": series([t.latency_p95 for t in tallies])},
                {"label": "First token p50", "data": series([t.ttft_p50 for t in tallies])},
                {"label": "First token p95", "data": series([t.ttft_p95 for t in tallies])},
            ],
        }


SOURCE_LABELS = dict(UsageRecord.Source.choices)


def usage_dashboard(
    hours: UsageHourQuerySet, the_span: Span, key_names: dict[int, str]
) -> Dashboard:
    """Totals, a series per day (per hour for one day) and the breakdowns of `hours` (one
    account's rollups, filtered as the page asks) over `the_span`: one query."""
    zone = the_span.zone
    slot_of = TruncHour("hour", tzinfo=zone) if the_span.hourly else TruncDate("hour", tzinfo=zone)
    rows: Any = (
        hours.between(the_span.start, the_span.end)
        .order_by()
        .annotate(slot=slot_of)
        .values("slot", "model", "api_key_id", "source")
        .annotate(**{f"{name}_total": Sum(name) for name in SUMS})
    )
    total = Tally()
    per_slot: dict[Any, Tally] = defaultdict(Tally)
    per_model: dict[str, Tally] = defaultdict(Tally)
    per_key: dict[int, Tally] = defaultdict(Tally)
    per_source: dict[str, Tally] = defaultdict(Tally)
    spend: dict[str, dict[Any, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        sums = {name: row[f"{name}_total"] for name in SUMS}
        slot = _slot_key(row["slot"], the_span)
        for tally in (
            total,
            per_slot[slot],
            per_model[row["model"]],
            per_key[row["api_key_id"]],
            per_source[row["source"]],
        ):
            tally.add(sums)
        spend[row["model"]][slot] += sums["cost_micro_usd"]

    def ranked(tallies: dict[Any, Tally], label: Any, code: bool = False) -> list[Breakdown]:
        found = [Breakdown(label(k), t, code) for k, t in tallies.items()]
        return sorted(found, key=lambda b: (-b.tally.cost_micro_usd, -b.tally.requests, b.label))

    return Dashboard(
        span=the_span,
        total=total,
        slots=[(slot, per_slot.get(slot, Tally())) for slot in _slots(the_span)],
        spend_by_model=spend,
        by_model=ranked(per_model, str, code=True),
        by_key=ranked(per_key, lambda k: key_names.get(k, "No key" if not k else "Deleted key")),
        by_source=ranked(per_source, lambda s: SOURCE_LABELS.get(s, s)),
    )


def _slot_key(value: Any, the_span: Span) -> Any:
    """A slot as _slots() names it: a local date, or a naive local hour (SQLite answers
    text, PostgreSQL aware datetimes)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if the_span.hourly else date.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(the_span.zone)
        return value.replace(tzinfo=None)
    return value


def _slots(the_span: Span) -> list[Any]:
    if the_span.hourly:
        hour = the_span.start
        slots = []
        while hour < the_span.end:
            local = hour.astimezone(the_span.zone)
            slots.append(local.replace(minute=0, tzinfo=None))
            hour += timedelta(hours=1)
        return slots
    return [the_span.first + timedelta(days=n) for n in range(the_span.days)]
