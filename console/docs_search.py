"""Search over the docs: each page rendered as it is served, cut at its headings.

The index is the pages themselves (no second copy of the text to drift): a section is
an `<h2>`/`<h3>` with an id and the text up to the next one, found by the URL of its
page and its anchor.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse

from console import docs
from console.site import public_base_url

HEADING = re.compile(r'<h([23])\s+id="([^"]+)"[^>]*>(.*?)</h\1>', re.S)
INLINE_TAG = re.compile(r"</?(?:a|b|code|em|i|kbd|span|strong)\b[^>]*>")
TAG = re.compile(r"<[^>]+>")
BODY = re.compile(r'<div class="docs-body">(.*?)<p id="copy-status"', re.S)
SNIPPET_CHARS = 180
MAX_RESULTS = 30


@dataclass(frozen=True, slots=True)
class Section:
    page_title: str
    title: str
    url: str
    text: str


@dataclass(frozen=True, slots=True)
class Result:
    section: Section
    snippet: str


def _plain(markup: str) -> str:
    return " ".join(html.unescape(TAG.sub(" ", INLINE_TAG.sub("", markup))).split())


def sections(request: HttpRequest) -> list[Section]:
    """Every section of every docs page, in reading order."""
    base_url = public_base_url(request)
    found = []
    for name, page in docs.PAGES.items():
        rendered = render_to_string(page.template, docs.page_context(name, base_url), request)
        body = BODY.search(rendered)
        markup = body.group(1) if body else rendered
        url = reverse(page.url_name)
        headings = list(HEADING.finditer(markup))
        found.append(
            Section(
                page.title,
                page.title,
                url,
                _plain(markup[: headings[0].start()]) if headings else _plain(markup),
            )
        )
        for index, heading in enumerate(headings):
            end = headings[index + 1].start() if index + 1 < len(headings) else len(markup)
            found.append(
                Section(
                    page_title=page.title,
                    title=_plain(heading.group(3)),
                    url=f"{url}#{heading.group(2)}",
                    text=_plain(markup[heading.end() : end]),
                )
            )
    return found


def _snippet(text: str, term: str) -> str:
    at = text.casefold().find(term)
    if at < 0:
        return text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else "")
    start = max(0, at - SNIPPET_CHARS // 3)
    piece = text[start : start + SNIPPET_CHARS]
    return ("…" if start else "") + piece + ("…" if start + SNIPPET_CHARS < len(text) else "")


def search(request: HttpRequest, query: str) -> list[Result]:
    """Sections holding every word of `query`; those with a word in the heading first."""
    terms = query.casefold().split()
    if not terms:
        return []
    hits: list[tuple[int, int, Result]] = []
    for section in sections(request):
        title, text = section.title.casefold(), section.text.casefold()
        if all(term in title or term in text for term in terms):
            in_title = sum(term in title for term in terms)
            hits.append((-in_title, len(hits), Result(section, _snippet(section.text, terms[0]))))
    hits.sort(key=lambda hit: (hit[0], hit[1]))
    return [result for _, _, result in hits[:MAX_RESULTS]]
