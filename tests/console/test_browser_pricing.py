"""The pricing page filters as you type, in the page, and links each model to its page."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from gateway.models import Model, Provider, Route

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def catalog(demo_catalog: None) -> None:
    demo = Provider.objects.get(name="demo")
    for model_id, title in [("gpt-mini", "GPT Mini"), ("claude-big", "Claude Big")]:
        model = Model.objects.create(id=model_id, title=title, input_price=1, output_price=2)
        Route.objects.create(model=model, provider=demo, upstream_model="demo")


def rows(page: Any) -> Any:
    return page.locator("#pricing-table tbody tr:visible")


def test_typing_filters_the_rows_without_asking_the_server(
    browser: Any, live_server_url: str, catalog: None
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server_url}/pricing/")
    expect(rows(page)).to_have_count(3)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))

    page.get_by_label("Search models").press_sequentially("claude")

    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("Claude Big")
    expect(page.locator("#pricing-count")).to_have_text("1 model matching “claude”.")
    assert [url for url in asked if "/pricing/" in url] == []
    assert page.url.endswith("/pricing/?q=claude")

    page.get_by_label("Search models").fill("nothing-like-this")
    expect(page.locator("#pricing-empty")).to_be_visible()
    page.get_by_label("Search models").fill("")
    expect(rows(page)).to_have_count(3)

    page.get_by_role("link", name="Claude Big").click()
    expect(page).to_have_title("Claude Big · Switchboard")
    context.close()


def test_a_page_the_server_filtered_widens_as_the_query_does(
    browser: Any, live_server_url: str, catalog: None
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server_url}/pricing/?q=claude-big")
    expect(rows(page)).to_have_count(1)

    page.get_by_label("Search models").fill("mini")

    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("GPT Mini")
    page.get_by_label("Search models").fill("")
    expect(rows(page)).to_have_count(3)
    page.get_by_label("Sort by").select_option("input")
    expect(rows(page)).to_have_count(3)
    context.close()
