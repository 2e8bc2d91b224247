"""The console's Documents page: upload, list, search and delete, for the signed-in user."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from gateway.documents.extract import extract
from gateway.documents.library import add_document
from gateway.documents.models import Document
from tests.gateway.document_files import pdf_bytes

pytestmark = pytest.mark.django_db

FACT = "The Quokka project's launch code is ZEBRA-4417."


def add(account, name: str, text: str) -> Document:
    data = text.encode()
    return add_document(account_id=account.pk, extracted=extract(name, data), size_bytes=len(data))


@pytest.fixture
def signed_in(client, customer):
    client.force_login(customer.user)
    return client


def test_it_needs_a_signed_in_user(client):
    response = client.get("/documents/")

    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_an_upload_adds_the_document_and_returns_to_the_page(signed_in, customer):
    response = signed_in.post(
        "/documents/upload/", {"file": SimpleUploadedFile("slides.pdf", pdf_bytes(FACT))}
    )

    assert response.status_code == 302 and response["Location"] == "/documents/"
    document = Document.objects.get()
    assert document.account == customer.account and document.kind == "pdf"
    page = signed_in.get("/documents/").content.decode()
    assert "slides.pdf" in page and "Added “slides.pdf”: 1 passage, ready to search." in page


def test_an_htmx_upload_gets_the_library_part_only(signed_in):
    response = signed_in.post(
        "/documents/upload/",
        {"file": SimpleUploadedFile("notes.md", f"# Launch\n\n{FACT}".encode())},
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 201
    text = response.content.decode()
    assert text.startswith('<section id="library"') and "<html" not in text
    assert "notes.md" in text and "just-added" in text


@pytest.mark.parametrize(
    ("name", "data", "status", "says"),
    [
        ("broken.pdf", b"%PDF-1.4 broken", 400, "could not be read as a PDF"),
        ("tool.exe", b"MZ", 415, "not supported"),
        ("empty.txt", b"", 400, "is empty"),
    ],
)
def test_a_refused_file_shows_why_and_stores_nothing(signed_in, name, data, status, says):
    response = signed_in.post(
        "/documents/upload/",
        {"file": SimpleUploadedFile(name, data)},
        headers={"HX-Request": "true"},
    )

    assert response.status_code == status
    text = response.content.decode()
    assert says in text and 'id="upload-error"' in text and 'aria-invalid="true"' in text
    assert not Document.objects.exists()


def test_a_file_over_the_limit_is_413_on_the_page_too(signed_in, settings):
    settings.DOCUMENT_MAX_BYTES = 100

    response = signed_in.post(
        "/documents/upload/", {"file": SimpleUploadedFile("big.txt", b"x " * 200)}
    )

    assert response.status_code == 413
    assert "the limit is 100" in response.content.decode()


def test_the_search_shows_the_passages_a_question_retrieves(signed_in, customer):
    add(customer.account, "handbook.md", f"# Handbook\n\n## Launch\n\n{FACT}")
    add(customer.account, "lunch.md", "Soup on Tuesdays.")

    full = signed_in.get("/documents/", {"q": "Quokka launch code"}).content.decode()
    part = signed_in.get(
        "/documents/", {"q": "Quokka launch code"}, headers={"HX-Request": "true"}
    ).content.decode()

    assert "ZEBRA-4417" in full and "<html" in full
    assert part.startswith('<div id="search-results"') and "handbook.md" in part
    assert "lunch.md" not in part
    assert "No passage" in signed_in.get("/documents/", {"q": "xylophone"}).content.decode()


def test_another_users_documents_are_never_shown_searched_or_deleted(
    signed_in, customer, make_customer
):
    stranger = make_customer()
    theirs = add(stranger.account, "their-secret.md", FACT)

    page = signed_in.get("/documents/", {"q": "Quokka launch code"}).content.decode()
    response = signed_in.post(f"/documents/{theirs.pk}/delete/")

    assert "their-secret.md" not in page and "ZEBRA" not in page
    assert response.status_code == 404
    assert Document.objects.filter(pk=theirs.pk).exists()


def test_delete_removes_the_document(signed_in, customer):
    mine = add(customer.account, "old.md", "Old notes.")

    response = signed_in.post(f"/documents/{mine.pk}/delete/", headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert "Deleted “old.md”." in response.content.decode()
    assert not Document.objects.exists()


def test_the_page_only_accepts_its_methods(signed_in):
    assert signed_in.post("/documents/").status_code == 405
    assert signed_in.get("/documents/upload/").status_code == 405
    assert signed_in.get("/documents/1/delete/").status_code == 405
