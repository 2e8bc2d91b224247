"""The chat pages: list and new conversation, the conversation page, delete."""

from __future__ import annotations

import pytest

from chat.models import Conversation, Message

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
    assert '<label for="id_message">Message</label>' in html


def test_an_answer_cut_off_by_a_crash_says_so(signed_in, conversation):
    conversation.messages.create(role="assistant", status=Message.Status.STREAMING)
    html = signed_in.get(f"/chat/{conversation.pk}/").content.decode()
    assert "This answer was interrupted." in html


def test_another_users_conversation_is_not_found(client, make_customer, conversation):
    client.force_login(make_customer().user)
    assert client.get(f"/chat/{conversation.pk}/").status_code == 404
    assert client.get(f"/chat/{conversation.pk}/delete/").status_code == 404
    assert client.post(f"/chat/{conversation.pk}/delete/").status_code == 404
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
