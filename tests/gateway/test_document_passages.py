"""Splitting a document's text into passages: bounded, under their headings, overlapping."""

from __future__ import annotations

import itertools

import pytest

from gateway.documents.passages import OVERLAP_CHARS, PASSAGE_CHARS, split


def test_headings_start_sections_and_each_passage_keeps_its_heading():
    text = "Intro line.\n\n# Pricing\n\nTen dollars.\n\n## Refunds\n\nWithin 30 days.\n"

    pieces = split(text)

    assert [(p.heading, p.text) for p in pieces] == [
        ("", "Intro line."),
        ("Pricing", "Ten dollars."),
        ("Refunds", "Within 30 days."),
    ]


def test_lines_of_one_paragraph_are_joined_and_paragraphs_packed_together():
    pieces = split("first line\nsecond line\n\nnext paragraph")

    assert [p.text for p in pieces] == ["first line second line\n\nnext paragraph"]


@pytest.mark.parametrize(
    "text",
    [
        "word " * 2_000,
        "A sentence that ends. " * 400,
        "x" * 5_000,
        "\n\n".join(f"Paragraph {n} " + "text " * 50 for n in range(40)),
    ],
    ids=["words", "sentences", "one-long-token", "paragraphs"],
)
def test_every_passage_is_bounded_and_the_next_repeats_the_end_of_the_one_before(text):
    pieces = split(text)

    assert len(pieces) > 1
    assert all(0 < len(p.text) <= PASSAGE_CHARS for p in pieces)
    rebuilt = [pieces[0].text]
    for before, after in itertools.pairwise(pieces):
        overlap, rest = after.text.split("\n\n", 1)
        assert len(overlap) <= OVERLAP_CHARS and before.text.endswith(overlap)
        rebuilt.append(rest)
    # Without the overlaps, the passages are the text again: nothing lost, nothing twice.
    assert "".join("".join(rebuilt).split()) == "".join(text.split())


def test_a_heading_with_nothing_under_it_is_still_a_passage():
    assert [(p.heading, p.text) for p in split("# Only a title")] == [
        ("Only a title", "Only a title")
    ]


@pytest.mark.parametrize("line", ["#hashtag", "####### seven", "#"])
def test_lines_that_only_look_like_headings_are_text(line):
    assert [p.heading for p in split(line)] == [""]
