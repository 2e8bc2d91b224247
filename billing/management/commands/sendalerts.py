from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from billing.alerts import send_alerts


class Command(BaseCommand):
    help = (
        "E-mail the alerts that are due: balances below their owner's threshold, keys at "
        "their spend cap, keys about to expire; each once per crossing (run every few "
        "minutes)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        run = send_alerts()
        self.stdout.write(
            f"Sent {run.balance} balance, {run.spend_cap} spend-cap and {run.expiry} "
            "key-expiry alerts."
        )
