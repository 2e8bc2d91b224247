"""Retrieval: the best passages of an account's own documents for a question.

`Retriever` is the interface the rest of the gateway uses (`grounding`, the Documents
page). The one implementation today is `FullTextRetriever`, the database's own full-text
search, so RAG needs no extra service: PostgreSQL's `tsvector` with a GIN index ranked
by `ts_rank`, or SQLite's FTS5 ranked by BM25 in the embedded default. A vector index
can replace it (an `EmbeddingRetriever` with the same `search()`), or join it (a hybrid
retriever that asks both and merges their rankings, e.g. by reciprocal rank fusion);
callers only see `Hit`s. Every implementation must filter by the account first: no
search may ever return another account's passage.
"""

from __future__ import annotations

import functools
import operator
import re
from dataclasses import dataclass
from typing import Any, Protocol

from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import connection
from django.db.models import F

from gateway.documents.library import SEARCH_CONFIG
from gateway.documents.models import Passage

MAX_QUERY_WORDS = 32
WORD = re.compile(r"\w+")
# Words too common to say which passage is meant (PostgreSQL's english configuration
# drops its own list; FTS5 has none, so both get this one for the same results).
_STOPWORDS_WORDS = (
    "a about above after again against all am an and any are as at be because been "
    "before being below between both but by can could did do does doing down during each "
    "few for from further had has have having he her here hers herself him himself his "
    "how i if in into is it its itself just me more most my myself no nor not now of off "
    "on once only or other our ours ourselves out over own same she should so some such "
    "than that the their theirs them themselves then there these they this those through "
    "to too under until up very was we were what when where which while who whom why "
    "will with would you your yours yourself yourselves tell please know"
)
STOPWORDS = frozenset(_STOPWORDS_WORDS.split())


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved passage, with what a citation needs."""

    passage_id: int
    document_id: int
    document_name: str
    heading: str
    text: str
    score: float

    def source(self) -> dict[str, Any]:
        """How an answer's metadata and the usage record cite this passage."""
        return {
            "document_id": self.document_id,
            "document_name": self.document_name,
            "passage_id": self.passage_id,
        }


class Retriever(Protocol):
    def search(self, *, account_id: int, query: str, top_k: int) -> list[Hit]:
        """The `top_k` best passages of the account's documents for `query`, best first;
        empty when nothing matches. Synchronous (it queries the database)."""
        ...


def query_words(query: str) -> list[str]:
    """The query's distinct searchable words, lower-cased, in order, at most MAX_QUERY_WORDS."""
    words = dict.fromkeys(
        word for word in WORD.findall(query.lower()) if word not in STOPWORDS and len(word) > 1
    )
    return list(words)[:MAX_QUERY_WORDS]


class FullTextRetriever:
    """The database's full-text index (see the module's docstring); any word may match,
    and passages that match more of the rarer words rank first."""

    def search(self, *, account_id: int, query: str, top_k: int) -> list[Hit]:
        words = query_words(query)
        if not words or top_k < 1:
            return []
        if connection.vendor == "postgresql":
            return self._postgresql(account_id, words, top_k)
        return self._sqlite(account_id, words, top_k)

    def _postgresql(self, account_id: int, words: list[str], top_k: int) -> list[Hit]:
        # One plain query per word, OR-ed: plainto_tsquery never parses operators, so
        # nothing the customer types is read as tsquery syntax.
        tsquery = functools.reduce(
            operator.or_,
            (SearchQuery(word, config=SEARCH_CONFIG, search_type="plain") for word in words),
        )
        rows = (
            Passage.objects.filter(account_id=account_id, search_vector=tsquery)
            .annotate(score=SearchRank(F("search_vector"), tsquery))
            .order_by("-score", "id")
            .values_list("id", "document_id", "document__name", "heading", "text", "score")[:top_k]
        )
        return [Hit(*row) for row in rows]

    def _sqlite(self, account_id: int, words: list[str], top_k: int) -> list[Hit]:
        # Every word a quoted FTS5 string, so none is read as syntax (AND, NEAR, *, ^, -).
        match = " OR ".join('"' + word.replace('"', '""') + '"' for word in words)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT p.id, p.document_id, d.name, p.heading, p.text, "
                "-bm25(gateway_passage_fts, 2.0, 1.0) AS score "
                "FROM gateway_passage_fts "
                "JOIN gateway_passage p ON p.id = gateway_passage_fts.rowid "
                "JOIN gateway_document d ON d.id = p.document_id "
                "WHERE gateway_passage_fts MATCH %s AND p.account_id = %s "
                "ORDER BY score DESC, p.id LIMIT %s",
                [match, account_id, top_k],
            )
            return [Hit(*row) for row in cursor.fetchall()]


def default_retriever() -> Retriever:
    """The retriever the gateway uses: the database's full-text search."""
    return FullTextRetriever()
