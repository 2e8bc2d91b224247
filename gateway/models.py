from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

# The document library's models live in their own module; importing them here registers them.
from gateway.documents.models import Document, Passage  # noqa: F401


class Provider(models.Model):
    """An upstream API: its protocol (kind), where it lives and how to authenticate."""

    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible"
        ANTHROPIC = "anthropic", "Anthropic Messages"
        GEMINI = "gemini", "Google Gemini"
        DEMO = "demo", "Built-in demo"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    base_url = models.URLField(max_length=500, blank=True)
    api_key = models.CharField(
        max_length=500, blank=True, help_text="Write-only: leave empty to keep the stored key."
    )
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="Name of an environment variable holding the key (wins over the stored key).",
    )
    enabled = models.BooleanField(default=True)
    timeout_seconds = models.PositiveIntegerField(default=120)
    serves_responses = models.BooleanField(
        default=False,
        help_text="An OpenAI-compatible upstream that also serves the Responses API at "
        "base_url/responses: the Responses door passes requests to it untranslated.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.serves_responses and self.kind != self.Kind.OPENAI:
            raise ValidationError(
                {"serves_responses": "Only an OpenAI-compatible upstream serves the Responses API."}
            )

    def resolve_api_key(self) -> str:
        if self.api_key_env:
            return os.environ.get(self.api_key_env, "")
        return self.api_key


class Model(models.Model):
    """A model customers can call, with its prices in micro-USD per million tokens."""

    id = models.CharField(max_length=200, primary_key=True)
    title = models.CharField(max_length=200, blank=True)
    aliases = models.JSONField(default=list, blank=True)
    owned_by = models.CharField(max_length=100, blank=True)
    context_length = models.PositiveIntegerField(default=8192)
    max_output_tokens = models.PositiveIntegerField(default=4096)
    input_price = models.BigIntegerField(
        null=True, blank=True, help_text="micro-USD per million input tokens; empty = no price"
    )
    output_price = models.BigIntegerField(
        null=True, blank=True, help_text="micro-USD per million output tokens; empty = no price"
    )
    cached_input_price = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="micro-USD per million input tokens read from the prompt cache; "
        "empty = the input price",
    )
    cache_write_price = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="micro-USD per million input tokens written to the prompt cache (for 5 "
        "minutes, where the vendor has two rates); empty = the input price",
    )
    cache_write_1h_price = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="micro-USD per million input tokens written to the prompt cache for an "
        "hour; empty = the 5-minute write price",
    )
    request_price = models.PositiveBigIntegerField(
        default=0,
        help_text="micro-USD per request (per message), on top of the token prices or "
        "instead of them (19000 = $0.019); 0 = none",
    )
    enabled = models.BooleanField(default=True)
    price_source = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(
        default=timezone.now, help_text="When the model joined the catalog (/v1/models' created)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.id

    @property
    def is_priced(self) -> bool:
        """Priced per token (both input and output), or per request."""
        has_token_prices = self.input_price is not None and self.output_price is not None
        return has_token_prices or self.request_price > 0


class CatalogStamp(models.Model):
    """One row whose version moves on every catalog change: how a process that shares
    no cache with the others (the embedded default, no REDIS_URL) learns of a change
    made by `loadcatalog`, `synccatalog` or the admin in another process."""

    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"catalog version {self.version}"


class Route(models.Model):
    """One way to serve a model: a provider and the model's name there, by priority."""

    model = models.ForeignKey(Model, models.CASCADE, related_name="routes")
    provider = models.ForeignKey(Provider, models.CASCADE, related_name="routes")
    upstream_model = models.CharField(max_length=200)
    priority = models.PositiveSmallIntegerField(default=0, help_text="Lower is tried first.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["model", "priority", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "provider"], name="route_model_provider_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} → {self.provider.name}:{self.upstream_model}"


IDEMPOTENCY_WINDOW = timedelta(hours=24)
CLAIM_ATTEMPTS = 3


class IdempotentRequestQuerySet(models.QuerySet["IdempotentRequest"]):
    def expired(self, now: datetime | None = None) -> IdempotentRequestQuerySet:
        """Entries past the replay window: treated as absent, deleted by the sweeper."""
        return self.filter(created_at__lte=(now or timezone.now()) - IDEMPOTENCY_WINDOW)

    def claim(
        self, *, account_id: int, key: str, body_sha256: str, request_id: str
    ) -> IdempotentRequest | None:
        """Claim `key` for `request_id`: None when this request now holds it, else the
        entry of the request that does (still running, or done and to be replayed).

        The claim is an INSERT against the (account, key) unique constraint, so of two
        first tries on two workers exactly one wins. A lapsed entry is taken over with a
        conditional UPDATE, which also has one winner. Raises IntegrityError in the rare
        case that the key kept changing hands while this request tried to read it.
        """
        attempts = 0
        while True:
            now = timezone.now()
            try:
                with transaction.atomic():
                    self.create(
                        account_id=account_id,
                        key=key,
                        body_sha256=body_sha256,
                        request_id=request_id,
                        created_at=now,
                    )
                return None
            except IntegrityError:
                attempts += 1
                if attempts == CLAIM_ATTEMPTS:
                    raise
            holder = self.filter(account_id=account_id, key=key).first()
            if holder is None:
                continue  # released by its request (refused) since the INSERT
            if not holder.has_lapsed(now):
                return holder
            taken = self.filter(
                pk=holder.pk, request_id=holder.request_id, created_at=holder.created_at
            ).update(
                body_sha256=body_sha256,
                request_id=request_id,
                created_at=now,
                state=IdempotentRequest.State.RUNNING,
                status=None,
                content_type="",
                headers={},
                body=b"",
            )
            if taken:
                return None

    def record(
        self,
        *,
        account_id: int,
        key: str,
        request_id: str,
        status: int,
        content_type: str,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        """Store the response of the request holding `key`, to be replayed to retries."""
        self.filter(account_id=account_id, key=key, request_id=request_id).update(
            state=IdempotentRequest.State.DONE,
            status=status,
            content_type=content_type,
            headers=headers,
            body=body,
        )

    def release(self, *, account_id: int, key: str, request_id: str) -> None:
        """Forget a claim whose request was refused before anything was billed."""
        self.filter(
            account_id=account_id,
            key=key,
            request_id=request_id,
            state=IdempotentRequest.State.RUNNING,
        ).delete()


class IdempotentRequest(models.Model):
    """The first request sent with an `Idempotency-Key`, and the response retries get."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    account = models.ForeignKey(
        "billing.Account", models.CASCADE, related_name="idempotent_requests"
    )
    key = models.CharField(max_length=255)
    body_sha256 = models.CharField(max_length=64)
    request_id = models.CharField(max_length=64)
    state = models.CharField(max_length=8, choices=State.choices, default=State.RUNNING)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    body = models.BinaryField(default=b"", blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = IdempotentRequestQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "key"], name="idempotent_request_account_key_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.state}, {self.request_id})"

    def has_lapsed(self, now: datetime | None = None) -> bool:
        """Past the replay window, or still running long after any live call would have
        ended: its worker died, and the sweeper has settled or released its hold."""
        age = (now or timezone.now()) - self.created_at
        if age >= IDEMPOTENCY_WINDOW:
            return True
        return self.state == self.State.RUNNING and age >= timedelta(
            seconds=settings.HOLD_TTL_SECONDS
        )


# --- modes: the smart router and personas (README, "Modes") ---------------------------


class RouterTier(models.IntegerChoices):
    FAST = 1, "1: fast and cheap"
    BALANCED = 2, "2: balanced"
    STRONG = 3, "3: strongest"


class RouterProfile(models.Model):
    """How the smart router (`model: "auto"`) sees one model: a candidate or not, its
    tier, and what it can take (tools, images). Models without a profile are never
    chosen by the router."""

    model = models.OneToOneField(
        Model, models.CASCADE, primary_key=True, related_name="router_profile"
    )
    enabled = models.BooleanField(default=True, help_text="The router may choose this model.")
    tier = models.PositiveSmallIntegerField(
        choices=RouterTier.choices,
        default=RouterTier.BALANCED,
        help_text="Requests that need a higher tier (router rules) skip lower ones.",
    )
    tools = models.BooleanField(default=True, help_text="Can call tools (function calling).")
    vision = models.BooleanField(default=False, help_text="Reads images in the messages.")
    reasoning = models.BooleanField(
        default=False, help_text="Preferred for requests that ask for careful reasoning."
    )

    class Meta:
        ordering = ["tier", "model"]

    def __str__(self) -> str:
        return f"{self.model_id} (tier {self.tier})"


class RouterRule(models.Model):
    """The least tier a request with a signal needs; the highest that applies wins."""

    class Signal(models.TextChoices):
        DEFAULT = "default", "Any request"
        CODE = "code", "The messages contain code"
        REASONING = "reasoning", "The last message asks for careful reasoning"
        TOOLS = "tools", "The request offers tools"
        IMAGES = "images", "The messages contain images"

    signal = models.CharField(max_length=16, choices=Signal.choices, unique=True)
    min_tier = models.PositiveSmallIntegerField(choices=RouterTier.choices, default=RouterTier.FAST)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["signal"]

    def __str__(self) -> str:
        return f"{self.get_signal_display()}: tier {self.min_tier}+"


MAX_FACTS = 50
MAX_FACT_CHARS = 200
MAX_MEMORY_CHARS = MAX_FACTS * (MAX_FACT_CHARS + 1)


class PersonaQuerySet(models.QuerySet["Persona"]):
    def public(self) -> PersonaQuerySet:
        return self.filter(owner__isnull=True)

    def owned_by(self, user: Any) -> PersonaQuerySet:
        """The user's own personas: the only ones they may edit or delete."""
        return self.filter(owner=user)

    def visible_to(self, user: Any) -> PersonaQuerySet:
        """The user's own personas and the public ones: the ones they may talk to."""
        return self.filter(models.Q(owner=user) | models.Q(owner__isnull=True))

    def for_name(self, user_id: int, name: str) -> Persona | None:
        """The persona `model: "lcm"` or `"persona/<slug>"` means for this user: the
        default public persona, or the user's own persona of that slug before a public
        one."""
        if name.strip().casefold() == "lcm":
            return self.public().filter(is_default=True).first()
        slug = name.strip().partition("/")[2].strip().lower()
        found = self.filter(models.Q(owner_id=user_id) | models.Q(owner__isnull=True), slug=slug)
        return found.order_by(models.F("owner").asc(nulls_last=True)).first()


class Persona(models.Model):
    """A named assistant: a system prompt and a model, public (made by the operator) or
    one customer's own; each user it talks to has a memory of it (PersonaMemory)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.CASCADE,
        null=True,
        blank=True,
        related_name="personas",
        help_text="Empty: a public persona every customer can use.",
    )
    name = models.CharField(max_length=80)
    slug = models.SlugField(
        max_length=60, help_text='Called as model "persona/<slug>".', allow_unicode=False
    )
    avatar = models.CharField(
        max_length=8,
        blank=True,
        help_text="An emoji or up to two letters; empty: the name's initials.",
    )
    system_prompt = models.TextField(max_length=8000)
    model = models.CharField(
        max_length=200,
        default="auto",
        help_text="The model that answers: a catalog model's id, or auto for the smart router.",
    )
    is_default = models.BooleanField(
        default=False, help_text='The public persona that model "lcm" means (at most one).'
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PersonaQuerySet.as_manager()

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "slug"], name="persona_owner_slug_unique"),
            models.UniqueConstraint(
                fields=["slug"],
                condition=models.Q(owner__isnull=True),
                name="persona_public_slug_unique",
            ),
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="persona_one_default",
            ),
            models.CheckConstraint(
                condition=models.Q(is_default=False) | models.Q(owner__isnull=True),
                name="persona_default_is_public",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_public(self) -> bool:
        return self.owner_id is None

    @property
    def model_name(self) -> str:
        """What to put in a request's `model` to talk to this persona."""
        return f"persona/{self.slug}"

    @property
    def avatar_text(self) -> str:
        """The avatar shown: the emoji or letters set, else the name's initials."""
        if self.avatar:
            return self.avatar
        return "".join(word[0] for word in self.name.split()[:2]).upper() or "?"


class PersonaMemory(models.Model):
    """What a persona remembers about one user: facts, one a line, kept between
    conversations, added to after each exchange and editable (or erased) by the user."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="persona_memories"
    )
    persona = models.ForeignKey(Persona, models.CASCADE, related_name="memories")
    facts = models.TextField(blank=True, max_length=MAX_MEMORY_CHARS)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "persona"], name="persona_memory_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.persona} remembers {self.user}"

    @property
    def fact_list(self) -> list[str]:
        return clean_facts(self.facts.splitlines())

    @classmethod
    def remember(cls, *, user_id: int, persona_id: int, facts: list[str]) -> PersonaMemory:
        """Add new facts (not already known, compared case-insensitively), keeping the
        newest MAX_FACTS; the row is locked so two exchanges never lose each other's."""
        with transaction.atomic():
            memory, _ = cls.objects.select_for_update().get_or_create(
                user_id=user_id, persona_id=persona_id
            )
            known = memory.fact_list
            seen = {fact.casefold() for fact in known}
            for fact in clean_facts(facts):
                if fact.casefold() not in seen:
                    known.append(fact)
                    seen.add(fact.casefold())
            memory.facts = "\n".join(known[-MAX_FACTS:])
            memory.save(update_fields=["facts", "updated_at"])
        return memory


def clean_facts(lines: list[str]) -> list[str]:
    """Facts as stored: one line each, trimmed of list marks, none empty or too long."""
    facts = []
    for line in lines:
        fact = " ".join(line.strip().lstrip("-*•").split())
        if fact:
            facts.append(fact[:MAX_FACT_CHARS])
    return facts
