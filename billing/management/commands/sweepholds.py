from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from billing.ledger import release_expired_holds


class Command(BaseCommand):
    help = "Release credit held by requests whose worker died (run every few minutes)."

    def handle(self, *args: Any, **options: Any) -> None:
        released = release_expired_holds()
        self.stdout.write(f"Released {released} expired holds.")
