"""The chat's "Use my documents" box in Chromium: the answer lists its sources under it,
and the box stays ticked for the next question (screenshots in /work/shots/rag/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from billing.models import UsageRecord
from tests.chat.test_browser import ANSWER_TIMEOUT, fits_the_viewport, signed_in_page
from tests.chat.test_rag_chat import FACT, QUESTION, add_handbook, route_gpt_test

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/work/shots/rag")


@pytest.fixture
def upstream(fake_upstream):
    return route_gpt_test(fake_upstream)


@pytest.mark.parametrize(
    ("label", "width", "height"), [("desktop", 1280, 900), ("phone", 390, 844)]
)
def test_a_grounded_answer_shows_its_sources(
    browser, localhost_url, make_customer, make_conversation, upstream, label, width, height
):
    customer = make_customer()
    document_id = add_handbook(customer.account)
    conversation = make_conversation(customer.user, model="gpt-test")
    page = signed_in_page(browser, customer.user, localhost_url, width, height)
    page.goto(f"{localhost_url}/chat/{conversation.pk}/")
    box = page.get_by_label("Use my documents")
    expect(box).not_to_be_checked()

    box.check()
    page.get_by_role("textbox", name="Message").fill(QUESTION)
    page.get_by_role("button", name="Send").click()

    answer = page.locator(".chat-message.assistant").last
    expect(answer.locator(".chat-sources")).to_contain_text("handbook.md", timeout=ANSWER_TIMEOUT)
    link = answer.get_by_role("link", name="handbook.md")
    expect(link).to_have_attribute("href", f"/documents/#document-{document_id}")
    expect(box).to_be_checked()
    assert FACT in upstream.requests[0].json["messages"][-2]["content"]
    assert UsageRecord.objects.get().rag_sources[0]["document_id"] == document_id
    assert fits_the_viewport(page)
    page.screenshot(path=str(SHOTS / f"chat-sources-{label}.png"), full_page=True)
    page.context.close()
