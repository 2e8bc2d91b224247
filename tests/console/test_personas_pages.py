"""The Personas pages: own personas (list, create, edit, delete), public ones, memory."""

from __future__ import annotations

import pytest

from chat.models import Conversation
from gateway.models import Persona, PersonaMemory

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, customer, demo_catalog):
    client.force_login(customer.user)
    return client


@pytest.fixture
def mine(customer):
    return Persona.objects.create(
        owner=customer.user, name="Chess Coach", slug="coach", system_prompt="Coach.", model="demo"
    )


@pytest.fixture
def theirs(make_customer):
    return Persona.objects.create(
        owner=make_customer().user, name="Secret", slug="secret", system_prompt="S.", model="demo"
    )


@pytest.fixture
def public():
    Persona.objects.filter(is_default=True).delete()
    return Persona.objects.create(
        name="Helper", slug="helper", system_prompt="Help.", model="auto", is_default=True
    )


VALID = {
    "name": "Poet",
    "slug": "",
    "avatar": "✍",
    "model": "demo",
    "system_prompt": "Answer in verse.",
}


def test_the_list_shows_own_and_public_personas_and_not_another_users(
    signed_in, mine, theirs, public
):
    PersonaMemory.objects.create(user=mine.owner, persona=public, facts="One\nTwo")
    html = signed_in.get("/account/personas/").content.decode()

    assert "Chess Coach" in html and "persona/coach" in html
    assert "Helper" in html and "Remembers 2 facts about you." in html
    assert "Secret" not in html
    assert f"/account/personas/{mine.pk}/edit/" in html
    assert f"/account/personas/{public.pk}/edit/" not in html


def test_creating_a_persona_makes_its_slug_from_the_name(signed_in, customer):
    page = signed_in.post("/account/personas/new/", VALID)

    assert page.status_code == 302
    persona = Persona.objects.get(owner=customer.user)
    assert (persona.slug, persona.model, persona.avatar) == ("poet", "demo", "✍")


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"name": ""}, "name", "This field is required"),
        ({"system_prompt": ""}, "system_prompt", "This field is required"),
        ({"avatar": "<b>x</b>"}, "avatar", "one emoji or up to two letters"),
        ({"slug": "not a slug!"}, "slug", "Enter a valid"),
        ({"slug": "coach"}, "slug", "already have a persona called persona/coach"),
        ({"model": "persona/coach"}, "model", "Select a valid choice"),
        ({"model": "no-such-model"}, "model", "Select a valid choice"),
    ],
)
def test_a_bad_persona_is_refused_with_the_reason(signed_in, mine, change, field, says):
    page = signed_in.post("/account/personas/new/", {**VALID, **change})

    assert page.status_code == 400
    assert says in str(page.context["form"].errors[field])
    assert Persona.objects.filter(owner=mine.owner).count() == 1


def test_editing_and_deleting_an_own_persona(signed_in, mine):
    page = signed_in.post(f"/account/personas/{mine.pk}/edit/", {**VALID, "slug": "coach"})
    assert page.status_code == 302
    mine.refresh_from_db()
    assert (mine.name, mine.slug) == ("Poet", "coach")

    assert signed_in.get(f"/account/personas/{mine.pk}/delete/").status_code == 200
    assert signed_in.post(f"/account/personas/{mine.pk}/delete/").status_code == 302
    assert not Persona.objects.filter(pk=mine.pk).exists()


@pytest.mark.parametrize(
    "path", ["edit/", "delete/", "memory/", "memory/erase/"], ids=lambda p: p.strip("/")
)
def test_another_users_persona_is_a_404_on_every_page(signed_in, theirs, path):
    url = f"/account/personas/{theirs.pk}/{path}"
    assert signed_in.get(url).status_code in {404, 405}
    assert signed_in.post(url, VALID).status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == "Secret"


@pytest.mark.parametrize("path", ["edit/", "delete/"])
def test_a_public_persona_cannot_be_edited_or_deleted_by_a_customer(signed_in, public, path):
    assert signed_in.post(f"/account/personas/{public.pk}/{path}", VALID).status_code == 404
    assert Persona.objects.get(pk=public.pk).name == "Helper"


def test_the_memory_can_be_read_edited_and_erased(signed_in, customer, public):
    PersonaMemory.objects.create(user=customer.user, persona=public, facts="Name is Ada")
    url = f"/account/personas/{public.pk}/memory/"
    assert "Name is Ada" in signed_in.get(url).content.decode()

    page = signed_in.post(url, {"facts": "- Name is Ada\n\n  plays chess  \n"})
    assert page.status_code == 302
    memory = PersonaMemory.objects.get(user=customer.user, persona=public)
    assert memory.fact_list == ["Name is Ada", "plays chess"]

    assert signed_in.post(url + "erase/").status_code == 302
    assert not PersonaMemory.objects.filter(user=customer.user).exists()


def test_too_many_facts_are_refused(signed_in, public):
    page = signed_in.post(
        f"/account/personas/{public.pk}/memory/",
        {"facts": "\n".join(f"fact {n}" for n in range(51))},
    )

    assert page.status_code == 400
    assert "at most 50 facts" in str(page.context["form"].errors["facts"])


def test_the_pages_send_anonymous_visitors_to_sign_in(client, mine):
    for url in (
        "/account/personas/",
        "/account/personas/new/",
        f"/account/personas/{mine.pk}/memory/",
    ):
        page = client.get(url)
        assert page.status_code == 302
        assert page["Location"].startswith("/accounts/login/")


def test_the_chat_picker_starts_a_conversation_with_a_persona(signed_in, customer, mine, theirs):
    html = signed_in.get("/chat/").content.decode()
    assert '<option value="persona/coach">' in html
    assert "persona/secret" not in html
    assert '<option value="auto">' in html

    page = signed_in.post("/chat/new/", {"model": "demo", "persona": "persona/coach"})
    assert page.status_code == 302
    assert Conversation.objects.get(user=customer.user).model == "persona/coach"
    refused = signed_in.post("/chat/new/", {"model": "demo", "persona": "persona/secret"})
    assert refused.status_code == 400
