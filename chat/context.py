"""What a turn sends: the system prompt, as much history as fits, the question.

A long conversation would eventually fail with the engine's context_length_exceeded;
instead the oldest exchanges are left out first (the system prompt is always kept) and
the page says how many. A question that cannot fit even alone is refused with its
numbers, never cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chat.models import Conversation
from gateway.catalog import ModelInfo, get_catalog
from gateway.tokens import count_prompt

# An unset max_tokens leaves this share of the window for the answer, so a long
# history never squeezes the reply down to a few tokens.
ANSWER_SHARE = 4
NEARLY_FULL = 80  # percent of the window

Messages = list[dict[str, Any]]


class TooLong(Exception):
    """The question (with the system prompt) does not fit the model's window."""

    def __init__(self, *, tokens: int, limit: int) -> None:
        super().__init__(
            f"This message is {tokens:,} tokens with the system prompt; this model takes "
            f"at most {limit:,} with room left for the answer. Shorten it or pick a model "
            "with a larger context window."
        )
        self.tokens = tokens
        self.limit = limit


def answer_room(model: ModelInfo, max_tokens: int | None) -> int:
    """Tokens kept free for the answer."""
    if max_tokens is not None:
        return max_tokens
    return min(model.max_output_tokens, model.context_length // ANSWER_SHARE)


def _tokens(messages: Messages) -> int:
    # count_prompt adds a fixed reply primer once; per-message counts add up without it.
    return count_prompt(messages) - count_prompt([])


def fit(
    *, system: Messages, history: Messages, question: str, model: ModelInfo, max_tokens: int | None
) -> tuple[Messages, int]:
    """The messages to send and how many history messages were left out, oldest first,
    in whole exchanges. Raises TooLong when the question does not fit on its own."""
    asked = [{"role": "user", "content": question}]
    limit = model.context_length - answer_room(model, max_tokens)
    needed = count_prompt(system + asked)
    if needed > limit:
        raise TooLong(tokens=needed, limit=limit)
    room = limit - needed
    kept = 0
    # Walk back from the newest exchange while it still fits.
    for start in range(len(history) - 2, -1, -2):
        cost = _tokens(history[start : start + 2])
        if cost > room:
            break
        room -= cost
        kept += 2
    first = len(history) - kept
    return [*system, *history[first:], *asked], first


@dataclass(frozen=True, slots=True)
class Meter:
    """How full the model's window is and what the conversation has cost."""

    used: int
    window: int
    spent_micro_usd: int

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.used / self.window)) if self.window else 0

    @property
    def high(self) -> int:
        """Where the meter turns to a warning: the trimming is near."""
        return self.window * NEARLY_FULL // 100

    @property
    def nearly_full(self) -> bool:
        return self.percent >= NEARLY_FULL


def meter_for(conversation: Conversation) -> Meter:
    """The meter shown above the composer: the prompt the next turn would send (before
    its question) against the current model's window, and the cost so far."""
    model = get_catalog().resolve(conversation.model)
    used = count_prompt(conversation.system_messages() + conversation.history())
    return Meter(
        used=used,
        window=model.context_length if model is not None else 0,
        spent_micro_usd=conversation.spent_micro_usd(),
    )
