"""The chat page in headless Chromium against the live ASGI server (uvicorn, websockets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import expect

from billing.models import UsageRecord
from chat.models import Message

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots-chat")
ANSWER_TIMEOUT = 30_000


def signed_in_page(browser: Any, user: Any, base_url: str, width: int, height: int) -> Any:
    """A page whose context carries a session cookie for `user` on `localhost`."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(10_000)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base_url}]
    )
    return context.new_page()


def fits_the_viewport(page: Any) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_a_question_streams_its_answer_and_cost(
    browser, localhost_url, customer, conversation, settings
):
    settings.DEMO_TOKEN_DELAY_MS = 60
    SHOTS.mkdir(exist_ok=True)
    page = signed_in_page(browser, customer.user, localhost_url, 1280, 900)
    page.goto(f"{localhost_url}/chat/{conversation.pk}/")
    box = page.get_by_role("textbox", name="Message")
    expect(box).to_be_focused()
    expect(page.get_by_text("No messages yet.")).to_be_visible()

    box.fill("line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    expect(box).to_have_value("line one\nline two")
    box.fill("Hello **world**, what is `2 < 3`?")
    box.press("Enter")

    expect(box).to_have_value("")
    expect(box).to_be_focused()
    status = page.locator("#chat-status")
    expect(status).to_contain_text("Generating the answer")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_hidden()
    expect(page.get_by_role("log", name="Messages")).to_have_attribute("aria-busy", "true")
    question = page.locator(".chat-message.user").last
    expect(question.locator("strong")).to_have_text("world")
    streaming = page.locator(".chat-text.streaming")
    expect(streaming).to_contain_text("Hello from the Switchboard")
    page.screenshot(path=SHOTS / "streaming-desktop.png", full_page=True)

    cost = page.get_by_test_id("answer-cost")
    expect(cost).to_contain_text("out tokens · $", timeout=ANSWER_TIMEOUT)
    expect(status).to_contain_text("Answer complete")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.get_by_role("log", name="Messages")).to_have_attribute("aria-busy", "false")
    answer = page.locator(".chat-message.assistant").last
    expect(answer).to_contain_text("Hello from the Switchboard demo model.")
    expect(answer.locator("code")).to_have_text("2 < 3")
    expect(page.locator("#chat-title")).to_have_text("Hello world, what is 2 < 3?")
    sidebar = page.get_by_role("navigation", name="Conversations")
    expect(sidebar.get_by_role("link", name="Hello world, what is 2 < 3?")).to_be_visible()
    page.screenshot(path=SHOTS / "answered-desktop.png", full_page=True)

    stored = Message.objects.get(role="assistant")
    record = UsageRecord.objects.get()
    assert record.source == UsageRecord.Source.WEB
    assert stored.request_id == record.request_id
    expect(cost).to_have_text(
        f"{record.prompt_tokens} in + {record.completion_tokens} out tokens · "
        f"${record.cost_micro_usd / 1_000_000:f}".rstrip("0")
    )
    page.context.close()


def test_the_chat_fits_a_phone(browser, localhost_url, customer, conversation, settings):
    settings.DEMO_TOKEN_DELAY_MS = 1
    SHOTS.mkdir(exist_ok=True)
    page = signed_in_page(browser, customer.user, localhost_url, 390, 844)
    page.goto(f"{localhost_url}/chat/")
    assert fits_the_viewport(page)
    page.screenshot(path=SHOTS / "index-phone.png", full_page=True)

    page.goto(f"{localhost_url}/chat/{conversation.pk}/")
    page.get_by_role("textbox", name="Message").fill(
        "A question from a phone, with a long word: " + "x" * 80
    )
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("answer-cost")).to_be_visible(timeout=ANSWER_TIMEOUT)
    assert fits_the_viewport(page)
    page.screenshot(path=SHOTS / "answered-phone.png", full_page=True)

    page.get_by_role("link", name="All conversations").click()
    expect(page.get_by_role("link", name="A question from a phone")).to_be_visible()
    page.context.close()


def test_the_list_and_delete_pages_on_the_desktop(
    browser, localhost_url, customer, make_conversation, settings
):
    SHOTS.mkdir(exist_ok=True)
    chat = make_conversation(customer.user, title="Trip to Lisbon")
    page = signed_in_page(browser, customer.user, localhost_url, 1280, 900)
    page.goto(f"{localhost_url}/chat/")
    page.screenshot(path=SHOTS / "index-desktop.png", full_page=True)
    page.get_by_role("button", name="Start chatting").click()
    expect(page.get_by_role("heading", name="New conversation", level=1)).to_be_visible()
    page.get_by_role("link", name="Trip to Lisbon").click()
    page.get_by_role("link", name="Delete this conversation").click()
    page.screenshot(path=SHOTS / "delete-desktop.png", full_page=True)
    page.get_by_role("button", name="Delete conversation").click()
    expect(page.get_by_text("Deleted “Trip to Lisbon”.")).to_be_visible()
    assert not type(chat).objects.filter(pk=chat.pk).exists()
    page.context.close()


def test_insufficient_credit_is_explained_on_the_page(
    browser, localhost_url, make_customer, make_conversation, settings
):
    settings.DEMO_TOKEN_DELAY_MS = 1
    SHOTS.mkdir(exist_ok=True)
    poor = make_customer(credit_micro_usd=100)
    chat = make_conversation(poor.user)
    page = signed_in_page(browser, poor.user, localhost_url, 390, 844)
    page.goto(f"{localhost_url}/chat/{chat.pk}/")
    box = page.get_by_role("textbox", name="Message")
    box.fill("Hello")
    box.press("Enter")
    expect(page.locator("#chat-status")).to_contain_text("The answer failed")
    answer = page.locator(".chat-message.assistant")
    expect(answer).to_contain_text("Insufficient credits")
    expect(answer.get_by_role("link", name="Add credit")).to_have_attribute("href", "/billing/")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    assert fits_the_viewport(page)
    page.screenshot(path=SHOTS / "insufficient-credit-phone.png", full_page=True)
    assert not UsageRecord.objects.settled().exists()
    page.context.close()
