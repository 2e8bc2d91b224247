"""The chat pages: list and new conversation, the conversation page, delete."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from chat.models import MAX_SYSTEM_PROMPT_CHARS, Conversation, Message
from chat.views import PAGE_SIZE

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, customer):
    client.force_login(customer.user)
    return client


def test_the_list_shows_only_the_users_conversations(
    signed_in, customer, make_customer, make_conversation
):
    make_conversation(customer.user, title="Mine")
    make_conversation(make_customer().user, title="Someone else's")
    page = signed_in.get("/chat/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Mine" in html
    assert "Someone else" not in html
    assert '<option value="demo" selected>' in html
    assert 'href="/chat/"' in html  # the nav link


def test_the_pages_send_anonymous_visitors_to_sign_in(client, conversation):
    for url in ("/chat/", f"/chat/{conversation.pk}/", f"/chat/{conversation.pk}/delete/"):
        page = client.get(url)
        assert page.status_code == 302
        assert page["Location"].startswith("/accounts/login/")
    assert client.post("/chat/new/", {"model": "demo"}).status_code == 302
    assert not Conversation.objects.exclude(pk=conversation.pk).exists()


def test_a_new_conversation_uses_the_chosen_model(signed_in, customer, demo_catalog):
    page = signed_in.post("/chat/new/", {"model": "demo"})
    conversation = Conversation.objects.get()
    assert page.status_code == 302
    assert page["Location"] == f"/chat/{conversation.pk}/"
    assert (conversation.user, conversation.model) == (customer.user, "demo")


def test_an_unknown_model_is_refused(signed_in, demo_catalog):
    page = signed_in.post("/chat/new/", {"model": "nope"})
    assert page.status_code == 400
    assert 'aria-invalid="true"' in page.content.decode()
    assert not Conversation.objects.exists()


def test_the_list_and_create_views_answer_only_their_methods(signed_in, demo_catalog):
    assert signed_in.post("/chat/").status_code == 405
    assert signed_in.get("/chat/new/").status_code == 405


def test_the_owner_sees_the_history_with_costs(signed_in, conversation):
    conversation.messages.create(role="user", content="Is <b>this</b> **safe**?")
    conversation.messages.create(
        role="assistant",
        content="Yes: `<script>` stays text.",
        request_id="req_1",
        prompt_tokens=12,
        completion_tokens=30,
        cost_micro_usd=72,
    )
    page = signed_in.get(f"/chat/{conversation.pk}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Is &lt;b&gt;this&lt;/b&gt; <strong>safe</strong>?" in html
    assert "<code>&lt;script&gt;</code>" in html
    assert "<script>" not in html.split("<main")[1].split("</main>")[0]
    assert "12 in + 30 out tokens · $0.000072" in html
    assert f'ws-connect="/ws/chat/{conversation.pk}/"' in html
    assert "hx-ws-2" in html
    assert '<label for="id_message" data-composer-label>Message</label>' in html


def test_an_answer_cut_off_by_a_crash_says_so(signed_in, conversation):
    conversation.messages.create(role="assistant", status=Message.Status.STREAMING)
    html = signed_in.get(f"/chat/{conversation.pk}/").content.decode()
    assert "This answer was interrupted." in html


def test_another_users_conversation_is_not_found(client, make_customer, conversation):
    client.force_login(make_customer().user)
    assert client.get(f"/chat/{conversation.pk}/").status_code == 404
    assert client.get(f"/chat/{conversation.pk}/delete/").status_code == 404
    assert client.post(f"/chat/{conversation.pk}/delete/").status_code == 404
    assert client.post(f"/chat/{conversation.pk}/rename/", {"title": "Mine"}).status_code == 404
    settings = {"model": "demo", "system_prompt": "Be rude", "temperature": "1"}
    assert client.post(f"/chat/{conversation.pk}/settings/", settings).status_code == 404
    conversation.refresh_from_db()
    assert (conversation.title, conversation.system_prompt) == ("", "")
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_delete_asks_first_then_deletes(signed_in, conversation):
    conversation.messages.create(role="user", content="hi")
    confirm = signed_in.get(f"/chat/{conversation.pk}/delete/")
    assert confirm.status_code == 200
    assert "its 1 message for good" in confirm.content.decode()
    assert Conversation.objects.filter(pk=conversation.pk).exists()

    done = signed_in.post(f"/chat/{conversation.pk}/delete/", follow=True)
    assert done.redirect_chain == [("/chat/", 302)]
    assert "Deleted “New conversation”." in done.content.decode()
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()


HTMX = {"HTTP_HX_REQUEST": "true"}


def listed_titles(html: str) -> list[str]:
    return re.findall(r'class="conversation-title" id="conversation-\d+-title">([^<]*)<', html)


def test_the_list_is_ordered_by_latest_activity(signed_in, customer, make_conversation):
    now = timezone.now()
    for age, title in [(3, "Old"), (1, "Newest"), (2, "Middle")]:
        chat = make_conversation(customer.user, title=title)
        Conversation.objects.filter(pk=chat.pk).update(updated_at=now - timedelta(hours=age))
    assert listed_titles(signed_in.get("/chat/").content.decode()) == ["Newest", "Middle", "Old"]


def test_a_conversation_with_new_activity_comes_first_however_many_there_are(
    signed_in, customer, make_conversation
):
    made = [make_conversation(customer.user, title=f"Chat {n}") for n in range(60)]
    made[30].start_turn("Back to this one")
    html = signed_in.get("/chat/").content.decode()
    assert listed_titles(html)[0] == "Chat 30"
    assert len(listed_titles(html)) == PAGE_SIZE


def test_load_more_pages_through_every_conversation_once(signed_in, customer, make_conversation):
    made = [make_conversation(customer.user, title=f"Chat {n}") for n in range(2 * PAGE_SIZE + 3)]
    # Ties on updated_at are broken by id, so a page boundary inside a tie loses nothing.
    Conversation.objects.update(updated_at=timezone.now())
    seen: list[str] = []
    html = signed_in.get("/chat/").content.decode()
    for _ in range(5):
        seen += listed_titles(html)
        cursor = re.search(r'hx-get="/chat/list/\?before=([^"]+)"', html)
        if cursor is None:
            break
        html = signed_in.get(f"/chat/list/?before={cursor[1]}", **HTMX).content.decode()
    assert seen == [chat.title for chat in reversed(made)]
    assert "Load more" not in html


@pytest.mark.parametrize("before", ["nonsense", "2026-01-01T00:00:00~x", "2026-01-01T00:00:00~3"])
def test_a_bad_page_cursor_is_refused(signed_in, before):
    assert signed_in.get("/chat/list/", {"before": before}, **HTMX).status_code == 400
    assert signed_in.get("/chat/", {"before": before}).status_code == 400


def test_the_list_partial_without_htmx_is_the_index_page(signed_in):
    page = signed_in.get("/chat/list/", {"q": "lisbon"})
    assert page.status_code == 302
    assert page["Location"] == "/chat/?q=lisbon"


def test_search_finds_titles_and_what_was_said_in_the_users_own_conversations(
    signed_in, customer, make_customer, make_conversation
):
    by_title = make_conversation(customer.user, title="Trip to Lisbon")
    by_content = make_conversation(customer.user, title="Travel")
    by_content.messages.create(role="assistant", content="Lisbon has trams.")
    replaced = make_conversation(customer.user, title="Other")
    replaced.messages.create(role="assistant", content="Lisbon again", replaced=True)
    make_conversation(customer.user, title="Unrelated")
    theirs = make_conversation(make_customer().user, title="Their Lisbon trip")
    page = signed_in.get("/chat/list/", {"q": "lisbon"}, **HTMX)
    html = page.content.decode()
    assert page.status_code == 200
    assert "<html" not in html
    assert listed_titles(html) == [by_content.title, by_title.title]
    assert theirs.title not in html
    assert (
        "No conversation matches"
        in signed_in.get("/chat/list/", {"q": "zzz"}, **HTMX).content.decode()
    )


def test_settings_are_saved_on_the_conversation(signed_in, conversation):
    page = signed_in.post(
        f"/chat/{conversation.pk}/settings/",
        {
            "model": "demo",
            "system_prompt": "Answer in French.",
            "temperature": "0.7",
            "max_tokens": "200",
        },
        **HTMX,
    )
    assert page.status_code == 200
    assert "Saved." in page.content.decode()
    assert 'id="chat-meter" class="chat-meter" hx-swap-oob="true"' in page.content.decode()
    conversation.refresh_from_db()
    assert conversation.system_prompt == "Answer in French."
    assert conversation.temperature == Decimal("0.7")
    assert conversation.max_tokens == 200
    assert conversation.request_options() == {"temperature": 0.7, "max_tokens": 200}
    assert conversation.system_messages() == [{"role": "system", "content": "Answer in French."}]


def test_empty_settings_mean_the_models_defaults(signed_in, conversation):
    page = signed_in.post(f"/chat/{conversation.pk}/settings/", {"model": "demo"})
    assert page.status_code == 302
    conversation.refresh_from_db()
    assert conversation.request_options() == {}
    assert conversation.system_messages() == []


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("temperature", "2.5", "less than or equal to 2"),
        ("temperature", "-0.1", "greater than or equal to 0"),
        ("temperature", "warm", "Enter a number."),
        ("max_tokens", "0", "greater than or equal to 1"),
        ("max_tokens", "1025", "writes at most 1,024 tokens"),
        ("max_tokens", "-5", "greater than or equal to"),
        ("model", "nope", "Select a valid choice."),
        ("system_prompt", "x" * (MAX_SYSTEM_PROMPT_CHARS + 1), "at most 8000 characters"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(signed_in, conversation, field, value, error):
    data = {"model": "demo", field: value}
    page = signed_in.post(f"/chat/{conversation.pk}/settings/", data, **HTMX)
    assert page.status_code == 400
    assert error in page.content.decode()
    assert 'aria-invalid="true"' in page.content.decode()
    plain = signed_in.post(f"/chat/{conversation.pk}/settings/", data)
    assert plain.status_code == 400
    conversation.refresh_from_db()
    assert (conversation.temperature, conversation.max_tokens, conversation.system_prompt) == (
        None,
        None,
        "",
    )


def test_rename_updates_the_title_everywhere_on_the_page(signed_in, conversation):
    page = signed_in.post(f"/chat/{conversation.pk}/rename/", {"title": "  Trip   plans "}, **HTMX)
    html = page.content.decode()
    assert page.status_code == 200
    assert '<span id="chat-title" hx-swap-oob="innerHTML">Trip plans</span>' in html
    assert (
        f'<span id="conversation-{conversation.pk}-title" hx-swap-oob="innerHTML">Trip plans'
        in html
    )
    conversation.refresh_from_db()
    assert conversation.title == "Trip plans"


@pytest.mark.parametrize("title", ["", "   "])
def test_an_empty_title_is_refused(signed_in, conversation, title):
    page = signed_in.post(f"/chat/{conversation.pk}/rename/", {"title": title}, **HTMX)
    assert page.status_code == 400
    assert "Give the conversation a title." in page.content.decode()
    assert signed_in.post(f"/chat/{conversation.pk}/rename/", {"title": title}).status_code == 400


def test_the_page_shows_the_model_price_and_the_context_meter(signed_in, conversation):
    conversation.messages.create(role="user", content="hi")
    conversation.messages.create(role="assistant", content="hello", cost_micro_usd=72)
    conversation.messages.create(role="assistant", content="old", cost_micro_usd=28, replaced=True)
    html = signed_in.get(f"/chat/{conversation.pk}/").content.decode()
    assert "$1.00 in / $2.00 out per 1M tokens" in html
    assert "of 32,768 tokens" in html
    assert '<span data-testid="conversation-cost">$0.0001</span>' in html
    assert "old" not in html.split('id="messages"')[1]


def test_an_answer_says_when_earlier_messages_were_left_out(signed_in, conversation):
    conversation.messages.create(role="user", content="hi")
    conversation.messages.create(role="assistant", content="hello", trimmed=4)
    html = signed_in.get(f"/chat/{conversation.pk}/").content.decode()
    assert "4 earlier messages left out of this answer's prompt" in html


@pytest.mark.parametrize(
    ("status", "code", "shown", "button"),
    [
        ("error", "insufficient_credits", "Not enough credit for this answer.", "Retry"),
        ("error", "upstream_error", "Upstream failed", "Retry"),
        ("cancelled", "", "Stopped", "Retry"),
        ("ok", "", "", "Regenerate"),
    ],
)
def test_each_ending_of_an_answer_offers_the_right_next_step(
    signed_in, conversation, status, code, shown, button
):
    conversation.messages.create(role="user", content="hi")
    error = {"insufficient_credits": "Insufficient credits", "upstream_error": "Upstream failed"}
    conversation.messages.create(
        role="assistant",
        content="partial" if status != "error" else "",
        status=status,
        error="Stopped before the answer was complete."
        if status == "cancelled"
        else error.get(code, ""),
        error_code=code,
    )
    html = signed_in.get(f"/chat/{conversation.pk}/").content.decode()
    assert shown in html
    assert f">{button}</button>" in html
    other = "Regenerate" if button == "Retry" else "Retry"
    assert f">{other}</button>" not in html
    assert ('href="/billing/"' in html.split('id="messages"')[1]) == (
        code == "insufficient_credits"
    )
