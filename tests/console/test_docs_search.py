"""/docs/search/: the docs' own sections, found by every word of the query."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def results(client, query: str) -> list:
    response = client.get("/docs/search/", {"q": query})
    assert response.status_code == 200
    return response.context["results"]


@pytest.mark.parametrize(
    ("query", "url"),
    [
        ("Idempotency-Key", "/docs/api/#idempotency-key"),
        ("claude code", "/docs/clients/#claude-code"),
        ("streamed answer", "/docs/quickstart/#stream"),
        ("tool calls", "/docs/quickstart/#tools"),
        ("insufficient_credits", "/docs/api/#errors"),
        ("x-ratelimit-remaining", "/docs/api/#rate-limit-headers"),
    ],
)
def test_a_query_finds_the_section_that_answers_it(client, demo_catalog, query, url):
    assert url in [result.section.url for result in results(client, query)]


def test_every_word_must_match_and_headings_rank_first(client, demo_catalog):
    found = results(client, "idempotency")

    assert found[0].section.title == "Idempotency-Key"
    assert results(client, "idempotency zebra-crossing") == []


@pytest.mark.parametrize("query", ["", "   ", "\x00", "<script>", "a" * 500])
def test_an_empty_or_odd_query_is_answered_plainly(client, query):
    response = client.get("/docs/search/", {"q": query})

    assert response.status_code == 200
    assert "<script>" not in response.content.decode().split("<main", 1)[1].split("</main>")[0]


def test_each_docs_page_has_the_search_box(client, demo_catalog):
    for path in ["/docs/", "/docs/quickstart/", "/docs/clients/", "/docs/api/"]:
        assert 'action="/docs/search/"' in client.get(path).content.decode()


def test_the_quickstart_has_a_tool_call_sample_in_three_languages(client, demo_catalog):
    body = client.get("/docs/quickstart/").content.decode()

    for snippet in ("tools-curl", "tools-python", "tools-javascript"):
        assert f'id="code-{snippet}"' in body
