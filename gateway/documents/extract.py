"""An uploaded file to text, or a clear GatewayError; nothing here touches the database.

The text comes out in one shape for every kind, which `passages` splits: paragraphs
separated by blank lines, and headings as Markdown heading lines (`## Pricing`), whether
they were Markdown, HTML `<h2>` or a Word "Heading 2" paragraph.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePosixPath, PureWindowsPath

from django.conf import settings

from gateway.documents.models import Document
from gateway.errors import GatewayError, invalid

EXTENSIONS = {
    ".txt": Document.Kind.TEXT,
    ".text": Document.Kind.TEXT,
    ".md": Document.Kind.MARKDOWN,
    ".markdown": Document.Kind.MARKDOWN,
    ".html": Document.Kind.HTML,
    ".htm": Document.Kind.HTML,
    ".pdf": Document.Kind.PDF,
    ".docx": Document.Kind.DOCX,
}
MAX_NAME_CHARS = 255
# A docx is a zip: refuse one that would inflate past this before any XML is parsed.
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Extracted:
    name: str
    kind: str
    text: str


def unreadable(kind: str, why: str) -> GatewayError:
    return invalid(f"This file could not be read as {kind}: {why}", "file", "unreadable_file")


def too_large(what: str, size: int, limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"{what} is {size:,} bytes; the limit is {limit:,}.",
        param="file",
        code="document_too_large",
    )


def clean_name(raw: str) -> str:
    """The file's own name: no folders (a browser may send C:\\…\\a.txt), no control characters."""
    name = PureWindowsPath(PurePosixPath(raw or "").name).name
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if not name:
        raise invalid("The file has no name; send it with a file name such as notes.md.", "file")
    return name[:MAX_NAME_CHARS]


def kind_of(name: str) -> str:
    suffix = PurePosixPath(name.lower()).suffix
    kind = EXTENSIONS.get(suffix)
    if kind is None:
        known = ", ".join(sorted({ext for ext in EXTENSIONS}))
        raise GatewayError(
            415,
            f"Files of type {suffix or '(no extension)'!r} are not supported; send one of {known}.",
            param="file",
            code="unsupported_file_type",
            type="invalid_request_error",
        )
    return kind


def extract(raw_name: str, data: bytes) -> Extracted:
    """The file's name, kind and text, checked: a 400/413/415 GatewayError when it is
    empty, too large, of a type not served, corrupt, or holds no text."""
    name = clean_name(raw_name)
    kind = kind_of(name)
    if not data:
        raise invalid(f"{name} is empty.", "file", "empty_file")
    if len(data) > settings.DOCUMENT_MAX_BYTES:
        raise too_large(name, len(data), settings.DOCUMENT_MAX_BYTES)
    reader: Callable[[bytes], str] = {
        Document.Kind.TEXT: _plain,
        Document.Kind.MARKDOWN: _plain,
        Document.Kind.HTML: _html,
        Document.Kind.PDF: _pdf,
        Document.Kind.DOCX: _docx,
    }[Document.Kind(kind)]
    # PostgreSQL text cannot hold NUL; other control characters but line breaks and tabs
    # are noise from PDF and Word internals.
    text = "".join(ch for ch in reader(data) if ch.isprintable() or ch in "\n\t")
    text = text.strip()
    if not text:
        raise invalid(f"No text was found in {name}.", "file", "no_text")
    if len(text) > settings.DOCUMENT_MAX_CHARS:
        raise GatewayError(
            413,
            f"{name} holds {len(text):,} characters of text; the limit is "
            f"{settings.DOCUMENT_MAX_CHARS:,}. Split it into smaller documents.",
            param="file",
            code="document_too_large",
        )
    return Extracted(name=name, kind=kind, text=text)


def _decoded(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise unreadable(
            "UTF-8 text", f"byte {exc.start} is not UTF-8. Save the file as UTF-8 and retry."
        ) from None
    if "\x00" in text:
        raise unreadable("text", "it contains NUL bytes, so it is probably not a text file.")
    return text


def _plain(data: bytes) -> str:
    return _decoded(data).replace("\r\n", "\n").replace("\r", "\n")


class _TextOfHtml(HTMLParser):
    """The visible text of an HTML page: blocks as paragraphs, h1–h6 as heading lines."""

    _BLOCKS_WORDS = (
        "p div section article header footer main aside nav li ul ol table tr blockquote pre "
        "br hr dl dt dd figure figcaption form fieldset address title"
    )
    BLOCKS = frozenset(_BLOCKS_WORDS.split())
    HIDDEN = frozenset(("script", "style", "template", "noscript", "svg"))
    HEADINGS = {f"h{level}": level for level in range(1, 7)}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.current: list[str] = []
        self.hidden = 0
        self.heading = 0

    def _flush(self) -> None:
        text = " ".join("".join(self.current).split())
        if text:
            self.blocks.append(f"{'#' * self.heading} {text}" if self.heading else text)
        self.current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.HEADINGS:
            self._flush()
            self.heading = self.HEADINGS[tag]
        elif tag in self.BLOCKS:
            self._flush()
        elif tag in ("td", "th"):
            self.current.append(" | " if self.current else "")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.HEADINGS:
            self._flush()
            self.heading = 0
        elif tag in self.BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.current.append(data)

    def text(self) -> str:
        self._flush()
        return "\n\n".join(self.blocks)


def _html(data: bytes) -> str:
    parser = _TextOfHtml()
    parser.feed(_decoded(data))
    parser.close()
    return parser.text()


def _pdf(data: bytes) -> str:
    from pypdf import PdfReader

    if not data.lstrip()[:5] == b"%PDF-":
        raise unreadable("a PDF", "it does not start like one (%PDF-).")
    # pypdf logs every repair it makes to a damaged file; the customer gets our message.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise unreadable("a PDF", "it is encrypted with a password. Remove it and retry.")
        pages: list[str] = []
        size = 0
        for page in reader.pages:
            text = page.extract_text() or ""
            pages.append(text)
            size += len(text)
            if size > settings.DOCUMENT_MAX_CHARS:
                break  # extract() refuses it as too long; no need to read the rest
    except GatewayError:
        raise
    except Exception as exc:
        # pypdf raises many types on damaged files (PdfReadError, ValueError, KeyError …).
        raise unreadable("a PDF", f"it is damaged ({type(exc).__name__}).") from None
    return "\n\n".join(pages)


def _docx(data: bytes) -> str:
    from docx import Document as WordDocument
    from docx.table import Table

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise unreadable(
            "a Word document", "a .docx is a zip archive and this is not one."
        ) from None
    if unzipped > MAX_UNZIPPED_BYTES:
        raise too_large("The unpacked document", unzipped, MAX_UNZIPPED_BYTES)
    try:
        document = WordDocument(io.BytesIO(data))
        blocks: list[str] = []
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                for row in item.rows:
                    cells = [" ".join(cell.text.split()) for cell in row.cells]
                    blocks.append(" | ".join(cell for cell in cells if cell))
                continue
            text = " ".join(item.text.split())
            style = (item.style.name if item.style is not None else "") or ""
            if text and style.startswith("Heading") and style[7:].strip().isdigit():
                blocks.append(f"{'#' * min(int(style[7:]), 6)} {text}")
            elif text and style == "Title":
                blocks.append(f"# {text}")
            else:
                blocks.append(text)
    except Exception as exc:
        # python-docx raises KeyError, lxml errors, PackageNotFoundError … on broken files.
        raise unreadable("a Word document", f"it is damaged ({type(exc).__name__}).") from None
    return "\n\n".join(block for block in blocks if block)
