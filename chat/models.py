from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey, User
from billing.models import UsageRecord
from billing.money import format_money

TITLE_LENGTH = 80
MARKUP = re.compile(r"[*_`#>]+")
MAX_MESSAGE_CHARS = 32_000


def web_key_for(user: User) -> ApiKey:
    """The user's web-chat key, minted on first use; its secret is never kept or shown.

    The web chat calls the gateway engine with this key, so it is billed, rate limited
    and logged like any /v1 key. Locking the user row keeps two tabs from minting two.
    """
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()
        key = ApiKey.objects.for_user(user).filter(kind=ApiKey.Kind.WEB).active().first()
        if key is None:
            key, _secret = ApiKey.objects.mint(user=user, name="Web chat", kind=ApiKey.Kind.WEB)
        return key


class ConversationQuerySet(models.QuerySet["Conversation"]):
    def for_user(self, user: Any) -> ConversationQuerySet:
        return self.filter(user=user)


class Conversation(models.Model):
    """A web-chat thread with one model; its answers are billed like /v1 calls."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=TITLE_LENGTH, blank=True)
    model = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["user", "-updated_at"])]

    def __str__(self) -> str:
        return self.display_title

    def get_absolute_url(self) -> str:
        return reverse("chat:conversation", args=[self.pk])

    @property
    def display_title(self) -> str:
        return self.title or "New conversation"

    def history(self) -> list[dict[str, str]]:
        """The finished exchanges as OpenAI messages; a question whose answer failed
        before any text came back is left out, so the model never sees it twice."""
        history: list[dict[str, str]] = []
        question: Message | None = None
        for message in self.messages.order_by("created_at", "id"):
            if message.role == Message.Role.USER:
                question = message
            elif message.content and question is not None:
                history.append({"role": "user", "content": question.content})
                history.append({"role": "assistant", "content": message.content})
                question = None
        return history

    def start_turn(self, text: str) -> tuple[Message, Message]:
        """Store the question and an empty answer to stream into; name a new conversation."""
        now = timezone.now()
        with transaction.atomic():
            question = self.messages.create(role=Message.Role.USER, content=text, created_at=now)
            answer = self.messages.create(
                role=Message.Role.ASSISTANT, status=Message.Status.STREAMING, created_at=now
            )
            self.updated_at = now
            fields = ["updated_at"]
            if not self.title:
                self.title = " ".join(MARKUP.sub("", text).split())[:TITLE_LENGTH]
                fields.append("title")
            self.save(update_fields=fields)
        return question, answer


class Message(models.Model):
    """One question or answer; an answer carries the request id, tokens and cost it was billed."""

    class Role(models.TextChoices):
        USER = "user", "You"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        OK = "ok", "Done"
        STREAMING = "streaming", "Generating"
        CANCELLED = "cancelled", "Stopped"
        ERROR = "error", "Failed"

    conversation = models.ForeignKey(Conversation, models.CASCADE, related_name="messages")
    role = models.CharField(max_length=12, choices=Role.choices)
    content = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost_micro_usd = models.BigIntegerField(default=0)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OK)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

    @property
    def is_answer(self) -> bool:
        return self.role == self.Role.ASSISTANT

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def is_billed(self) -> bool:
        charged = self.cost_micro_usd or self.total_tokens
        return bool(self.request_id and charged) and self.status != self.Status.STREAMING

    @property
    def outcome(self) -> str:
        """How the answer ended, in a sentence for the page's status line."""
        if self.status == self.Status.OK:
            return (
                f"Answer complete: {self.total_tokens} tokens, {format_money(self.cost_micro_usd)}."
            )
        if self.status == self.Status.CANCELLED:
            cost = format_money(self.cost_micro_usd)
            return f"Stopped. What was generated is kept and billed ({cost})."
        return "The answer failed; the reason is shown with it."

    def finish(
        self, *, content: str, status: str, error: str = "", usage: UsageRecord | None = None
    ) -> None:
        """Record how the answer ended and, when a request was billed, what it cost."""
        self.content = content
        self.status = status
        self.error = error[:500]
        fields = ["content", "status", "error"]
        if usage is not None:
            self.request_id = usage.request_id
            self.prompt_tokens = usage.prompt_tokens
            self.completion_tokens = usage.completion_tokens
            self.cost_micro_usd = usage.cost_micro_usd
            fields += ["request_id", "prompt_tokens", "completion_tokens", "cost_micro_usd"]
        self.save(update_fields=fields)
