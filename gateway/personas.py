"""Personas with memory: `model: "lcm"` (the default persona) or `"persona/<slug>"`.

A persona (gateway.models.Persona) is a system prompt and a model. A request to one is
resolved before the hold (gateway.modes): the persona's system prompt and what it
remembers about the key's user go in front of the messages, and the call goes to the
persona's model (which may be `auto`), so the hold covers the added prompt.

The memory: after an exchange that ended well and was settled, a short memory step
asks PERSONA_MEMORY_MODEL for new facts about the user in it, and adds them to the
(user, persona) memory. The step is a call of its own (`open_call` … `Call.end()`,
with its own hold, its own usage record, `requested_model` "persona-memory/<slug>"),
billed to the same key once: never folded into the answer's bill, so a memory step
that fails or is refused (no credit left, a rate limit) leaves the answer and its bill
as they were. It runs in the background on the worker's event loop, at most
MEMORY_TASKS at a time per worker (more are skipped and logged), each cut off after
MEMORY_TIMEOUT_SECONDS (what was generated is billed, as for any cancelled call).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError

from billing.models import UsageRecord
from gateway import router
from gateway.auth import KeyInfo
from gateway.catalog import get_catalog
from gateway.errors import GatewayError
from gateway.models import Persona, PersonaMemory
from gateway.sync import db_sync_to_async

if TYPE_CHECKING:
    from gateway.calls import Call

log = logging.getLogger(__name__)

DEFAULT_NAME = "lcm"
PREFIX = "persona/"
MEMORY_TASKS = 16
MEMORY_TIMEOUT_SECONDS = 60.0
MEMORY_MAX_TOKENS = 300
MAX_NEW_FACTS = 10
# What the memory step reads of a long exchange.
EXCHANGE_CHARS = 6_000

MEMORY_PROMPT = (
    "You keep the long-term memory of an assistant. From the exchange below, list new, "
    "lasting facts about the user (their name, preferences, projects, circumstances) that "
    "are not among the known facts. Write each fact as one short line starting with "
    '"- ". If there is nothing new, write only NONE.'
)

_running: set[asyncio.Task[None]] = set()


def is_persona_name(name: str) -> bool:
    folded = name.strip().casefold()
    return folded == DEFAULT_NAME or folded.startswith(PREFIX)


@dataclass(frozen=True, slots=True)
class Found:
    persona_id: int
    slug: str
    model: str
    system_prompt: str
    facts: tuple[str, ...]


def _find(user_id: int, name: str) -> Found | None:
    persona = Persona.objects.for_name(user_id, name)
    if persona is None:
        return None
    memory = PersonaMemory.objects.filter(user_id=user_id, persona=persona).first()
    return Found(
        persona_id=persona.pk,
        slug=persona.slug,
        model=persona.model,
        system_prompt=persona.system_prompt,
        facts=tuple(memory.fact_list) if memory else (),
    )


_find_async = db_sync_to_async(_find)


def persona_not_found(name: str) -> GatewayError:
    if name.strip().casefold() == DEFAULT_NAME:
        message = (
            "There is no default persona for 'lcm': the operator has not marked one "
            "(admin, Personas, 'is default'). Use 'persona/<slug>' instead."
        )
    else:
        message = (
            f"There is no persona '{name}' for this account. Your personas and the public "
            "ones are listed on the Personas page of the console."
        )
    return GatewayError(404, message, code="persona_not_found", param="model")


def system_message(found: Found) -> dict[str, str]:
    """The persona's system prompt, and what it remembers about the user."""
    text = found.system_prompt.strip()
    if found.facts:
        remembered = "\n".join(f"- {fact}" for fact in found.facts)
        text += f"\n\nWhat you remember about the user from earlier conversations:\n{remembered}"
    return {"role": "system", "content": text}


async def expand(body: dict[str, Any], *, key: KeyInfo) -> tuple[dict[str, Any], Found]:
    """The body for the persona `body["model"]` names: its model, its system prompt and
    memory in front of the messages. 404 `persona_not_found` for a name this key's user
    cannot use (another user's persona reads as absent)."""
    found = await _find_async(key.user_id, body["model"])
    if found is None:
        raise persona_not_found(body["model"])
    if is_persona_name(found.model):
        raise GatewayError(
            400,
            f"Persona '{found.slug}' is set to answer with another persona; "
            "its model must be a catalog model or auto.",
            code="persona_misconfigured",
            param="model",
        )
    messages = [system_message(found), *body["messages"]]
    return {**body, "model": found.model, "messages": messages}, found


# --- the memory step ---------------------------------------------------------------


def memory_request(found: Found, question: str, answer: str) -> dict[str, Any]:
    """The memory step's chat body: the known facts and the exchange, bounded in size."""
    known = "\n".join(f"- {fact}" for fact in found.facts) or "(none)"
    exchange = (
        f"Known facts:\n{known}\n\nThe user said:\n{question[-EXCHANGE_CHARS:]}\n\n"
        f"The assistant answered:\n{answer[:EXCHANGE_CHARS]}"
    )
    return {
        "model": settings.PERSONA_MEMORY_MODEL,
        "messages": [
            {"role": "system", "content": MEMORY_PROMPT},
            {"role": "user", "content": exchange},
        ],
        "max_tokens": MEMORY_MAX_TOKENS,
    }


def new_facts(text: str) -> list[str]:
    """The facts in the memory model's answer: its lines that start with a list mark."""
    facts = [
        line.strip()[1:] for line in text.splitlines() if line.strip().startswith(("-", "*", "•"))
    ]
    return [fact for fact in facts if fact.strip()][:MAX_NEW_FACTS]


_remember_async = db_sync_to_async(PersonaMemory.remember)


async def update_memory(
    *, key: KeyInfo, found: Found, question: str, answer: str, source: str
) -> None:
    """One memory step: a billed call to PERSONA_MEMORY_MODEL, its facts remembered.
    Never raises: the answer it follows is already settled and sent."""
    from gateway import calls  # calls imports this module (through gateway.modes)

    try:
        call = await calls.open_call(
            key=key,
            body=memory_request(found, question, answer),
            request_id=calls.new_request_id(),
            source=source,
        )
        call.requested_model = f"persona-memory/{found.slug}"
        result = await call.answer()
        facts = new_facts(result["choices"][0]["message"].get("content") or "")
        if facts:
            await _remember_async(user_id=key.user_id, persona_id=found.persona_id, facts=facts)
    except GatewayError as exc:
        log.info("memory step for persona %s skipped: %s", found.slug, exc.message)
    except Exception:
        log.exception("memory step for persona %s failed", found.slug)


def after_answer(found: Found, key: KeyInfo) -> Callable[[Call, str], None]:
    """The `on_settled` hook of a persona's call: start its memory step in the
    background once the answer was settled OK."""

    def settled(call: Call, status: str) -> None:
        memory_model = settings.PERSONA_MEMORY_MODEL
        if status != UsageRecord.Status.OK or not memory_model or is_persona_name(memory_model):
            return
        if len(_running) >= MEMORY_TASKS:
            log.warning("memory step for persona %s skipped: %d running", found.slug, MEMORY_TASKS)
            return
        question = next(
            (
                router.message_text(m.get("content"))
                for m in reversed(call.body["messages"])
                if m.get("role") == "user"
            ),
            "",
        )
        step = update_memory(
            key=key, found=found, question=question, answer="".join(call.seen), source=call.source
        )
        task = asyncio.get_running_loop().create_task(_bounded(step))
        _running.add(task)
        task.add_done_callback(_running.discard)

    return settled


async def _bounded(step: Coroutine[Any, Any, None]) -> None:
    try:
        await asyncio.wait_for(step, MEMORY_TIMEOUT_SECONDS)
    except TimeoutError:
        log.warning("a memory step took over %s s and was stopped", MEMORY_TIMEOUT_SECONDS)


def clean_persona_model(value: str) -> str:
    """A persona's model as a form takes it: a catalog model's id (or alias) or a router
    name, never another persona. Raises ValidationError."""
    value = value.strip()
    if router.is_router_name(value):
        return value.casefold()
    if is_persona_name(value):
        raise ValidationError("A persona answers with a model, not with another persona.")
    model = get_catalog().resolve(value)
    if model is None:
        raise ValidationError(f"There is no model '{value}' in the catalog.")
    return model.id
