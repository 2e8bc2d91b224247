"""Server-side SVG geometry for the daily-spend bar chart (no scripts, no CDN)."""

from __future__ import annotations

from dataclasses import dataclass

from billing.models import DaySpend
from billing.money import format_money

WIDTH = 400
HEIGHT = 140
AXIS = 18  # room under the bars for day labels
TOP = 6  # headroom above the tallest bar


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    title: str
    show_label: bool
    label_x: float
    anchor: str


@dataclass(frozen=True, slots=True)
class SpendChart:
    bars: list[Bar]
    width: int
    height: int
    baseline: int
    peak_label: str
    total_micro_usd: int
    days: list[DaySpend]

    @property
    def is_empty(self) -> bool:
        return self.total_micro_usd == 0


def spend_chart(days: list[DaySpend]) -> SpendChart:
    """Bars scaled to the busiest day; every seventh day (and the last) gets a label."""
    peak = max((d.spent_micro_usd for d in days), default=0)
    plot = HEIGHT - AXIS
    room = plot - TOP
    slot = WIDTH / max(len(days), 1)
    bars = []
    for index, day in enumerate(days):
        height = round(room * day.spent_micro_usd / peak, 1) if peak else 0
        if day.spent_micro_usd and height < 2:
            height = 2  # a cent's worth still shows
        bars.append(
            Bar(
                x=round(index * slot + slot * 0.15, 1),
                y=round(plot - height, 1),
                width=round(slot * 0.7, 1),
                height=height,
                label=f"{day.day:%b} {day.day.day}",
                title=(
                    f"{day.day:%a %b} {day.day.day}: {format_money(day.spent_micro_usd)}, "
                    f"{day.requests} request{'s' if day.requests != 1 else ''}"
                ),
                show_label=(len(days) - 1 - index) % 7 == 0,
                label_x=round(
                    (index + 1) * slot if index == len(days) - 1 else (index + 0.5) * slot, 1
                ),
                anchor="end" if index == len(days) - 1 else "middle",
            )
        )
    return SpendChart(
        bars=bars,
        width=WIDTH,
        height=HEIGHT,
        baseline=plot,
        peak_label=format_money(peak),
        total_micro_usd=sum(d.spent_micro_usd for d in days),
        days=days,
    )
