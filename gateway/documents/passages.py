"""A document's text split into passages for retrieval.

Passages follow the text's structure: a heading line starts a new section and every
passage remembers the heading it sits under (it is indexed and shown with the passage),
paragraphs are packed together up to PASSAGE_CHARS, and a paragraph longer than that is
cut at sentence or word boundaries. Each passage after the first in a section starts
with the end of the one before (up to OVERLAP_CHARS), so a fact that straddles a cut is
still found whole in one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

PASSAGE_CHARS = 1200
OVERLAP_CHARS = 200
MAX_HEADING_CHARS = 300


@dataclass(frozen=True, slots=True)
class Piece:
    heading: str
    text: str


def _heading(line: str) -> str | None:
    """The title of a Markdown heading line (`## Pricing`), else None."""
    stripped = line.strip()
    hashes = len(stripped) - len(stripped.lstrip("#"))
    if 1 <= hashes <= 6 and stripped[hashes : hashes + 1] == " ":
        return stripped[hashes:].strip(" #")[:MAX_HEADING_CHARS]
    return None


def _cut(paragraph: str, limit: int) -> list[str]:
    """A paragraph in pieces of at most `limit` characters, cut after a sentence where one
    ends in the second half of a piece, else at the last space, else hard."""
    pieces: list[str] = []
    rest = paragraph
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind(". "), window.rfind("? "), window.rfind("! "), window.rfind("\n"))
        if cut < limit // 2:
            cut = window.rfind(" ")
        if cut < limit // 2:
            cut = limit - 1
        pieces.append(rest[: cut + 1].strip())
        rest = rest[cut + 1 :].strip()
    if rest:
        pieces.append(rest)
    return pieces


def _tail(text: str) -> str:
    """The end of a passage to repeat at the start of the next, from a word boundary."""
    if len(text) <= OVERLAP_CHARS:
        return text
    tail = text[-OVERLAP_CHARS:]
    space = tail.find(" ")
    return tail[space + 1 :] if space >= 0 else tail


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) in order; text before the first heading has heading ''."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    paragraph: list[str] = []

    def end_paragraph() -> None:
        if paragraph:
            sections[-1][1].append(" ".join(" ".join(paragraph).split()))
            paragraph.clear()

    for line in text.splitlines():
        title = _heading(line)
        if title is not None:
            end_paragraph()
            sections.append((title, []))
        elif line.strip():
            paragraph.append(line)
        else:
            end_paragraph()
    end_paragraph()
    return [(title, paragraphs) for title, paragraphs in sections if paragraphs or title]


def split(text: str) -> list[Piece]:
    """The passages of a document's text, in order (see the module's docstring)."""
    pieces: list[Piece] = []
    for heading, paragraphs in _sections(text):
        if not paragraphs:
            # A heading with nothing under it before the next one: searchable by itself.
            pieces.append(Piece(heading, heading))
            continue
        current = ""
        for paragraph in paragraphs:
            for part in _cut(paragraph, PASSAGE_CHARS - OVERLAP_CHARS - 2):
                if current and len(current) + 2 + len(part) > PASSAGE_CHARS:
                    pieces.append(Piece(heading, current))
                    current = _tail(current)
                current = f"{current}\n\n{part}" if current else part
        pieces.append(Piece(heading, current))
    return pieces
