"""Chat text: markdown-it-py with tables, strikethrough and task lists, code highlighted
by Pygments, images as links, and everything sanitised by nh3."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings

from chat.markdown import GrowingAnswer, code_stylesheet, render_markdown


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("plain", "<p>plain</p>"),
        (
            "**bold** and *it* and ~~gone~~",
            "<p><strong>bold</strong> and <em>it</em> and <s>gone</s></p>",
        ),
        ("`a < b`", "<p><code>a &lt; b</code></p>"),
        ("`**not bold**`", "<p><code>**not bold**</code></p>"),
        ("one\ntwo\n\nthree", "<p>one\ntwo</p>\n<p>three</p>"),
        ("- a\n- b", "<ul>\n<li>a</li>\n<li>b</li>\n</ul>"),
        ("3. a\n4. b", '<ol start="3">\n<li>a</li>\n<li>b</li>\n</ol>'),
        ("# Title", "<h1>Title</h1>"),
        ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>"),
        (
            "[docs](https://example.com/a?b=1&c=2)",
            '<p><a href="https://example.com/a?b=1&amp;c=2" rel="noopener nofollow noreferrer">'
            "docs</a></p>",
        ),
        (
            "- [x] done\n- [ ] todo",
            '<ul class="contains-task-list">\n<li class="task-list-item"><input '
            'class="task-list-item-checkbox" checked="checked" disabled="disabled" '
            'type="checkbox"> done</li>\n<li class="task-list-item"><input '
            'class="task-list-item-checkbox" disabled="disabled" type="checkbox"> todo</li>\n</ul>',
        ),
    ],
)
def test_it_renders_markdown(text, html):
    assert render_markdown(text).strip() == html


def test_tables_are_aligned_with_classes_not_style_attributes():
    html = render_markdown("| a | b | c |\n|:-|:-:|-:|\n| 1 | 2 | 3 |")
    assert '<th class="align-left">a</th>' in html
    assert '<td class="align-center">2</td>' in html
    assert '<td class="align-right">3</td>' in html
    assert "style" not in html


class Elements(HTMLParser):
    """Every element and attribute in a piece of HTML, as a browser would parse it."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "<b onmouseover=alert(1)>hi</b>",
        '<img src=x onerror="alert(1)">',
        "![x](https://e.com/x.png)",
        '![x](https://e.com/x.png" onerror="alert(1))',
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](java\tscript:alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "[x](vbscript:msgbox(1))",
        "<a href='javascript:alert(1)'>x</a>",
        '[x](https://e.com/" onclick="alert(1))',
        "[x]: javascript:alert(1)\n\n[x]",
        "<iframe src=https://e.com></iframe>",
        "```html\n<script>alert(1)</script>\n```",
        "<style>body{display:none}</style>",
        "| a |\n|:-|\n| <svg onload=alert(1)> |",
        '<https://e.com/"><script>alert(1)</script>>',
    ],
)
def test_nothing_a_message_says_becomes_live_markup(text):
    for tag, attrs in Elements(render_markdown(text)).found:
        assert tag not in {"script", "img", "iframe", "style", "svg", "b"}
        assert not [name for name in attrs if name.startswith("on") or name == "style"]
        for name in ("href", "src"):
            if name in attrs:
                assert (attrs[name] or "").startswith(("https://", "http://", "mailto:"))


def test_an_image_becomes_a_link_to_it_so_nothing_is_fetched():
    html = render_markdown("![the chart](https://example.com/chart.png)")
    assert html.strip() == (
        '<p><a href="https://example.com/chart.png" rel="noopener nofollow noreferrer">'
        "the chart</a></p>"
    )


def test_code_is_highlighted_on_the_server_and_named():
    html = render_markdown("```python\nif a < b:\n    print('x')\n```")
    assert '<span class="code-language">Python</span>' in html
    assert '<button type="button" class="code-copy" data-copy-code="">Copy</button>' in html
    assert '<span class="k">if</span>' in html
    assert "&lt;" in html


@pytest.mark.parametrize(
    ("fence", "language"),
    [("```\nx\n```", "text"), ("```nosuchlanguage\nx\n```", "nosuchlanguage"), ("    x", "text")],
)
def test_code_without_a_known_language_is_plain_text(fence, language):
    html = render_markdown(fence)
    assert f'<span class="code-language">{language}</span>' in html
    assert "<pre><code>x\n</code></pre>" in html


def test_the_code_stylesheet_in_static_is_the_generated_one():
    committed = (Path(settings.BASE_DIR) / "static" / "css" / "code.css").read_text()
    assert committed.endswith(code_stylesheet())


def test_a_growing_answer_sends_each_finished_block_once():
    answer = GrowingAnswer()
    sent = []
    for piece in ["Hello **wor", "ld**\n\n- a\n", "- b\n\n```py\nx = 1\n", "```\n\nend"]:
        answer.add(piece)
        finished, tail = answer.update()
        sent.append(finished)
    assert sent[0] == ""
    assert sent[1] == "<p>Hello <strong>world</strong></p>\n"
    assert sent[2] == "<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n"
    assert "code-block" in sent[3]
    assert tail == "<p>end</p>\n"
    assert "".join(sent) + tail == render_markdown(answer.text)


def test_an_unclosed_code_block_renders_while_it_streams():
    answer = GrowingAnswer()
    answer.add("```js\nlet a = '<b>'")
    finished, tail = answer.update()
    assert finished == ""
    assert "JavaScript" in tail
    assert "&lt;b&gt;" in tail
