from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q, Sum
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey, User
from billing.models import UsageRecord
from billing.money import format_money

TITLE_LENGTH = 80
MARKUP = re.compile(r"[*_`#>]+")
MAX_MESSAGE_CHARS = 32_000
MAX_SYSTEM_PROMPT_CHARS = 8_000


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

    def by_activity(self) -> ConversationQuerySet:
        """Latest activity first. Said explicitly: an aggregate such as Count drops
        Meta.ordering, which once listed conversations by id."""
        return self.order_by("-updated_at", "-id")

    def before(self, updated_at: datetime, pk: int) -> ConversationQuerySet:
        """The keyset page after the row (updated_at, pk) in `by_activity` order."""
        return self.filter(Q(updated_at__lt=updated_at) | Q(updated_at=updated_at, pk__lt=pk))

    def matching(self, text: str) -> ConversationQuerySet:
        """Conversations whose title or any shown message contains `text`."""
        said = Message.objects.filter(
            conversation=OuterRef("pk"), replaced=False, content__icontains=text
        )
        return self.filter(Q(title__icontains=text) | Exists(said))


class Conversation(models.Model):
    """A web-chat thread with one model; its answers are billed like /v1 calls."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=TITLE_LENGTH, blank=True)
    model = models.CharField(max_length=200)
    system_prompt = models.TextField(blank=True, max_length=MAX_SYSTEM_PROMPT_CHARS)
    temperature = models.DecimalField(
        max_digits=3,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(2))],
        help_text="0 to 2; empty for the model's default.",
    )
    max_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="The longest answer, in tokens; empty for the model's limit.",
    )
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

    def shown_messages(self) -> models.QuerySet[Message]:
        """The thread as the page shows it: answers replaced by a regenerate or an edit
        stay in the books (they were billed) but leave the thread."""
        return self.messages.filter(replaced=False).order_by("created_at", "id")

    def history(self, *, before: Message | None = None) -> list[dict[str, str]]:
        """The finished exchanges (up to `before`) as OpenAI messages; a question whose
        answer failed before any text came back is left out, so the model never sees it
        twice."""
        history: list[dict[str, str]] = []
        question: Message | None = None
        shown = self.shown_messages()
        if before is not None:
            shown = shown.filter(pk__lt=before.pk)
        for message in shown:
            if message.role == Message.Role.USER:
                question = message
            elif message.content and question is not None:
                history.append({"role": "user", "content": question.content})
                history.append({"role": "assistant", "content": message.content})
                question = None
        return history

    def request_options(self) -> dict[str, Any]:
        """What every turn sends besides the messages: this conversation's settings."""
        options: dict[str, Any] = {}
        if self.temperature is not None:
            options["temperature"] = float(self.temperature)
        if self.max_tokens is not None:
            options["max_tokens"] = self.max_tokens
        return options

    def system_messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []

    def last_question(self) -> Message | None:
        return self.shown_messages().filter(role=Message.Role.USER).last()

    def spent_micro_usd(self) -> int:
        """Everything this conversation was billed, replaced answers included."""
        total = self.messages.aggregate(total=Sum("cost_micro_usd"))["total"]
        return int(total or 0)

    def start_turn(self, text: str) -> tuple[Message, Message]:
        """Store the question and an empty answer to stream into; name a new conversation."""
        now = timezone.now()
        with transaction.atomic():
            question = self.messages.create(role=Message.Role.USER, content=text, created_at=now)
            answer = self._new_answer(now)
            fields = ["updated_at"]
            if not self.title:
                self.title = " ".join(MARKUP.sub("", text).split())[:TITLE_LENGTH]
                fields.append("title")
            self.save(update_fields=fields)
        return question, answer

    def redo_turn(self, text: str | None = None) -> tuple[Message, Message, list[Message]]:
        """Ask the last question again (`text` None: regenerate) or an edited version of
        it, with a new empty answer. Returns the question, the answer and the messages it
        replaced, which leave the thread but stay billed. LookupError if nothing was asked."""
        now = timezone.now()
        with transaction.atomic():
            question = self.last_question()
            if question is None:
                raise LookupError("nothing to regenerate")
            replaced = list(self.shown_messages().filter(pk__gt=question.pk))
            if text is not None and text != question.content:
                replaced.insert(0, question)
                question = self.messages.create(
                    role=Message.Role.USER, content=text, created_at=now
                )
            Message.objects.filter(pk__in=[m.pk for m in replaced]).update(replaced=True)
            answer = self._new_answer(now)
            self.save(update_fields=["updated_at"])
        return question, answer, replaced

    def _new_answer(self, now: datetime) -> Message:
        self.updated_at = now
        return self.messages.create(
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
            model=self.model,
            created_at=now,
        )


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
    error_code = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=200, blank=True)
    replaced = models.BooleanField(
        default=False, help_text="Replaced by a regenerate or an edit: kept for the books."
    )
    trimmed = models.PositiveIntegerField(
        default=0, help_text="Earlier messages left out of this answer's prompt to fit."
    )
    # The passages of the user's documents the answer was grounded in (UsageRecord.rag_sources).
    sources = models.JSONField(default=list, blank=True)
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
    def cited_documents(self) -> list[dict[str, Any]]:
        """The documents the answer's sources come from, once each, with how many of
        their passages were used."""
        cited: dict[int, dict[str, Any]] = {}
        for source in self.sources:
            entry = cited.setdefault(
                source["document_id"],
                {
                    "document_id": source["document_id"],
                    "name": source["document_name"],
                    "passages": 0,
                },
            )
            entry["passages"] += 1
        return list(cited.values())

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

    @property
    def needs_credit(self) -> bool:
        return self.error_code in {"insufficient_credits", "spend_cap_exceeded"}

    @property
    def can_retry(self) -> bool:
        """A failed or stopped answer offers Retry (after adding credit, for a 402);
        a complete one offers Regenerate."""
        return self.status in {self.Status.CANCELLED, self.Status.ERROR}

    def finish(
        self,
        *,
        content: str,
        status: str,
        error: str = "",
        error_code: str = "",
        usage: UsageRecord | None = None,
    ) -> None:
        """Record how the answer ended and, when a request was billed, what it cost."""
        self.content = content
        self.status = status
        self.error = error[:500]
        self.error_code = error_code[:64]
        fields = ["content", "status", "error", "error_code"]
        if usage is not None:
            self.request_id = usage.request_id
            self.prompt_tokens = usage.prompt_tokens
            self.completion_tokens = usage.completion_tokens
            self.cost_micro_usd = usage.cost_micro_usd
            self.sources = usage.rag_sources
            fields += ["request_id", "prompt_tokens", "completion_tokens", "cost_micro_usd"]
            fields += ["sources"]
        self.save(update_fields=fields)
