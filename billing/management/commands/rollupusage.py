from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Max, Min

from billing.models import UsageRecord
from billing.rollups import rebuild


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD)") from exc


class Command(BaseCommand):
    help = (
        "Rebuild the hourly usage rollups of a range of UTC days from the raw usage rows "
        "(after a bulk load, or to repair them). Hours whose raw rows were pruned come "
        "back empty: rebuild only what is still kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", type=_day, help="first UTC day (YYYY-MM-DD)")
        parser.add_argument("--until", type=_day, help="UTC day after the last (YYYY-MM-DD)")
        parser.add_argument("--all", action="store_true", help="every day that has raw usage rows")

    def handle(self, *args: Any, **options: Any) -> None:
        since, until = options["since"], options["until"]
        if options["all"]:
            if since or until:
                raise CommandError("--all takes no --since or --until")
            span = UsageRecord.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
            if span["first"] is None:
                self.stdout.write("No usage rows: nothing to roll up.")
                return
            start = span["first"]
            end = span["last"] + timedelta(hours=1)
        else:
            if since is None or until is None:
                raise CommandError("give --since and --until, or --all")
            if until <= since:
                raise CommandError("--until must be after --since")
            start = datetime.combine(since, datetime.min.time(), UTC)
            end = datetime.combine(until, datetime.min.time(), UTC)
        rows = rebuild(start, end)
        self.stdout.write(
            f"Rolled up {start:%Y-%m-%d %H:00} to {end:%Y-%m-%d %H:00} UTC: {rows} rows."
        )
