"""The docs pages in headless Chromium: tabs by keyboard, copy buttons, phone width.

Screenshots of each page at 1280 and 390 px go to /tmp/shots-docs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import wait_for_htmx

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots-docs")
PAGES = ["/docs/", "/docs/quickstart/", "/docs/clients/", "/docs/api/"]


@pytest.fixture
def site(settings, live_server_url: str, demo_catalog: None) -> str:
    settings.SITE_URL = live_server_url
    return live_server_url


def test_a_tab_is_switched_with_the_keyboard_and_its_snippet_copied(
    browser: Any, site: str
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        page = context.new_page()
        page.goto(f"{site}/docs/quickstart/")
        section = page.get_by_role("region", name="A first request")
        tablist = section.get_by_role("tablist", name="A first request")
        curl = tablist.get_by_role("tab", name="curl")
        python = tablist.get_by_role("tab", name="Python")
        expect(curl).to_have_attribute("aria-selected", "true")
        expect(section.get_by_role("tabpanel", name="curl")).to_contain_text(
            f"curl {site}/v1/chat/completions"
        )
        expect(page.locator("#panel-first-request-python")).to_be_hidden()

        curl.focus()
        page.keyboard.press("ArrowRight")
        expect(python).to_be_focused()
        expect(python).to_have_attribute("aria-selected", "true")
        expect(curl).to_have_attribute("aria-selected", "false")
        expect(curl).to_have_attribute("tabindex", "-1")
        panel = section.get_by_role("tabpanel", name="Python")
        expect(panel).to_be_visible()
        expect(page.locator("#panel-first-request-curl")).to_be_hidden()
        page.keyboard.press("End")
        expect(tablist.get_by_role("tab", name="JavaScript")).to_be_focused()
        page.keyboard.press("ArrowRight")
        expect(curl).to_be_focused()
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        expect(python).to_be_focused()

        page.keyboard.press("Tab")
        copy = panel.get_by_role("button", name="Copy Python")
        expect(copy).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.get_by_role("status").filter(has_text="Copied")).to_be_attached()
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied.startswith("import os\n\nfrom openai import OpenAI\n")
        assert f'base_url="{site}/v1"' in copied
    finally:
        context.close()


def test_without_javascript_every_panel_shows(browser: Any, site: str) -> None:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, java_script_enabled=False
    )
    try:
        page = context.new_page()
        page.goto(f"{site}/docs/quickstart/")
        for panel in ["curl", "python", "javascript"]:
            expect(page.locator(f"#panel-first-request-{panel}")).to_be_visible()
        expect(page.get_by_role("tablist")).to_have_count(0)
        expect(page.get_by_role("button", name="Copy")).to_have_count(0)
    finally:
        context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_each_docs_page_fits_the_screen(browser: Any, site: str, width: int) -> None:
    SHOTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        for path in PAGES:
            page = context.new_page()
            response = page.goto(site + path)
            assert response is not None and response.status == 200
            wait_for_htmx(page)
            # No sideways scroll for the page: wide code scrolls inside its own block.
            assert page.evaluate("document.documentElement.scrollWidth") <= width, path
            name = path.strip("/").replace("/", "-")
            page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
            page.close()
    finally:
        context.close()
