from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.retention import prune_usage


class Command(BaseCommand):
    help = (
        "Delete raw usage records older than USAGE_RETENTION_DAYS (or --days), in short "
        "batches; the hourly rollups, and the dashboards, keep their history. Run it daily."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, help="override USAGE_RETENTION_DAYS")
        parser.add_argument("--batch", type=int, default=5000, help="rows per transaction")
        parser.add_argument("--max-batches", type=int, help="stop after this many batches")
        parser.add_argument(
            "--pause", type=float, default=0.0, help="seconds to sleep between batches"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        if days is not None and days < 32:
            raise CommandError("--days must be at least 32: monthly spend caps read a month")
        limit = options["max_batches"]
        if options["batch"] < 1 or (limit is not None and limit < 1):
            raise CommandError("--batch and --max-batches must be at least 1")
        pruned = prune_usage(
            days=days,
            batch=options["batch"],
            max_batches=options["max_batches"],
            pause=options["pause"],
        )
        if pruned.cutoff is None:
            self.stdout.write("USAGE_RETENTION_DAYS is 0: usage records are kept for ever.")
            return
        self.stdout.write(
            f"Deleted {pruned.deleted:,} usage records from before {pruned.cutoff:%Y-%m-%d %H:%M} "
            f"UTC in {pruned.batches} batch{'es' if pruned.batches != 1 else ''}."
        )
