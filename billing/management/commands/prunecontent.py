from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.template.defaultfilters import pluralize

from billing.content import prune_content


class Command(BaseCommand):
    help = (
        "Erase the stored messages and answers older than PROMPT_RETENTION_DAYS "
        "(run daily, or more often)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        erased = prune_content()
        self.stdout.write(
            f"Erased the stored messages of {erased} request{pluralize(erased)} older than "
            f"{settings.PROMPT_RETENTION_DAYS} day{pluralize(settings.PROMPT_RETENTION_DAYS)}."
        )
