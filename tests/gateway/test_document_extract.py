"""Reading each kind of file to text in the one shape the splitter takes."""

from __future__ import annotations

import io

import pytest

from gateway.documents.extract import MAX_UNZIPPED_BYTES, clean_name, extract
from gateway.errors import GatewayError
from tests.gateway.document_files import docx_bytes, pdf_bytes, zip_bytes


def test_html_gives_its_visible_text_with_headings_blocks_and_table_cells():
    page = (
        b"<html><head><title>Plans</title><style>p{color:red}</style></head><body>"
        b"<h2>Prices</h2><table><tr><th>Plan</th><th>Price</th></tr><tr><td>Pro</td>"
        b"<td>$20</td></tr></table><p>Fish &amp; chips &lt;3</p><script>track()</script>"
        b"<noscript>Enable JS</noscript><ul><li>one</li><li>two</li></ul></body></html>"
    )

    text = extract("plans.html", page).text

    assert (
        text == "Plans\n\n## Prices\n\nPlan | Price\n\nPro | $20\n\nFish & chips <3\n\none\n\ntwo"
    )


def test_a_word_document_keeps_its_headings_and_tables():
    from docx import Document

    document = Document()
    document.add_heading("Handbook", level=0)
    document.add_heading("Leave", level=2)
    document.add_paragraph("Twenty days a year.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Sick days"
    table.rows[0].cells[1].text = "Ten"
    out = io.BytesIO()
    document.save(out)

    text = extract("handbook.docx", out.getvalue()).text

    assert text == "# Handbook\n\n## Leave\n\nTwenty days a year.\n\nSick days | Ten"


def test_a_pdf_gives_the_text_of_its_pages():
    assert extract("a.pdf", pdf_bytes("First line.", "Second (line).")).text == (
        "First line.\nSecond (line)."
    )


def test_control_characters_from_the_file_are_dropped_but_line_breaks_kept():
    assert extract("a.txt", b"one\x07\x1b two\r\nthree\tfour").text == "one two\nthree\tfour"


def test_a_docx_that_would_unpack_past_the_limit_is_refused_before_it_is_parsed():
    bomb = zip_bytes(**{"word/document.xml": b"0" * (MAX_UNZIPPED_BYTES + 1)})

    with pytest.raises(GatewayError) as refused:
        extract("bomb.docx", bomb)

    assert refused.value.status == 413 and refused.value.code == "document_too_large"


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("C:\\Users\\me\\notes.txt", "notes.txt"),
        ("../../etc/passwd.md", "passwd.md"),
        ("tab\there.md", "tabhere.md"),
        ("x" * 300 + ".txt", "x" * 255),
    ],
)
def test_a_files_name_is_its_own_name_only(raw, name):
    assert clean_name(raw) == name


@pytest.mark.parametrize("raw", ["", "   ", "/", "\x00\x01"])
def test_a_file_without_a_name_is_refused(raw):
    with pytest.raises(GatewayError) as refused:
        clean_name(raw)

    assert refused.value.status == 400 and refused.value.param == "file"


def test_the_docx_fixture_round_trips():
    assert "Fact" in extract("f.docx", docx_bytes("Title", "Fact")).text
