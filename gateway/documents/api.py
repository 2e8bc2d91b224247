"""/v1/documents: the document library for programs, with any key of the account.

`POST /v1/documents` (multipart, a `file` field) adds one, `GET /v1/documents` lists
them, `GET /v1/documents/search?q=` previews what RAG would retrieve, and
`GET`/`DELETE /v1/documents/<id>` read or delete one; another account's id is a 404.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from gateway.auth import KeyInfo
from gateway.documents.grounding import MAX_TOP_K
from gateway.documents.models import Document
from gateway.documents.search import default_retriever
from gateway.documents.uploads import add_uploaded_document
from gateway.errors import GatewayError, invalid
from gateway.sync import db_sync_to_async
from gateway.views import api_view, json_response

MAX_QUERY_CHARS = 2000


def not_found(document_id: int) -> GatewayError:
    return GatewayError(
        404, f"No document {document_id} in this account.", code="document_not_found"
    )


def _listing(account_id: int) -> list[dict[str, Any]]:
    return [d.as_api() for d in Document.objects.for_account(account_id)]


def _one(account_id: int, document_id: int) -> dict[str, Any]:
    document = Document.objects.for_account(account_id).filter(pk=document_id).first()
    if document is None:
        raise not_found(document_id)
    return document.as_api()


def _delete(account_id: int, document_id: int) -> None:
    deleted, _ = Document.objects.for_account(account_id).filter(pk=document_id).delete()
    if not deleted:
        raise not_found(document_id)


def _search(account_id: int, query: str, top_k: int) -> list[dict[str, Any]]:
    hits = default_retriever().search(account_id=account_id, query=query, top_k=top_k)
    return [
        {
            "object": "document.passage",
            **hit.source(),
            "heading": hit.heading,
            "text": hit.text,
            "score": hit.score,
        }
        for hit in hits
    ]


_upload_async = db_sync_to_async(add_uploaded_document)
_listing_async = db_sync_to_async(_listing)
_one_async = db_sync_to_async(_one)
_delete_async = db_sync_to_async(_delete)
_search_async = db_sync_to_async(_search)


@api_view(("GET", "POST"))
async def documents(request: HttpRequest) -> HttpResponse:
    """GET /v1/documents: the account's documents, newest first; POST: add one."""
    key: KeyInfo = request.api_key  # type: ignore[attr-defined]
    if request.method == "GET":
        return json_response({"object": "list", "data": await _listing_async(key.account_id)})
    # Parsing the body, reading a PDF and the inserts all block: on a worker thread.
    document = await _upload_async(request, key.account_id)
    return json_response(document.as_api(), status=201)


@api_view(("GET",))
async def search(request: HttpRequest) -> HttpResponse:
    """GET /v1/documents/search?q=…&top_k=…: the passages RAG would add for `q`."""
    key: KeyInfo = request.api_key  # type: ignore[attr-defined]
    query = request.GET.get("q", "")
    if not query.strip():
        raise invalid("Give the words to search for as ?q=….", "q")
    if len(query) > MAX_QUERY_CHARS:
        raise invalid(f"'q' may be at most {MAX_QUERY_CHARS} characters.", "q")
    raw_top_k = request.GET.get("top_k", "4")
    if not raw_top_k.isdigit() or not 1 <= int(raw_top_k) <= MAX_TOP_K:
        raise invalid(f"'top_k' must be an integer from 1 to {MAX_TOP_K}.", "top_k")
    hits = await _search_async(key.account_id, query, int(raw_top_k))
    return json_response({"object": "list", "data": hits})


@api_view(("GET", "DELETE"))
async def document(request: HttpRequest, document_id: int) -> HttpResponse:
    """GET /v1/documents/<id>: one document; DELETE: delete it and its passages."""
    key: KeyInfo = request.api_key  # type: ignore[attr-defined]
    if request.method == "GET":
        return json_response(await _one_async(key.account_id, document_id))
    await _delete_async(key.account_id, document_id)
    return json_response({"id": document_id, "object": "document.deleted", "deleted": True})
