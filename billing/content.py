"""Prompt and answer storage, for accounts that turn it on (off by default).

A call's messages and answer are written after its settlement, in the same worker
thread, into RequestContent (a table of its own, keyed by the usage record), only when
the account has `store_content` on; the request log never reads that table. They are
shown on the request's page (escaped), erased by the user (one request, or all), and
pruned by `manage.py prunecontent` after PROMPT_RETENTION_DAYS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from billing.models import RequestContent, UsageRecord

log = logging.getLogger(__name__)

MAX_STORED_CHARS = 200_000


@dataclass(frozen=True, slots=True)
class Turn:
    role: str
    text: str


def keep_content(record: UsageRecord, *, messages: Any, response: str) -> None:
    """Store a settled call's messages and answer. Never raises: the books come first."""
    try:
        RequestContent.objects.create(
            usage_id=record.pk,
            account_id=record.account_id,
            messages=messages,
            response=response[:MAX_STORED_CHARS],
            created_at=record.created_at,
        )
    except Exception:
        log.warning("could not keep the messages of %s", record.request_id, exc_info=True)


def _text_of(content: Any) -> str:
    """A message's content as text: strings and text parts as they are, other parts
    (images, audio, tool results) named by their type."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else str(content)
    pieces = []
    for part in content:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            pieces.append(part["text"])
        elif isinstance(part, dict):
            pieces.append(f"[{part.get('type', 'part')}]")
    return "\n".join(pieces)


def transcript(content: RequestContent) -> list[Turn]:
    """The stored messages as (role, text) turns for the request's page."""
    turns = []
    for message in content.messages if isinstance(content.messages, list) else ():
        if not isinstance(message, dict):
            continue
        text = _text_of(message.get("content"))
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                function = call.get("function") or {}
                text += f"\n[tool call {function.get('name', '')}: {function.get('arguments', '')}]"
        turns.append(Turn(role=str(message.get("role", "")), text=text.strip()))
    return turns


PRUNE_BATCH = 5000


def prune_content(now: Any = None) -> int:
    """Erase content kept past PROMPT_RETENTION_DAYS, PRUNE_BATCH rows per statement so a
    long backlog never holds one huge transaction. Returns how many were erased."""
    erased = 0
    while True:
        batch = list(RequestContent.objects.expired(now).values_list("pk", flat=True)[:PRUNE_BATCH])
        if not batch:
            return erased
        erased += RequestContent.objects.filter(pk__in=batch).delete()[0]
