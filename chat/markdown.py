"""A small, safe subset of Markdown for chat messages.

Everything is HTML-escaped first; only then are a few constructs turned into tags
(fenced and inline code, bold, italics, lists, headings as bold lines, http(s)
links), and the result still goes through nh3 with an allowlist. Model and user
text never reaches the page unescaped.
"""

from __future__ import annotations

import re

import nh3
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

TAGS = {"p", "br", "strong", "em", "code", "pre", "ul", "ol", "li", "a"}
ATTRIBUTES = {"a": {"href"}}

FENCE = re.compile(r"^```[^\n]*\n(.*?)(?:^```[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)]+)\)")
BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
HEADING = re.compile(r"^#{1,6}\s+(.*)$")


def _inline(text: str) -> str:
    """Escape a line, then mark up code spans, links, bold and italics outside code."""
    pieces = INLINE_CODE.split(text)
    out = []
    for index, piece in enumerate(pieces):
        if index % 2:
            out.append(f"<code>{escape(piece)}</code>")
            continue
        html = str(escape(piece))
        html = LINK.sub(r'<a href="\2">\1</a>', html)
        html = BOLD.sub(r"<strong>\1</strong>", html)
        html = ITALIC.sub(r"<em>\1</em>", html)
        out.append(html)
    return "".join(out)


def _list(lines: list[str], pattern: re.Pattern[str], tag: str) -> str:
    items = "".join(f"<li>{_inline(pattern.match(line)[1])}</li>" for line in lines)  # type: ignore[index]
    return f"<{tag}>{items}</{tag}>"


def _block(block: str) -> str:
    lines = block.split("\n")
    if all(BULLET.match(line) for line in lines):
        return _list(lines, BULLET, "ul")
    if all(NUMBERED.match(line) for line in lines):
        return _list(lines, NUMBERED, "ol")
    rendered = []
    for line in lines:
        heading = HEADING.match(line)
        rendered.append(f"<strong>{_inline(heading[1])}</strong>" if heading else _inline(line))
    return "<p>" + "<br>".join(rendered) + "</p>"


def _prose(text: str) -> str:
    blocks = re.split(r"\n\s*\n", text.strip("\n"))
    return "".join(_block(block) for block in blocks if block.strip())


def render_markdown(text: str) -> SafeString:
    """HTML for a message: the Markdown subset above, sanitised."""
    text = text.replace("\r\n", "\n")
    html, position = [], 0
    for fence in FENCE.finditer(text):
        html.append(_prose(text[position : fence.start()]))
        html.append(f"<pre><code>{escape(fence[1].rstrip(chr(10)))}</code></pre>")
        position = fence.end()
    html.append(_prose(text[position:]))
    cleaned = nh3.clean(
        "".join(html),
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes={"http", "https"},
        link_rel="nofollow noopener noreferrer",
    )
    return mark_safe(cleaned)  # noqa: S308 - escaped, then sanitised by nh3 just above
