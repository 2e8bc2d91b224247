"""An account's documents and the passages they are split into for retrieval."""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.utils import timezone


class DocumentQuerySet(models.QuerySet["Document"]):
    def for_account(self, account_id: int) -> DocumentQuerySet:
        """The only way in: another account's document is never reachable by its id."""
        return self.filter(account_id=account_id)


class Document(models.Model):
    """An uploaded file, kept as the passages of its text (the file itself is not kept)."""

    class Kind(models.TextChoices):
        TEXT = "txt", "Plain text"
        MARKDOWN = "md", "Markdown"
        HTML = "html", "HTML"
        PDF = "pdf", "PDF"
        DOCX = "docx", "Word (docx)"

    account = models.ForeignKey("billing.Account", models.CASCADE, related_name="documents")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    size_bytes = models.PositiveIntegerField()
    characters = models.PositiveIntegerField()
    passage_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    objects = DocumentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "-created_at"])]

    def __str__(self) -> str:
        return self.name

    def as_api(self) -> dict[str, Any]:
        """The document object of /v1/documents."""
        return {
            "id": self.pk,
            "object": "document",
            "name": self.name,
            "type": self.kind,
            "bytes": self.size_bytes,
            "characters": self.characters,
            "passages": self.passage_count,
            "created_at": int(self.created_at.timestamp()),
        }


class Passage(models.Model):
    """A bounded piece of a document's text, under its section heading, indexed for search.

    `account` repeats the document's so a search filters on one indexed column. On
    PostgreSQL `search_vector` is maintained by gateway.documents.library (GIN-indexed);
    on SQLite the FTS5 table `gateway_passage_fts` is kept in step by triggers (both made
    in the migration), and `search_vector` stays empty. A later migration that rebuilds
    this table on SQLite drops those triggers: re-create them in it.
    """

    document = models.ForeignKey(Document, models.CASCADE, related_name="passages")
    account = models.ForeignKey("billing.Account", models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()
    heading = models.CharField(max_length=300, blank=True)
    text = models.TextField()
    search_vector = SearchVectorField(null=True, editable=False)

    class Meta:
        ordering = ["document", "position"]
        constraints = [
            models.UniqueConstraint(fields=["document", "position"], name="passage_position")
        ]
        indexes = [models.Index(fields=["account"])]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.position}"
