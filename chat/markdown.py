"""Chat messages as Markdown: markdown-it-py, Pygments on the server, then nh3.

markdown-it-py parses CommonMark with tables, strikethrough and task lists; raw HTML is
off (it comes out as text) and its link check already refuses javascript:, vbscript:,
file: and data: URLs. Fenced code is highlighted by Pygments into CSS classes (the
stylesheet is static/css/code.css, written by `manage.py codestyle`) under a bar naming
the language, with a copy button. Images become plain links: a model's answer must not
make the reader's browser fetch an address it chose. Whatever comes out still goes
through nh3 with a small allowlist, so a parser bug cannot put markup on the page.

`GrowingAnswer` renders an answer while it streams, block by block, so a long answer
costs about one full render in all rather than one per update.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import nh3
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from mdit_py_plugins.tasklists import tasklists_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

# Pygments' xcode style: every token colour reaches 5:1 on its white background (WCAG AA).
CODE_STYLE = "xcode"
TAGS = {
    "p", "br", "hr", "strong", "em", "s", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "input", "div", "span", "button",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href"},
    "ol": {"start"},
    "th": {"class"},
    "td": {"class"},
    "input": {"type", "checked", "disabled", "class"},
    "ul": {"class"},
    "li": {"class"},
    "div": {"class"},
    "span": {"class"},
    "code": {"class"},
    "pre": {"class"},
    "button": {"type", "class", "data-copy-code"},
}
ALIGNMENTS = {"text-align:left": "align-left", "text-align:center": "align-center",
              "text-align:right": "align-right"}  # fmt: skip


def _code_formatter() -> HtmlFormatter[str]:
    return HtmlFormatter(style=CODE_STYLE, nowrap=True)


def code_stylesheet() -> str:
    """The CSS for highlighted code, scoped to `.code-block pre`."""
    return _code_formatter().get_style_defs(".code-block pre") + "\n"


def _lexer(language: str) -> Any:
    try:
        return get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        return TextLexer()


def _code_block(code: str, info: str) -> str:
    language = info.split(maxsplit=1)[0] if info.strip() else ""
    lexer = _lexer(language)
    name = lexer.name if not isinstance(lexer, TextLexer) else (language or "text")
    body = highlight(code, lexer, _code_formatter())
    return (
        '<div class="code-block"><div class="code-bar">'
        f'<span class="code-language">{escape(name)}</span>'
        '<button type="button" class="code-copy" data-copy-code>Copy</button></div>'
        f"<pre><code>{body}</code></pre></div>\n"
    )


def _fence(
    self: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    return _code_block(token.content, token.info)


def _code_indented(
    self: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return _code_block(tokens[idx].content, "")


def _image_as_link(
    self: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or "image"
    return f'<a href="{escape(token.attrGet("src") or "")}">{escape(alt)}</a>'


def _alignment_as_class(state: StateCore) -> None:
    """Table alignment as a class: the site's CSP refuses style attributes."""
    for token in state.tokens:
        if token.type in {"th_open", "td_open"} and (style := token.attrGet("style")):
            del token.attrs["style"]
            token.attrSet("class", ALIGNMENTS.get(str(style), ""))


@cache
def parser() -> MarkdownIt:
    """The one configured parser (markdown-it parsers are reusable and thread-safe)."""
    md = MarkdownIt("commonmark", {"html": False})
    md.enable(["table", "strikethrough"]).use(tasklists_plugin)
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _code_indented)
    md.add_render_rule("image", _image_as_link)
    md.core.ruler.push("alignment_as_class", _alignment_as_class)
    return md


def clean(html: str) -> SafeString:
    """Sanitise rendered HTML with the chat's allowlist."""
    cleaned = nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener nofollow noreferrer",
    )
    return mark_safe(cleaned)  # noqa: S308 - sanitised by nh3 just above


def render_markdown(text: str) -> SafeString:
    """HTML for a message: Markdown rendered, code highlighted, sanitised."""
    return clean(parser().render(text.replace("\r\n", "\n")))


# Re-rendering the unfinished block costs its length each time: a long one (a big code
# block) is re-rendered less often, so the streaming cost stays bounded.
TAIL_CHARS_PER_SECOND = 40_000


class GrowingAnswer:
    """An answer being streamed, rendered as finished blocks plus the block in progress.

    markdown-it parses only the text after the last finished block; when a new
    top-level block has begun, the ones before it are final: they are rendered once and
    sent once (appended on the page), and only the unfinished tail is re-rendered and
    replaced on each update. The complete answer is rendered once more at the end,
    which also settles the rare construct (a loose list) that a later line could still
    change.
    """

    def __init__(self) -> None:
        self.text = ""
        self.settled = 0

    def add(self, piece: str) -> None:
        self.text += piece.replace("\r\n", "\n")

    def tail_interval(self) -> float:
        """Seconds to wait between renders of the unfinished tail."""
        return (len(self.text) - self.settled) / TAIL_CHARS_PER_SECOND

    def update(self) -> tuple[SafeString, SafeString]:
        """The newly finished blocks (to append) and the tail (to replace), as HTML."""
        rest = self.text[self.settled :]
        starts = [t.map[0] for t in parser().parse(rest) if t.level == 0 and t.map]
        finished = SafeString("")
        if len(starts) > 1:
            lines = rest.splitlines(keepends=True)
            cut = sum(len(line) for line in lines[: starts[-1]])
            finished = render_markdown(rest[:cut])
            self.settled += cut
        return finished, render_markdown(self.text[self.settled :])
