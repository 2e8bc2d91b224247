from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.template.defaultfilters import pluralize

from billing.ledger import release_expired_holds
from gateway.idempotency import delete_expired_idempotent_requests


class Command(BaseCommand):
    help = (
        "Replay the settlement journal, then settle or release the holds of requests "
        "whose worker died, and forget Idempotency-Keys older than a day (run every few "
        "minutes)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        sweep = release_expired_holds()
        self.stdout.write(
            f"Replayed {sweep.replayed} journaled settlement{pluralize(sweep.replayed)}. "
            f"Settled {sweep.settled} interrupted request{pluralize(sweep.settled)}, "
            f"released {sweep.released} expired hold{pluralize(sweep.released)}."
        )
        forgotten = delete_expired_idempotent_requests()
        self.stdout.write(f"Forgot {forgotten} expired idempotency key{pluralize(forgotten)}.")
