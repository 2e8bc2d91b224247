from __future__ import annotations

import random
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from billing import synthetic
from billing.rollups import rebuild


class Command(BaseCommand):
    help = (
        "Generate N synthetic usage records (and the accounts and keys they belong to) "
        "over the last --days days, then build their rollups: for measuring the "
        "dashboards at scale. Never on a production database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("count", type=int, help="usage records to make")
        parser.add_argument("--accounts", type=int, default=500)
        parser.add_argument("--days", type=int, default=90)
        parser.add_argument("--seed", type=int, default=11)
        parser.add_argument(
            "--repeat",
            type=int,
            default=0,
            help="PostgreSQL: then copy each record this many times within its hour "
            "(count x (repeat + 1) records in all, without Python in the loop)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count, accounts, days = options["count"], options["accounts"], options["days"]
        if count < 1 or accounts < 1 or days < 1 or options["repeat"] < 0:
            raise CommandError("count, --accounts and --days must be at least 1, --repeat 0")
        if options["repeat"] and connection.vendor != "postgresql":
            raise CommandError("--repeat needs PostgreSQL")
        rng = random.Random(options["seed"])
        start, end = synthetic.span_of(days)
        began = time.monotonic()
        customers = synthetic.make_customers(accounts, rng, start)
        written = synthetic.load(synthetic.rows(customers, count, start, end, rng))
        loaded = time.monotonic()
        rolled = rebuild(start, end)
        if options["repeat"]:
            ids = [customer.account_id for customer in customers]
            written += synthetic.repeat(ids, options["repeat"], end)
        synthetic.analyze()
        self.stdout.write(
            f"{written:,} usage records for {accounts:,} accounts over {days} days in "
            f"{loaded - began:.1f} s; {rolled:,} hourly rollup rows; done in "
            f"{time.monotonic() - began:.1f} s."
        )
