from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.template.defaultfilters import pluralize

from billing.ledger import release_expired_holds


class Command(BaseCommand):
    help = (
        "Replay the settlement journal, then settle or release the holds of requests "
        "whose worker died (run every few minutes)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        sweep = release_expired_holds()
        self.stdout.write(
            f"Replayed {sweep.replayed} journaled settlement{pluralize(sweep.replayed)}. "
            f"Settled {sweep.settled} interrupted request{pluralize(sweep.settled)}, "
            f"released {sweep.released} expired hold{pluralize(sweep.released)}."
        )
