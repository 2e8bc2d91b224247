"""Personas in headless Chromium: create one, pick it in the chat, see and erase its memory.

The chat's answers come from the demo model; the memory step from the fake upstream's
`memory-model`, scripted to find a fact, so the memory page has something to show.
Screenshots at 1280 and 390 px go to /work/shots/modes/.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from billing.models import UsageRecord
from gateway.models import Model, Persona, PersonaMemory, Provider, Route
from tests.chat.test_browser import ANSWER_TIMEOUT, fits_the_viewport, signed_in_page
from tests.fakes.upstream import Ok

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/work/shots/modes")
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


@pytest.fixture
def memory_model(fake_upstream, fast_demo, settings):
    settings.PERSONA_MEMORY_MODEL = "memory-model"
    provider = Provider.objects.create(
        name="fake", kind="openai", base_url=fake_upstream.url + "/v1", api_key="k"
    )
    model = Model.objects.create(id="memory-model", input_price=100_000, output_price=400_000)
    Route.objects.create(model=model, provider=provider, upstream_model="memory-model")
    Persona.objects.filter(is_default=True).delete()
    return fake_upstream


def wait_for_memory_step(account: Any, persona: Persona) -> UsageRecord:
    """The memory step's record, once the facts it found are saved (bounded wait)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        step = UsageRecord.objects.filter(
            account=account, requested_model="persona-memory/coach"
        ).first()
        if step is not None and PersonaMemory.objects.filter(persona=persona).exists():
            return step
        time.sleep(0.05)
    raise AssertionError("the memory step was not settled, or remembered nothing")


def test_a_customer_creates_a_persona_talks_to_it_and_erases_its_memory(
    browser, localhost_url, customer, memory_model
):
    SHOTS.mkdir(parents=True, exist_ok=True)
    memory_model.script("memory-model", Ok(text="- The user's name is Ada."))
    page = signed_in_page(browser, customer.user, localhost_url, *WIDTHS["desktop"])

    page.goto(f"{localhost_url}/account/personas/")
    page.get_by_role("link", name="New persona").click()
    page.get_by_label("Name").fill("Chess Coach")
    page.get_by_label("Slug").fill("coach")
    page.get_by_label("Avatar").fill("♞")
    page.get_by_label("Model", exact=True).select_option("demo")
    page.get_by_label("System prompt").fill("You are a patient chess coach.")
    page.screenshot(path=SHOTS / "persona-form-desktop.png", full_page=True)
    page.get_by_role("button", name="Create persona").click()
    expect(page.get_by_text("call it as model “persona/coach”")).to_be_visible()
    persona = Persona.objects.get(owner=customer.user)

    page.goto(f"{localhost_url}/chat/")
    picker = page.get_by_label("Persona")
    picker.select_option(label="♞ Chess Coach")
    page.screenshot(path=SHOTS / "chat-persona-picker-desktop.png", full_page=True)
    page.get_by_role("button", name="New conversation").click()
    box = page.get_by_role("textbox", name="Message")
    box.fill("Hi, I'm Ada.")
    box.press("Enter")
    expect(page.locator("#chat-status")).to_contain_text("Answer complete", timeout=ANSWER_TIMEOUT)
    answer = UsageRecord.objects.get(requested_model="persona/coach")
    assert (answer.model, answer.source) == ("demo", UsageRecord.Source.WEB)
    step = wait_for_memory_step(customer.account, persona)
    assert step.cost_micro_usd > 0

    page.goto(f"{localhost_url}/account/personas/")
    expect(page.get_by_text("Remembers 1 fact about you.")).to_be_visible()
    page.get_by_role("link", name="Memory of Chess Coach").click()
    facts = page.get_by_label("What it remembers")
    expect(facts).to_have_value("The user's name is Ada.")
    facts.fill("The user's name is Ada.\nPlays the Sicilian.")
    page.get_by_role("button", name="Save memory").click()
    expect(page.get_by_text("Saved what Chess Coach remembers about you.")).to_be_visible()
    memory = PersonaMemory.objects.get(user=customer.user, persona=persona)
    assert memory.fact_list == ["The user's name is Ada.", "Plays the Sicilian."]
    page.screenshot(path=SHOTS / "persona-memory-desktop.png", full_page=True)

    page.get_by_role("button", name="Erase memory").click()
    expect(page.get_by_text("has forgotten everything about you")).to_be_visible()
    expect(page.get_by_label("What it remembers")).to_have_value("")
    assert not PersonaMemory.objects.filter(user=customer.user).exists()
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS), ids=list(WIDTHS))
def test_the_persona_pages_fit_desktop_and_phone_widths(
    browser, localhost_url, customer, memory_model, width
):
    SHOTS.mkdir(parents=True, exist_ok=True)
    mine = Persona.objects.create(
        owner=customer.user,
        name="Chess Coach",
        slug="coach",
        avatar="♞",
        system_prompt="You are a patient chess coach who explains every move in plain words.",
        model="demo",
    )
    Persona.objects.create(
        name="Travel Planner", slug="travel", system_prompt="You plan trips.", model="auto"
    )
    PersonaMemory.objects.create(
        user=customer.user, persona=mine, facts="The user's name is Ada.\nPlays the Sicilian."
    )
    page = signed_in_page(browser, customer.user, localhost_url, *WIDTHS[width])
    pages = {
        "personas": "/account/personas/",
        "persona-memory": f"/account/personas/{mine.pk}/memory/",
        "persona-edit": f"/account/personas/{mine.pk}/edit/",
        "chat-new": "/chat/",
    }
    for name, path in pages.items():
        page.goto(localhost_url + path)
        assert fits_the_viewport(page), f"{name} is wider than {width}"
        page.screenshot(path=SHOTS / f"{name}-{width}.png", full_page=True)
    page.context.close()
