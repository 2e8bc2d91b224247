"""Chat text is escaped, then a small Markdown subset, then sanitised by nh3."""

from __future__ import annotations

import pytest

from chat.markdown import render_markdown


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("plain", "<p>plain</p>"),
        ("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
        ("**bold** and *it*", "<p><strong>bold</strong> and <em>it</em></p>"),
        ("`a < b`", "<p><code>a &lt; b</code></p>"),
        ("`**not bold**`", "<p><code>**not bold**</code></p>"),
        ("one\ntwo\n\nthree", "<p>one<br>two</p><p>three</p>"),
        ("- a\n- b", "<ul><li>a</li><li>b</li></ul>"),
        ("1. a\n2. b", "<ol><li>a</li><li>b</li></ol>"),
        ("# Title", "<p><strong>Title</strong></p>"),
        ("```py\nif a < b:\n    x()\n```", "<pre><code>if a &lt; b:\n    x()</code></pre>"),
        ("```\nunclosed <i>", "<pre><code>unclosed &lt;i&gt;</code></pre>"),
        (
            "[docs](https://example.com/a?b=1&c=2)",
            '<p><a href="https://example.com/a?b=1&amp;c=2" rel="nofollow noopener noreferrer">'
            "docs</a></p>",
        ),
        ("[x](javascript:alert(1))", "<p>[x](javascript:alert(1))</p>"),
        ('[x](https://e.com/" onclick="alert(1))', '<p>[x](https://e.com/" onclick="alert(1))</p>'),
    ],
)
def test_it_renders_a_safe_subset(text, html):
    assert render_markdown(text) == html
