"""The chat page in headless Chromium against the live ASGI server (uvicorn, websockets)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from billing.models import UsageRecord
from chat.models import Conversation, Message
from chat.views import PAGE_SIZE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("CHAT_SHOTS", "/tmp/shots-chat"))
ANSWER_TIMEOUT = 30_000


def signed_in_page(
    browser: Any, user: Any, base_url: str, width: int, height: int, **options: Any
) -> Any:
    """A page whose context carries a session cookie for `user` on `localhost`."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": width, "height": height}, **options)
    context.set_default_timeout(10_000)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base_url}]
    )
    return context.new_page()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def fits_the_viewport(page: Any) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def wait_until(page: Any, script: str) -> None:
    """Poll a page expression (wait_for_function would evaluate a string, which the CSP refuses)."""
    for _ in range(200):
        if page.evaluate(script):
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"never true: {script}")


def answered(page: Any, count: int = 1) -> None:
    expect(page.get_by_test_id("answer-cost")).to_have_count(count, timeout=ANSWER_TIMEOUT)
    expect(page.locator("#chat-status")).to_contain_text("Answer complete")


@pytest.fixture
def second_model(demo_catalog: None) -> Any:
    """ "Demo Plus": the demo provider behind another id and dearer prices."""
    from gateway.catalog import invalidate_catalog
    from gateway.models import Model, Provider, Route

    model = Model.objects.create(
        id="demo-plus",
        title="Demo Plus",
        context_length=16_000,
        max_output_tokens=1_000,
        input_price=3_000_000,
        output_price=6_000_000,
    )
    Route.objects.create(
        model=model, provider=Provider.objects.get(name="demo"), upstream_model="demo"
    )
    invalidate_catalog()
    return model


def test_a_question_streams_its_answer_as_markdown_and_shows_its_cost(
    browser, localhost_url, customer, conversation, settings
):
    settings.DEMO_TOKEN_DELAY_MS = 60
    page = signed_in_page(browser, customer.user, localhost_url, 1280, 900)
    page.goto(f"{localhost_url}/chat/{conversation.pk}/")
    box = page.get_by_role("textbox", name="Message")
    expect(box).to_be_focused()
    expect(page.get_by_text("No messages yet.")).to_be_visible()
    expect(page.get_by_text("Enter sends · Shift+Enter adds a new line")).to_be_visible()

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
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_hidden()
    expect(page.get_by_role("list", name="Messages")).to_have_attribute("aria-busy", "true")
    question = page.locator(".chat-message.user").last
    expect(question.locator("strong")).to_have_text("world")
    # Markdown is rendered while the answer streams, not only at the end.
    streaming = page.locator(".chat-text.streaming")
    expect(streaming.locator("strong")).to_have_text("world")
    expect(streaming).to_contain_text("what is 2 < 3")
    shot(page, "streaming-desktop")

    cost = page.get_by_test_id("answer-cost")
    expect(cost).to_contain_text("out tokens · $", timeout=ANSWER_TIMEOUT)
    expect(status).to_contain_text("Answer complete")
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.get_by_role("list", name="Messages")).to_have_attribute("aria-busy", "false")
    answer = page.locator(".chat-message.assistant").last
    expect(answer).to_contain_text("Hello from the Switchboard demo model.")
    expect(answer.locator("code")).to_have_text("2 < 3")
    expect(page.locator("#chat-title")).to_have_text("Hello world, what is 2 < 3?")
    sidebar = page.get_by_role("navigation", name="Conversations")
    expect(sidebar.get_by_role("link", name="Hello world, what is 2 < 3?")).to_be_visible()
    record = UsageRecord.objects.settled().get()
    expect(page.get_by_test_id("conversation-cost")).to_have_text(
        f"${record.cost_micro_usd / 1_000_000:f}".rstrip("0")
    )
    expect(page.get_by_test_id("context-used")).not_to_have_text("0")
    shot(page, "answered-desktop")

    stored = Message.objects.get(role="assistant")
    assert record.source == UsageRecord.Source.WEB
    assert stored.request_id == record.request_id
    expect(cost).to_have_text(
        f"{record.prompt_tokens} in + {record.completion_tokens} out tokens · "
        f"${record.cost_micro_usd / 1_000_000:f}".rstrip("0")
    )
    page.context.close()


def test_the_view_follows_the_stream_unless_the_reader_scrolled_up(
    browser, localhost_url, customer, conversation, settings
):
    settings.DEMO_TOKEN_DELAY_MS = 80
    for n in range(8):
        conversation.messages.create(role="user", content=f"Earlier question {n}")
        conversation.messages.create(role="assistant", content="An earlier answer.\n\n" * 4)
    page = signed_in_page(browser, customer.user, localhost_url, 1280, 700)
    page.goto(f"{localhost_url}/chat/{conversation.pk}/")
    box = page.get_by_role("textbox", name="Message")
    box.fill("Follow me")
    box.press("Enter")
    expect(page.locator(".chat-text.streaming")).to_contain_text("Hello from")
    at_bottom = "window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 130"
    wait_until(page, at_bottom)
    page.mouse.wheel(0, -2000)
    wait_until(
        page, "window.scrollY < document.documentElement.scrollHeight - 2 * window.innerHeight"
    )
    scrolled = page.evaluate("window.scrollY")
    answered(page)
    assert page.evaluate("window.scrollY") == scrolled
    page.context.close()


def test_the_conversation_list_is_by_latest_activity_searchable_and_pages(
    browser, localhost_url, customer, make_conversation, settings
):
    settings.DEMO_TOKEN_DELAY_MS = 0
    now = timezone.now()
    made = [make_conversation(customer.user, title=f"Chat {n:02}") for n in range(PAGE_SIZE + 2)]
    for n, chat in enumerate(made):
        Conversation.objects.filter(pk=chat.pk).update(updated_at=now - timedelta(minutes=100 - n))
    oldest = made[0]
    oldest.messages.create(role="assistant", content="We talked about Lisbon trams.")
    page = signed_in_page(browser, customer.user, localhost_url, 1280, 900)
    page.goto(f"{localhost_url}/chat/{oldest.pk}/")
    sidebar = page.get_by_role("navigation", name="Conversations")
    titles = sidebar.locator(".conversation-title")
    expect(titles).to_have_count(PAGE_SIZE)
    expect(titles.first).to_have_text(f"Chat {PAGE_SIZE + 1:02}")

    sidebar.get_by_role("link", name="Load more conversations").click()
    expect(titles).to_have_count(PAGE_SIZE + 2)
    expect(titles.last).to_have_text("Chat 00")
    expect(sidebar.get_by_role("link", name="Load more conversations")).to_have_count(0)

    box = page.get_by_role("textbox", name="Message")
    box.fill("Back to the first chat")
    box.press("Enter")
    answered(page)
    page.reload()
    expect(titles.first).to_have_text("Chat 00")

    sidebar.get_by_role("searchbox", name="Search conversations").fill("trams")
    expect(titles).to_have_count(1)
    expect(titles.first).to_have_text("Chat 00")
    expect(sidebar.get_by_role("link", name="Chat 00")).to_have_attribute("aria-current", "page")
    shot(page, "search-desktop")
    sidebar.get_by_role("searchbox", name="Search conversations").fill("no such words")
    expect(sidebar.get_by_text("No conversation matches")).to_be_visible()
    page.context.close()


def test_the_model_can_be_switched_mid_thread_with_its_price_shown(
    browser, localhost_url, customer, conversation, second_model, settings
):
    settings.DEMO_TOKEN_DELAY_MS = 0
    page = signed_in_page(browser, customer.user, localhost_url, 1280, 900)
    page.goto(f"{localhost_url}/chat/{conversation.pk}/")
    box = page.get_by_role("textbox", name="Message")
    box.fill("First, on the demo model")
    box.press("Enter")
    answered(page)

    page.locator("summary", has_text="Settings").click()
    model = page.locator("#chat-settings").get_by_label("Model", exact=True)
    expect(model.locator("option[value=demo-plus]")).to_contain_text(
        "$3.00 in / $6.00 out per 1M tokens"
    )
    model.select_option("demo-plus")
    page.get_by_label("System prompt").fill("Be brief.")
    page.get_by_label("Temperature").fill("0.5")
    page.get_by_label("Max answer tokens").fill("300")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Saved. The next answer uses these settings.")).to_be_visible()
    expect(page.locator("#chat-model")).to_contain_text("demo-plus")
    expect(page.locator("#chat-model")).to_contain_text("$3.00 in / $6.00 out per 1M tokens")
    expect(page.locator(".chat-meter")).to_contain_text("of 16,000 tokens")
    shot(page, "settings-desktop")

    box.fill("Then on the dearer one")
    box.press("Enter")
    answered(page, 2)
    models = page.locator(".chat-message.assistant .chat-answer-model")
    expect(models).to_have_text(["demo", "demo-plus"])
    first, second = UsageRecord.objects.settled().order_by("created_at", "id")
    assert (first.model, second.model) == ("demo", "demo-plus")
    assert second.cost_micro_usd > first.cost_micro_usd

    page.get_by_label("Temperature").fill("7")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Ensure this value is less than or equal to 2.")).to_be_visible()
    expect(page.get_by_label("Temperature")).to_have_attribute("aria-invalid", "true")
    conversation.refresh_from_db()
    assert (conversation.model, str(conversation.temperature), conversation.max_tokens) == (
        "demo-plus",
        "0.50",
        300,
    )
    page.context.close()


def test_copy_regenerate_and_edit_and_resend(
    browser, localhost_url, customer, conversation, settings
):
    settings.DEMO_TOKEN_DELAY_MS = 0
    page = signed_in_page(
        browser,
        customer.user,
        localhost_url,
        1280,
        900,
        permissions=["clipboard-read", "clipboard-write"],
    )
    page.goto(f"{localhost_url}/chat/{conversation.pk}/")
    box = page.get_by_role("textbox", name="Message")
    box.fill("Colour of the sky?")
    box.press("Enter")
    answered(page)
    first = Message.objects.get(role="assistant")

    answer = page.locator(".chat-message.assistant").last
    answer.get_by_role("button", name="Copy").click()
    expect(answer.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == first.content

    answer.get_by_role("button", name="Regenerate").click()
    expect(page.locator(f"#message-{first.pk}")).to_have_count(0, timeout=ANSWER_TIMEOUT)
    answered(page)
    expect(page.locator(".chat-message.assistant")).to_have_count(1)
    assert UsageRecord.objects.settled().count() == 2

    question = page.locator(".chat-message.user").last
    question.get_by_role("button", name="Edit and resend this message").click()
    expect(page.get_by_text("Edit your last message")).to_be_visible()
    expect(box).to_have_value("Colour of the sky?")
    box.fill("Colour of the sea?")
    box.press("Enter")
    expect(page.locator(".chat-message.user")).to_have_count(1)
    expect(page.locator(".chat-message.user")).to_contain_text(
        "Colour of the sea?", timeout=ANSWER_TIMEOUT
    )
    answered(page)
    expect(page.locator(".chat-message.assistant")).to_contain_text(
        'You said: "Colour of the sea?"'
    )
    expect(page.get_by_text("Edit your last message")).to_be_hidden()
    assert UsageRecord.objects.settled().count() == 3
    assert Message.objects.filter(replaced=True).count() == 3
    shot(page, "after-edit-desktop")
    page.context.close()


def test_code_in_an_answer_is_highlighted_named_and_copyable(
    browser, localhost_url, customer, conversation
):
    code = "def add(a, b):\n    return a + b"
    conversation.messages.create(role="user", content="Show me a table and some code")
    conversation.messages.create(
        role="assistant",
        content=(
            "| Name | Price |\n|:--|--:|\n| tea | $2 |\n\n- [x] done\n- [ ] ~~todo~~\n\n"
            f"```python\n{code}\n```\n\n"
            "[a link](https://example.com) and [bad](javascript:alert(1))"
        ),
    )
    page = signed_in_page(
        browser,
        customer.user,
        localhost_url,
        1280,
        900,
        permissions=["clipboard-read", "clipboard-write"],
    )
    page.goto(f"{localhost_url}/chat/{conversation.pk}/")
    block = page.locator(".code-block")
    expect(block.locator(".code-language")).to_have_text("Python")
    expect(block.locator("pre .k").first).to_have_text("def")
    color = block.locator("pre .k").first.evaluate("e => getComputedStyle(e).color")
    assert color != block.locator("pre").evaluate("e => getComputedStyle(e).color")
    block.get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == code + "\n"
    expect(page.locator(".chat-text table td.align-right")).to_have_text("$2")
    expect(page.locator(".chat-text input[type=checkbox]")).to_have_count(2)
    link = page.get_by_role("link", name="a link")
    expect(link).to_have_attribute("rel", "noopener nofollow noreferrer")
    expect(page.get_by_role("link", name="bad")).to_have_count(0)
    shot(page, "markdown-desktop")
    page.set_viewport_size({"width": 390, "height": 844})
    assert fits_the_viewport(page)
    shot(page, "markdown-phone")
    page.context.close()


def test_rename_and_delete(browser, localhost_url, customer, make_conversation):
    chat = make_conversation(customer.user, title="Trip to Lisbon")
    page = signed_in_page(browser, customer.user, localhost_url, 1280, 900)
    page.goto(f"{localhost_url}/chat/{chat.pk}/")
    page.get_by_text("Rename", exact=True).click()
    title = page.get_by_label("Title")
    title.fill("Trip to Porto")
    page.get_by_role("button", name="Save title").click()
    expect(page.locator("#chat-title")).to_have_text("Trip to Porto")
    sidebar = page.get_by_role("navigation", name="Conversations")
    expect(sidebar.get_by_role("link", name="Trip to Porto")).to_be_visible()
    chat.refresh_from_db()
    assert chat.title == "Trip to Porto"

    page.get_by_role("link", name="Delete this conversation").click()
    shot(page, "delete-desktop")
    page.get_by_role("button", name="Delete conversation").click()
    expect(page.get_by_text("Deleted “Trip to Porto”.")).to_be_visible()
    assert not Conversation.objects.filter(pk=chat.pk).exists()
    page.context.close()


def test_the_chat_fits_a_phone_with_a_collapsible_sidebar(
    browser, localhost_url, customer, conversation, make_conversation, settings
):
    settings.DEMO_TOKEN_DELAY_MS = 1
    make_conversation(customer.user, title="An older chat")
    page = signed_in_page(
        browser, customer.user, localhost_url, 390, 844, has_touch=True, is_mobile=True
    )
    page.goto(f"{localhost_url}/chat/")
    assert fits_the_viewport(page)
    shot(page, "index-phone")

    page.goto(f"{localhost_url}/chat/{conversation.pk}/")
    toggle = page.get_by_role("button", name="Conversations")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_role("link", name="An older chat")).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("link", name="An older chat")).to_be_visible()
    shot(page, "sidebar-open-phone")
    toggle.click()
    expect(page.get_by_role("link", name="An older chat")).to_be_hidden()

    # On a touch screen Enter makes a new line; the Send button sends.
    expect(page.get_by_text("The Send button sends · Enter adds a new line")).to_be_visible()
    box = page.get_by_role("textbox", name="Message")
    box.fill("A question from a phone")
    box.press("Enter")
    box.press_sequentially("with a long word: " + "x" * 80)
    expect(box).to_have_value("A question from a phone\nwith a long word: " + "x" * 80)
    assert not Message.objects.exists()
    page.get_by_role("button", name="Send", exact=True).tap()
    answered(page)
    assert fits_the_viewport(page)
    shot(page, "answered-phone")
    page.context.close()


def test_a_message_over_the_limit_shows_a_counter_and_is_not_sent(
    browser, localhost_url, customer, conversation
):
    page = signed_in_page(browser, customer.user, localhost_url, 1280, 900)
    page.goto(f"{localhost_url}/chat/{conversation.pk}/")
    box = page.get_by_role("textbox", name="Message")
    box.fill("y" * 32_005)
    expect(page.get_by_text("32,005 / 32,000 characters: 5 too many to send")).to_be_visible()
    expect(box).to_have_attribute("aria-invalid", "true")
    box.press("Enter")
    expect(box).to_have_value("y" * 32_005)
    assert not Message.objects.exists()
    page.context.close()


def test_insufficient_credit_is_explained_with_a_link_to_billing(
    browser, localhost_url, make_customer, make_conversation, settings
):
    settings.DEMO_TOKEN_DELAY_MS = 1
    poor = make_customer(credit_micro_usd=100)
    chat = make_conversation(poor.user)
    page = signed_in_page(browser, poor.user, localhost_url, 390, 844)
    page.goto(f"{localhost_url}/chat/{chat.pk}/")
    box = page.get_by_role("textbox", name="Message")
    box.fill("Hello")
    box.press("Enter")
    expect(page.locator("#chat-status")).to_contain_text("The answer failed")
    answer = page.locator(".chat-message.assistant")
    expect(answer.get_by_role("alert")).to_contain_text("Not enough credit for this answer.")
    expect(answer).to_contain_text("Insufficient credits")
    link = answer.get_by_role("link", name="Add credit on the Billing page")
    expect(link).to_have_attribute("href", "/billing/")
    expect(answer.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()
    assert fits_the_viewport(page)
    shot(page, "insufficient-credit-phone")
    assert not UsageRecord.objects.settled().exists()
    page.context.close()
