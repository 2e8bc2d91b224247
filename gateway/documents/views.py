"""The console's Documents page: the library RAG answers from, for the signed-in user.

One template; htmx requests get only the part they replace (the library after an upload
or a delete, the results after a search). Everything works without JavaScript too.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from accounts.models import User
from billing.ledger import account_for
from gateway.documents.grounding import DEFAULT_TOP_K
from gateway.documents.models import Document
from gateway.documents.search import default_retriever
from gateway.documents.uploads import add_uploaded_document
from gateway.errors import GatewayError

MAX_QUERY_CHARS = 2000
SEARCH_RESULTS = 8


class AuthenticatedRequest(HttpRequest):
    """What these views see: a signed-in user and django-htmx's details."""

    user: User
    htmx: HtmxDetails


def _context(request: AuthenticatedRequest, **extra: object) -> dict[str, object]:
    account = account_for(request.user)
    documents = list(Document.objects.for_account(account.pk))
    return {
        "documents": documents,
        "document_limit": settings.DOCUMENTS_MAX_PER_ACCOUNT,
        "max_bytes": settings.DOCUMENT_MAX_BYTES,
        "top_k": DEFAULT_TOP_K,
        **extra,
    }


def _render(
    request: AuthenticatedRequest, partial: str | None, status: int = 200, **extra: object
) -> TemplateResponse:
    template = "documents/library.html"
    if partial and request.htmx:
        template = f"documents/{partial}"
    return TemplateResponse(request, template, _context(request, **extra), status=status)


@require_GET
@login_required
def library(request: AuthenticatedRequest) -> TemplateResponse:
    """The documents, the upload form, and a search over their passages (`?q=`)."""
    query = request.GET.get("q", "").strip()[:MAX_QUERY_CHARS]
    hits = None
    if query:
        account = account_for(request.user)
        hits = default_retriever().search(account_id=account.pk, query=query, top_k=SEARCH_RESULTS)
    return _render(request, "_results.html", query=query, hits=hits)


@require_POST
@login_required
def upload(request: AuthenticatedRequest) -> HttpResponse:
    """Add the uploaded file; on a refusal, the page again with the reason."""
    try:
        document = add_uploaded_document(request, account_for(request.user).pk)
    except GatewayError as exc:
        return _render(request, "_library.html", status=exc.status, upload_error=exc.message)
    count = document.passage_count
    note = f"Added “{document.name}”: {count} passage{'' if count == 1 else 's'}, ready to search."
    if request.htmx:
        return _render(request, "_library.html", status=201, added=document, note=note)
    messages.success(request, note)
    return redirect("documents:library")


@require_POST
@login_required
def delete(request: AuthenticatedRequest, document_id: int) -> HttpResponse:
    """Delete one of the user's documents (another user's id is a 404)."""
    account = account_for(request.user)
    document = Document.objects.for_account(account.pk).filter(pk=document_id).first()
    if document is None:
        return _render(
            request, "_library.html", status=404, upload_error="That document is already gone."
        )
    document.delete()
    note = f"Deleted “{document.name}”."
    if request.htmx:
        return _render(request, "_library.html", note=note)
    messages.success(request, note)
    return redirect("documents:library")
