"""The Documents page in Chromium: upload, search and delete in place, at desktop and
phone widths (screenshots in /work/shots/rag/ for a person to look at)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import expect

from gateway.documents.models import Document
from tests.gateway.document_files import docx_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/work/shots/rag")
FACT = "The Quokka project's launch code is ZEBRA-4417."


def signed_in_page(browser: Any, user: Any, base_url: str, width: int, height: int) -> Any:
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(10_000)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base_url}]
    )
    return context.new_page()


@pytest.mark.parametrize(
    ("label", "width", "height"), [("desktop", 1280, 900), ("phone", 390, 844)]
)
def test_upload_search_and_delete_in_the_page(
    browser, live_server_url, customer, tmp_path, label, width, height
):
    handbook = tmp_path / "handbook.docx"
    handbook.write_bytes(docx_bytes("Launch", FACT, "Only the release manager may use it."))
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    page = signed_in_page(browser, customer.user, live_server_url, width, height)
    page.goto(f"{live_server_url}/")
    if label == "phone":  # the site menu is folded behind its button
        page.get_by_role("button", name="Menu").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Documents").click()
    expect(page).to_have_title("Documents · Switchboard")
    expect(page.get_by_text("No documents yet")).to_be_visible()
    page.evaluate("window.notReloaded = true")

    page.get_by_label("File").set_input_files(str(broken))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-error")).to_contain_text("could not be read as a PDF")
    expect(page.get_by_label("File")).to_be_focused()
    assert not Document.objects.exists()

    page.get_by_label("File").set_input_files(str(handbook))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status")).to_contain_text("Added “handbook.docx”")
    row = page.locator("tr", has_text="handbook.docx")
    expect(row).to_contain_text("Word (docx)")
    assert page.evaluate("window.notReloaded") is True

    page.get_by_label("Question or words").fill("What is the Quokka launch code?")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#search-results")).to_contain_text("ZEBRA-4417")
    expect(page.locator("#search-results")).to_contain_text("handbook.docx")
    assert "q=" in page.url
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(SHOTS / f"documents-{label}.png"), full_page=True)
    # A full-page screenshot leaves style attributes behind that htmx's settling would then
    # copy (a CSP report that no user could cause): carry on in a freshly loaded page.
    page.reload()
    page.evaluate("window.notReloaded = true")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete handbook.docx").click()
    expect(page.get_by_role("status")).to_contain_text("Deleted “handbook.docx”")
    expect(page.locator("tr", has_text="handbook.docx")).to_have_count(0)
    assert not Document.objects.exists()
    assert page.evaluate("window.notReloaded") is True
    page.context.close()
