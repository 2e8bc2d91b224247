"""Adding and listing an account's documents: all or nothing, within the account's limits."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.search import SearchVector
from django.db import connection, transaction
from django.db.models.expressions import CombinedExpression

from billing.models import Account
from gateway.documents.extract import Extracted
from gateway.documents.models import Document, Passage
from gateway.documents.passages import split
from gateway.errors import GatewayError

SEARCH_CONFIG = "english"


def search_vector() -> CombinedExpression:
    """What a passage is found by on PostgreSQL: its heading weighs more than its text."""
    return SearchVector("heading", weight="A", config=SEARCH_CONFIG) + SearchVector(
        "text", weight="B", config=SEARCH_CONFIG
    )


def limit_reached(limit: int) -> GatewayError:
    return GatewayError(
        403,
        f"This account already has {limit} documents, the most it may keep. "
        "Delete one to add another.",
        code="document_limit_reached",
    )


def add_document(*, account_id: int, extracted: Extracted, size_bytes: int) -> Document:
    """Store a document and its indexed passages in one transaction, or nothing.

    The account row is locked while the count is checked, so two uploads at once cannot
    both take the last free place.
    """
    pieces = split(extracted.text)
    limit = settings.DOCUMENTS_MAX_PER_ACCOUNT
    with transaction.atomic():
        Account.objects.select_for_update().filter(pk=account_id).first()
        if Document.objects.for_account(account_id).count() >= limit:
            raise limit_reached(limit)
        document = Document.objects.create(
            account_id=account_id,
            name=extracted.name,
            kind=extracted.kind,
            size_bytes=size_bytes,
            characters=len(extracted.text),
            passage_count=len(pieces),
        )
        Passage.objects.bulk_create(
            Passage(
                document=document,
                account_id=account_id,
                position=position,
                heading=piece.heading,
                text=piece.text,
            )
            for position, piece in enumerate(pieces)
        )
        if connection.vendor == "postgresql":
            Passage.objects.filter(document=document).update(search_vector=search_vector())
    return document
