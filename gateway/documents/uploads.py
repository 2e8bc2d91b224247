"""An uploaded document from a request, shared by /v1/documents and the Documents page."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError

from gateway.documents.extract import extract, too_large
from gateway.documents.library import add_document
from gateway.documents.models import Document
from gateway.errors import invalid

# What a multipart envelope may add to the file itself (boundaries, part headers).
MULTIPART_SLACK_BYTES = 64 * 1024


def uploaded_file(request: HttpRequest) -> UploadedFile:
    """The one `file` of a multipart body, with a 400/413 for anything else (and a 413
    before the body is parsed when its declared length is already too large)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    limit = settings.DOCUMENT_MAX_BYTES
    if declared.isdigit() and int(declared) > limit + MULTIPART_SLACK_BYTES:
        raise too_large("The request", int(declared), limit)
    if not (request.content_type or "").startswith("multipart/form-data"):
        raise invalid(
            "Send the document as multipart/form-data with the file in a field named 'file'.",
            "file",
        )
    try:
        files = request.FILES.getlist("file")
    except (MultiPartParserError, TooManyFieldsSent) as exc:
        raise invalid(f"The multipart body could not be read: {exc}", "file") from None
    except RequestDataTooBig:
        raise too_large(
            "The form fields", int(declared) if declared.isdigit() else 0, limit
        ) from None
    if not files:
        raise invalid("The request has no 'file' field with a file in it.", "file")
    if len(files) > 1:
        raise invalid("Send one file per request.", "file")
    return files[0]


def add_uploaded_document(request: HttpRequest, account_id: int) -> Document:
    """The request's uploaded `file`, extracted, split and stored; a GatewayError (and
    nothing stored) when the request or the file is refused."""
    upload = uploaded_file(request)
    if upload.size is not None and upload.size > settings.DOCUMENT_MAX_BYTES:
        raise too_large(upload.name or "The file", upload.size, settings.DOCUMENT_MAX_BYTES)
    data = upload.read()
    return add_document(
        account_id=account_id, extracted=extract(upload.name or "", data), size_bytes=len(data)
    )
