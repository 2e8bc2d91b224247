"""/v1/documents: upload, list, read, search and delete an account's documents.

Every bad file is refused with a clear OpenAI error object and stores nothing; another
account's document is never seen, searched or deleted.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from gateway.documents.models import Document, Passage
from tests.gateway.document_files import docx_bytes, pdf_bytes, zip_bytes

pytestmark = pytest.mark.django_db(transaction=True)

FACT = "The Quokka project's launch code is ZEBRA-4417."


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def upload(secret: str, name: str, data: bytes, field: str = "file") -> Any:
    return Client().post(
        "/v1/documents", {field: SimpleUploadedFile(name, data)}, headers=auth(secret)
    )


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


GOOD_FILES = [
    ("notes.txt", FACT.encode(), "txt"),
    ("notes.md", f"# Launch\n\n{FACT}\n".encode(), "md"),
    ("page.html", f"<h1>Launch</h1><p>{FACT}</p><script>ignored()</script>".encode(), "html"),
    ("slides.pdf", pdf_bytes(FACT), "pdf"),
    ("memo.docx", docx_bytes("Launch", FACT), "docx"),
    ("bom.txt", b"\xef\xbb\xbf" + FACT.encode(), "txt"),
]


@pytest.mark.parametrize(("name", "data", "kind"), GOOD_FILES, ids=[f[0] for f in GOOD_FILES])
def test_it_stores_each_kind_of_file_as_searchable_passages(customer, name, data, kind):
    response = upload(customer.secret, name, data)

    assert response.status_code == 201, response.content
    document = response.json()
    assert document["object"] == "document" and document["type"] == kind
    assert document["name"] == name and document["bytes"] == len(data)
    assert document["passages"] >= 1
    stored = Passage.objects.filter(document_id=document["id"])
    assert "ZEBRA-4417" in " ".join(stored.values_list("text", flat=True))
    assert "ignored()" not in " ".join(stored.values_list("text", flat=True))

    found = Client().get(
        "/v1/documents/search",
        {"q": "What is the launch code of Quokka?"},
        headers=auth(customer.secret),
    )
    assert found.status_code == 200
    hits = found.json()["data"]
    assert hits and hits[0]["document_id"] == document["id"]
    assert "ZEBRA-4417" in hits[0]["text"]


BAD_FILES: list[tuple[str, str, bytes, int, str]] = [
    ("empty", "empty.txt", b"", 400, "empty_file"),
    ("blank", "blank.md", b"  \n\n\t ", 400, "no_text"),
    ("not-utf8", "latin1.txt", "café crème".encode("latin-1"), 400, "unreadable_file"),
    ("nul-bytes", "binary.txt", b"abc\x00def", 400, "unreadable_file"),
    ("wrong-type", "program.exe", b"MZ\x90\x00", 415, "unsupported_file_type"),
    ("no-extension", "README", b"hello", 415, "unsupported_file_type"),
    ("corrupt-pdf", "broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", 400, "unreadable_file"),
    ("pdf-that-is-text", "fake.pdf", b"just some text", 400, "unreadable_file"),
    ("truncated-pdf", "cut.pdf", pdf_bytes(FACT)[:60], 400, "unreadable_file"),
    ("pdf-without-text", "blank.pdf", pdf_bytes(), 400, "no_text"),
    ("docx-not-zip", "memo.docx", b"PK but not really a zip", 400, "unreadable_file"),
    ("docx-other-zip", "memo.docx", zip_bytes(**{"a.txt": b"hello"}), 400, "unreadable_file"),
    ("docx-truncated", "memo.docx", docx_bytes("T", FACT)[:500], 400, "unreadable_file"),
    ("html-only-script", "page.html", b"<script>alert(1)</script>", 400, "no_text"),
]


@pytest.mark.parametrize(
    ("name", "data", "status", "code"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_a_bad_file_gets_a_clear_error_and_stores_nothing(customer, name, data, status, code):
    response = upload(customer.secret, name, data)

    assert response.status_code == status, response.content
    error = error_of(response)
    assert error["code"] == code and error["param"] == "file"
    assert not Document.objects.exists() and not Passage.objects.exists()


def test_a_file_over_the_size_limit_is_413(customer, settings):
    settings.DOCUMENT_MAX_BYTES = 1000

    response = upload(customer.secret, "big.txt", b"word " * 300)

    assert response.status_code == 413
    assert error_of(response)["code"] == "document_too_large"
    assert not Document.objects.exists()


def test_a_body_far_over_the_limit_is_refused_before_it_is_parsed(customer, settings):
    settings.DOCUMENT_MAX_BYTES = 1000

    response = upload(customer.secret, "big.txt", b"word " * 40_000)

    assert response.status_code == 413
    assert "limit" in error_of(response)["message"]


def test_text_over_the_character_limit_is_413(customer, settings):
    settings.DOCUMENT_MAX_CHARS = 100

    response = upload(customer.secret, "long.md", b"many words " * 20)

    assert response.status_code == 413
    assert "characters" in error_of(response)["message"]
    assert not Document.objects.exists()


def test_the_count_limit_per_account_is_403_and_names_the_limit(customer, settings):
    settings.DOCUMENTS_MAX_PER_ACCOUNT = 2
    assert upload(customer.secret, "a.txt", b"alpha").status_code == 201
    assert upload(customer.secret, "b.txt", b"beta").status_code == 201

    response = upload(customer.secret, "c.txt", b"gamma")

    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "document_limit_reached" and "2 documents" in error["message"]
    assert Document.objects.count() == 2


BAD_REQUESTS: list[tuple[str, dict[str, Any], int]] = [
    ("json-body", {"data": b'{"file": "x"}', "content_type": "application/json"}, 400),
    ("no-file-field", {"data": {"other": SimpleUploadedFile("a.txt", b"x")}}, 400),
    ("file-as-text-field", {"data": {"file": "just a string"}}, 400),
    (
        "two-files",
        {"data": {"file": [SimpleUploadedFile("a.txt", b"x"), SimpleUploadedFile("b.txt", b"y")]}},
        400,
    ),
    (
        "broken-multipart",
        {
            "data": b"--b\r\nContent-Disposition: form-data; name=file; filename=a.txt\r\n",
            "content_type": "multipart/form-data; boundary=b",
        },
        400,
    ),
    ("multipart-without-boundary", {"data": b"x", "content_type": "multipart/form-data"}, 400),
]


@pytest.mark.parametrize(
    ("kwargs", "status"), [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS]
)
def test_a_malformed_upload_request_is_a_400(customer, kwargs, status):
    response = Client().post("/v1/documents", headers=auth(customer.secret), **kwargs)

    assert response.status_code == status, response.content
    assert error_of(response)["param"] == "file"
    assert not Document.objects.exists()


def test_it_lists_reads_and_deletes_documents(customer):
    first = upload(customer.secret, "one.txt", b"first document").json()
    second = upload(customer.secret, "two.md", b"second document").json()

    listing = Client().get("/v1/documents", headers=auth(customer.secret)).json()
    assert listing["object"] == "list"
    assert [d["id"] for d in listing["data"]] == [second["id"], first["id"]]
    one = Client().get(f"/v1/documents/{first['id']}", headers=auth(customer.secret))
    assert one.status_code == 200 and one.json() == first

    deleted = Client().delete(f"/v1/documents/{first['id']}", headers=auth(customer.secret))

    assert deleted.status_code == 200
    assert deleted.json() == {"id": first["id"], "object": "document.deleted", "deleted": True}
    assert not Passage.objects.filter(document_id=first["id"]).exists()
    found = Client().get("/v1/documents/search", {"q": "first"}, headers=auth(customer.secret))
    assert found.json()["data"] == []
    again = Client().delete(f"/v1/documents/{first['id']}", headers=auth(customer.secret))
    assert again.status_code == 404


def test_another_accounts_document_is_a_404_and_never_found(make_customer):
    owner, stranger = make_customer(), make_customer()
    document = upload(owner.secret, "secret.txt", FACT.encode()).json()

    for method in ("get", "delete"):
        response = getattr(Client(), method)(
            f"/v1/documents/{document['id']}", headers=auth(stranger.secret)
        )
        assert response.status_code == 404
        assert error_of(response)["code"] == "document_not_found"
    assert Client().get("/v1/documents", headers=auth(stranger.secret)).json()["data"] == []
    found = Client().get(
        "/v1/documents/search", {"q": "Quokka launch code ZEBRA"}, headers=auth(stranger.secret)
    )
    assert found.json()["data"] == []
    assert Document.objects.filter(pk=document["id"]).exists()


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1/documents", "get"),
        ("/v1/documents", "post"),
        ("/v1/documents/1", "delete"),
        ("/v1/documents/search?q=x", "get"),
    ],
)
def test_it_needs_a_key(path, method):
    response = getattr(Client(), method)(path)

    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({}, "q"),
        ({"q": "  "}, "q"),
        ({"q": "x" * 2001}, "q"),
        ({"q": "x", "top_k": "0"}, "top_k"),
        ({"q": "x", "top_k": "21"}, "top_k"),
        ({"q": "x", "top_k": "two"}, "top_k"),
        ({"q": "x", "top_k": "-1"}, "top_k"),
    ],
)
def test_a_bad_search_is_a_400_naming_the_parameter(customer, query, param):
    response = Client().get("/v1/documents/search", query, headers=auth(customer.secret))

    assert response.status_code == 400
    assert error_of(response)["param"] == param


@pytest.mark.parametrize(
    "query",
    [
        '"',
        "AND OR NOT",
        "NEAR(a b)",
        "col:val",
        "a* ^b -c",
        "'; DROP TABLE x; --",
        "!!! ???",
        "ZEBRA-4417 OR 1=1",
        "日本語のテキスト",
    ],
)
def test_search_syntax_in_a_question_is_read_as_words(customer, query):
    upload(customer.secret, "notes.txt", FACT.encode())

    response = Client().get("/v1/documents/search", {"q": query}, headers=auth(customer.secret))

    assert response.status_code == 200, response.content
    assert isinstance(response.json()["data"], list)


def test_the_wrong_method_is_a_405(customer):
    response = Client().put("/v1/documents", headers=auth(customer.secret))

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
