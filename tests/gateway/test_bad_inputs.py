"""POST /v1/chat/completions refuses bad input with a 4xx OpenAI error and touches no money.

Every rejected request must leave the books as they were: no hold, no ledger entry,
no usage record, and no call to any upstream.

The async view reads the database from worker threads with their own connections, so
what it reads must be committed. Rather than a transactional test (and a flush) per
row, `world` commits the catalog and every customer once for the module and flushes
once at the end; each test itself only reads (and is rolled back, to be safe).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import AsyncClient
from django.utils import timezone

from accounts.models import ApiKey, User
from billing.ledger import credit_account
from billing.models import Account, Hold, LedgerEntry, UsageRecord
from gateway.models import Model, Provider, Route
from gateway.tokens import count_prompt

PATH = "/v1/chat/completions"
VALID: dict[str, Any] = {"model": "demo", "messages": [{"role": "user", "content": "Hi"}]}
MISSING = object()
USER_HI = {"role": "user", "content": "Hi"}

pytestmark = pytest.mark.django_db


def body(**changes: Any) -> dict[str, Any]:
    """The valid request with some fields replaced (MISSING drops a field)."""
    result = dict(VALID)
    for name, value in changes.items():
        if value is MISSING:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def message(**fields: Any) -> dict[str, Any]:
    return body(messages=[fields])


TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}

# (id, request body: raw bytes or a JSON-able dict, expected status, expected param or None)
BAD_BODIES: list[tuple[str, bytes | dict[str, Any], int, str | None]] = [
    ("not-json", b"{model: demo}", 400, None),
    ("truncated-json", b'{"model": "demo", "messages": [{"role": "us', 400, None),
    ("bad-utf8-bytes", b'{"model": "demo\xff\xfe", "messages": []}', 400, None),
    ("lone-surrogate-escape", b'{"model": "\\ud800", "messages": []}', 400, None),
    ("utf8-bom", b'\xef\xbb\xbf{"model": "demo"}', 400, None),
    ("empty-body", b"", 400, None),
    ("whitespace-body", b"  \n\t ", 400, None),
    ("json-array-body", b'[{"model": "demo"}]', 400, None),
    ("json-string-body", b'"hello"', 400, None),
    ("json-number-body", b"42", 400, None),
    ("json-null-body", b"null", 400, None),
    ("nested-too-deep", b"[" * 2000 + b"]" * 2000, 400, None),
    ("infinite-number", b'{"model": "demo", "messages": [], "temperature": 1e999}', 400, None),
    ("nan-literal", b'{"model": "demo", "messages": [], "temperature": NaN}', 400, None),
    ("missing-model", body(model=MISSING), 400, "model"),
    ("null-model", body(model=None), 400, "model"),
    ("model-is-a-number", body(model=42), 400, "model"),
    ("model-is-a-list", body(model=["demo"]), 400, "model"),
    ("model-is-empty", body(model=""), 400, "model"),
    ("model-is-blank", body(model="   "), 400, "model"),
    ("model-is-huge", body(model="m" * 10_000), 400, "model"),
    ("missing-messages", body(messages=MISSING), 400, "messages"),
    ("empty-messages", body(messages=[]), 400, "messages"),
    ("messages-is-a-string", body(messages="Hi"), 400, "messages"),
    ("messages-is-an-object", body(messages={"role": "user", "content": "Hi"}), 400, "messages"),
    ("message-not-an-object", body(messages=["Hi"]), 400, "messages[0]"),
    ("message-without-role", message(content="Hi"), 400, "messages[0].role"),
    ("unknown-role", message(role="wizard", content="Hi"), 400, "messages[0].role"),
    ("role-is-a-number", message(role=1, content="Hi"), 400, "messages[0].role"),
    ("role-is-an-object", message(role={"name": "user"}, content="Hi"), 400, "messages[0].role"),
    ("role-is-a-list", message(role=["user"], content="Hi"), 400, "messages[0].role"),
    ("missing-content", message(role="user"), 400, "messages[0].content"),
    ("content-is-a-number", message(role="user", content=7), 400, "messages[0].content"),
    ("content-is-an-object", message(role="user", content={"text": "Hi"}), 400, None),
    ("empty-content-parts", message(role="user", content=[]), 400, "messages[0].content"),
    ("part-without-type", message(role="user", content=[{"text": "Hi"}]), 400, None),
    ("part-not-an-object", message(role="user", content=["Hi"]), 400, None),
    ("text-part-without-text", message(role="user", content=[{"type": "text"}]), 400, None),
    (
        "part-of-an-undefined-type",
        message(role="user", content=[{"type": "bogus"}]),
        400,
        "messages[0].content[0].type",
    ),
    (
        "second-part-of-an-undefined-type",
        message(role="user", content=[{"type": "text", "text": "Hi"}, {"type": "bogus"}]),
        400,
        "messages[0].content[1].type",
    ),
    (
        "undefined-part-in-a-later-message",
        body(messages=[USER_HI, {"role": "user", "content": [{"type": "video", "url": "x"}]}]),
        400,
        "messages[1].content[0].type",
    ),
    ("part-type-empty", message(role="user", content=[{"type": ""}]), 400, None),
    (
        "part-type-upper-case",
        message(role="user", content=[{"type": "TEXT", "text": "x"}]),
        400,
        None,
    ),
    ("part-type-a-number", message(role="user", content=[{"type": 1}]), 400, None),
    (
        "image-part-without-image-url",
        message(role="user", content=[{"type": "image_url"}]),
        400,
        None,
    ),
    (
        "image-part-url-is-a-string-not-an-object",
        message(role="user", content=[{"type": "image_url", "image_url": "https://x/y.png"}]),
        400,
        "messages[0].content[0].image_url",
    ),
    (
        "image-part-url-not-a-string",
        message(role="user", content=[{"type": "image_url", "image_url": {"url": 5}}]),
        400,
        "messages[0].content[0].image_url",
    ),
    (
        "audio-part-without-input-audio",
        message(role="user", content=[{"type": "input_audio"}]),
        400,
        "messages[0].content[0].input_audio",
    ),
    (
        "audio-part-without-format",
        message(role="user", content=[{"type": "input_audio", "input_audio": {"data": "AAAA"}}]),
        400,
        "messages[0].content[0].input_audio",
    ),
    (
        "file-part-not-an-object",
        message(role="user", content=[{"type": "file", "file": "report.pdf"}]),
        400,
        "messages[0].content[0].file",
    ),
    (
        "refusal-part-without-refusal",
        body(messages=[USER_HI, {"role": "assistant", "content": [{"type": "refusal"}]}]),
        400,
        "messages[1].content[0].refusal",
    ),
    ("tool-message-without-id", message(role="tool", content="42"), 400, None),
    (
        "tool-calls-on-user-message",
        message(role="user", content="Hi", tool_calls=[{"id": "c1", "type": "function"}]),
        400,
        None,
    ),
    (
        "tool-calls-not-a-list",
        body(messages=[USER_HI, {"role": "assistant", "content": None, "tool_calls": "x"}]),
        400,
        None,
    ),
    ("name-not-a-string", message(role="user", content="Hi", name=5), 400, None),
    ("temperature-too-high", body(temperature=2.5), 400, "temperature"),
    ("temperature-negative", body(temperature=-0.1), 400, "temperature"),
    ("temperature-string", body(temperature="hot"), 400, "temperature"),
    ("temperature-bool", body(temperature=True), 400, "temperature"),
    ("temperature-nan-string", body(temperature="NaN"), 400, "temperature"),
    ("top-p-above-one", body(top_p=1.5), 400, "top_p"),
    ("top-p-bool", body(top_p=False), 400, "top_p"),
    ("presence-penalty-too-high", body(presence_penalty=3), 400, "presence_penalty"),
    ("frequency-penalty-too-low", body(frequency_penalty=-2.5), 400, "frequency_penalty"),
    ("frequency-penalty-string", body(frequency_penalty="0"), 400, "frequency_penalty"),
    ("max-tokens-zero", body(max_tokens=0), 400, "max_tokens"),
    ("max-tokens-negative", body(max_tokens=-5), 400, "max_tokens"),
    ("max-tokens-string", body(max_tokens="100"), 400, "max_tokens"),
    ("max-tokens-float", body(max_tokens=10.5), 400, "max_tokens"),
    ("max-tokens-whole-float", body(max_tokens=10.0), 400, "max_tokens"),
    ("max-tokens-bool", body(max_tokens=True), 400, "max_tokens"),
    (
        "max-tokens-beyond-int64",
        b'{"model": "demo", "messages": [], "max_tokens": 1e30}',
        400,
        None,
    ),
    ("max-completion-tokens-zero", body(max_completion_tokens=0), 400, "max_completion_tokens"),
    ("max-completion-tokens-negative", body(max_completion_tokens=-1), 400, None),
    ("max-completion-tokens-string", body(max_completion_tokens="9"), 400, None),
    ("max-completion-tokens-float", body(max_completion_tokens=1.5), 400, None),
    ("max-completion-tokens-bool", body(max_completion_tokens=False), 400, None),
    ("n-zero", body(n=0), 400, "n"),
    ("n-seventeen", body(n=17), 400, "n"),
    ("n-string", body(n="2"), 400, "n"),
    ("stream-string", body(stream="true"), 400, "stream"),
    ("stream-number", body(stream=1), 400, "stream"),
    ("stream-options-without-stream", body(stream_options={"include_usage": True}), 400, None),
    (
        "stream-options-with-stream-false",
        body(stream=False, stream_options={"include_usage": True}),
        400,
        "stream_options",
    ),
    ("stream-options-not-an-object", body(stream=True, stream_options=True), 400, None),
    ("include-usage-not-bool", body(stream=True, stream_options={"include_usage": "y"}), 400, None),
    ("stop-too-many", body(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    ("stop-number", body(stop=42), 400, "stop"),
    ("stop-list-of-numbers", body(stop=[1, 2]), 400, "stop"),
    ("stop-empty-string-in-list", body(stop=[""]), 400, "stop"),
    ("tools-not-a-list", body(tools=TOOL), 400, "tools"),
    ("tools-string", body(tools="lookup"), 400, "tools"),
    ("tool-not-an-object", body(tools=["lookup"]), 400, "tools[0]"),
    ("tool-wrong-type", body(tools=[{**TOOL, "type": "retrieval"}]), 400, "tools[0]"),
    ("tool-missing-name", body(tools=[{"type": "function", "function": {}}]), 400, "tools[0]"),
    (
        "tool-empty-name",
        body(tools=[{"type": "function", "function": {"name": ""}}]),
        400,
        "tools[0]",
    ),
    (
        "tool-parameters-not-an-object",
        body(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]),
        400,
        "tools[0].function.parameters",
    ),
    ("tool-choice-unknown-string", body(tools=[TOOL], tool_choice="sometimes"), 400, None),
    ("tool-choice-number", body(tools=[TOOL], tool_choice=1), 400, "tool_choice"),
    ("tool-choice-object-without-function", body(tools=[TOOL], tool_choice={}), 400, None),
    (
        "tool-choice-object-without-tools",
        body(tool_choice={"type": "function", "function": {"name": "lookup"}}),
        400,
        "tool_choice",
    ),
    ("response-format-unknown-type", body(response_format={"type": "xml"}), 400, None),
    ("response-format-string", body(response_format="json"), 400, "response_format"),
    (
        "response-format-type-is-a-list",
        body(response_format={"type": ["json_object"]}),
        400,
        "response_format",
    ),
    (
        "json-schema-without-name",
        body(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
        400,
        "response_format.json_schema",
    ),
    (
        "json-schema-schema-not-object",
        body(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": 1}}),
        400,
        "response_format.json_schema",
    ),
    ("logit-bias-above-100", body(logit_bias={"50256": 101}), 400, "logit_bias"),
    ("logit-bias-below-minus-100", body(logit_bias={"50256": -101}), 400, "logit_bias"),
    ("logit-bias-string-value", body(logit_bias={"1": "high"}), 400, "logit_bias"),
    ("logit-bias-list", body(logit_bias=[1, 2]), 400, "logit_bias"),
    ("unknown-top-level-field", body(temprature=0.5), 400, "temprature"),
    ("user-not-a-string", body(user=42), 400, "user"),
    ("metadata-string", body(metadata="tag"), 400, "metadata"),
    ("metadata-list", body(metadata=["tag"]), 400, "metadata"),
    ("logprobs-string", body(logprobs="yes"), 400, "logprobs"),
    ("top-logprobs-too-many", body(top_logprobs=21), 400, "top_logprobs"),
    ("seed-string", body(seed="1"), 400, "seed"),
    ("parallel-tool-calls-string", body(parallel_tool_calls="no"), 400, "parallel_tool_calls"),
    ("max-tokens-above-model-cap", body(max_tokens=1025), 400, "max_tokens"),
    ("max-completion-tokens-above-cap", body(max_completion_tokens=5000), 400, None),
    ("service-tier-not-a-string", body(service_tier=1), 400, "service_tier"),
    ("modalities-not-a-list", body(modalities="text"), 400, "modalities"),
    ("modalities-list-of-numbers", body(modalities=[1]), 400, "modalities"),
    *(
        (f"priced-{name}", body(**{field: value}), 400, field)
        for name, field, value in (
            ("service-tier-priority", "service_tier", "priority"),
            ("service-tier-flex", "service_tier", "flex"),
            ("service-tier-scale", "service_tier", "scale"),
            ("audio-output", "audio", {"voice": "alloy", "format": "wav"}),
            ("audio-modality", "modalities", ["text", "audio"]),
            ("web-search", "web_search_options", {}),
            ("web-search-with-context-size", "web_search_options", {"search_context_size": "low"}),
            ("prediction", "prediction", {"type": "content", "content": "Hi"}),
        )
    ),
]
# Fields that change what the upstream charges: refused, since the call would be billed at
# the plain text price. (id, field, value)
PRICED_FIELDS = [
    (name.removeprefix("priced-"), param, payload[param])
    for name, payload, _, param in BAD_BODIES
    if name.startswith("priced-")
]


@dataclass
class Customer:
    user: User
    account: Account
    api_key: ApiKey
    secret: str


def new_customer(name: str, credit_micro_usd: int = 10_000_000, **key_fields: Any) -> Customer:
    user = User.objects.create_user(f"bad-inputs-{name}@example.com", "pw-123-secret")
    account = Account.objects.get(user=user)
    extra = credit_micro_usd - account.balance_micro_usd
    if extra:
        credit_account(
            account=account,
            amount=extra,
            kind=LedgerEntry.Kind.ADJUSTMENT,
            idempotency_key=f"bad-inputs-credit:{user.pk}",
        )
    key, secret = ApiKey.objects.mint(user=user, name=name, **key_fields)
    return Customer(user=user, account=account, api_key=key, secret=secret)


def spoiled_customers() -> dict[str, Customer]:
    revoked = new_customer("revoked")
    revoked.api_key.revoke()
    expired = new_customer("expired", expires_at=timezone.now() - timedelta(seconds=1))
    inactive = new_customer("inactive")
    User.objects.filter(pk=inactive.user.pk).update(is_active=False)
    return {"revoked": revoked, "expired": expired, "inactive": inactive}


@pytest.fixture(scope="module")
def world(django_db_setup: None, django_db_blocker: Any) -> Iterator[dict[str, Customer]]:
    """The catalog and customers of every kind, committed once; one flush at the end."""
    with django_db_blocker.unblock():
        call_command("synccatalog", "--demo-only", verbosity=0)
        demo = Provider.objects.get(name="demo")
        for model in (
            Model(id="unpriced", input_price=None, output_price=None),
            Model(id="retired", input_price=1, output_price=1, enabled=False),
        ):
            model.save()
            Route.objects.create(model=model, provider=demo, upstream_model="demo")
        yield {
            "standard": new_customer("standard"),
            "other-models-only": new_customer("other-models", allowed_models=["another-model"]),
            "cost-capped": new_customer("cost-capped", max_cost_per_request_micro_usd=10),
            **spoiled_customers(),
        }
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
def upstream_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every adapter the engine asks for; rejected requests must ask for none."""
    from gateway import calls

    asked: list[str] = []
    real = calls.get_adapter

    def recording(provider: Any, client: Any) -> Any:
        asked.append(provider.name)
        return real(provider, client)

    monkeypatch.setattr(calls, "get_adapter", recording)
    return asked


def books(account_id: int) -> dict[str, int]:
    account = Account.objects.get(pk=account_id)
    return {
        "balance": account.balance_micro_usd,
        "held": account.held_micro_usd,
        "ledger": account.ledger_sum(),
        "entries": LedgerEntry.objects.filter(account_id=account_id).count(),
        "holds": Hold.objects.filter(account_id=account_id).count(),
        "usage": UsageRecord.objects.filter(account_id=account_id).count(),
    }


def assert_untouched(before: dict[str, int], after: dict[str, int]) -> None:
    assert after == before
    assert before["held"] == 0 and before["holds"] == 0 and before["usage"] == 0
    assert before["balance"] == before["ledger"]


@pytest.fixture
def customers(world: dict[str, Customer], upstream_calls: list[str]) -> Iterator[dict[str, Any]]:
    """The world's customers; afterwards none has a hold, charge or usage record, and no
    upstream was called."""
    assert User.objects.filter(pk=world["standard"].user.pk).exists(), "world was flushed"
    before = {name: books(c.account.pk) for name, c in world.items()}
    yield world
    for name, customer in world.items():
        assert_untouched(before[name], books(customer.account.pk))
    assert upstream_calls == []


@pytest.fixture
def customer(customers: dict[str, Customer]) -> Customer:
    return customers["standard"]


async def post(
    payload: bytes | dict[str, Any],
    secret: str | None,
    headers: dict[str, str] | None = None,
) -> Any:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    sent = dict(headers or {})
    if secret is not None:
        sent["Authorization"] = f"Bearer {secret}"
    return await AsyncClient().post(PATH, data=raw, content_type="application/json", headers=sent)


def assert_openai_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    payload = orjson.loads(response.content)
    assert set(payload) == {"error"}
    error = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"].strip()
    assert isinstance(error["type"], str) and error["type"]
    if code is not None:
        assert error["code"] == code
    assert response["x-request-id"].startswith("req_")
    return error


# These reach the credit hold, whose transaction needs SQLite's write lock, so they run
# as transactional tests with their own customers; they come first because their flush
# would also empty the module's committed `world`.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    ("key_fields", "code"),
    [
        pytest.param({"credit_micro_usd": 0}, "insufficient_credits", id="no-credit"),
        pytest.param({"credit_micro_usd": 1_000}, "insufficient_credits", id="little-credit"),
        pytest.param({"spend_cap_micro_usd": 100}, "spend_cap_exceeded", id="spend-cap"),
    ],
)
async def test_it_refuses_what_the_money_cannot_cover_before_calling_upstream(
    demo_catalog: None,
    make_customer: Any,
    upstream_calls: list[str],
    key_fields: dict[str, int],
    code: str,
    stream: bool,
) -> None:
    customer = await sync_to_async(make_customer)(**key_fields)
    before = await sync_to_async(books)(customer.account.pk)
    payload = body(stream=True, stream_options={"include_usage": True}) if stream else VALID
    response = await post(payload, customer.secret)
    error = assert_openai_error(response, 402, code)
    assert error["type"] == "insufficient_quota"
    assert_untouched(before, await sync_to_async(books)(customer.account.pk))
    assert upstream_calls == []


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [pytest.param(p, s, m, id=name) for name, p, s, m in BAD_BODIES],
)
async def test_it_rejects_a_bad_body_with_an_openai_error(
    customer: Customer, payload: bytes | dict[str, Any], status: int, param: str | None
) -> None:
    response = await post(payload, customer.secret)
    error = assert_openai_error(response, status)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


@pytest.mark.parametrize(
    ("field", "value"), [pytest.param(f, v, id=name) for name, f, v in PRICED_FIELDS]
)
async def test_it_refuses_a_field_that_changes_the_upstreams_price(
    customer: Customer, field: str, value: Any
) -> None:
    response = await post(body(**{field: value}), customer.secret)
    error = assert_openai_error(response, 400, "unsupported_parameter")
    assert error["type"] == "invalid_request_error"
    assert error["param"] == field
    assert f"'{field}'" in error["message"]
    assert "price" in error["message"] and "text" in error["message"]


async def test_it_refuses_audio_in_the_prompt_which_is_priced_apart_from_text(
    customer: Customer,
) -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    text = {"type": "text", "text": "What is said?"}
    response = await post(message(role="user", content=[text, audio]), customer.secret)
    error = assert_openai_error(response, 400, "unsupported_parameter")
    assert error["param"] == "messages[0].content[1]"
    assert "input_audio" in error["message"] and "price" in error["message"]


@pytest.mark.parametrize(
    "fields",
    [
        {"service_tier": "auto"},
        {"service_tier": "default"},
        {"service_tier": None},
        {"modalities": ["text"]},
        {"audio": None, "prediction": None, "web_search_options": None},
    ],
)
def test_fields_at_the_plain_price_pass_validation(fields: dict[str, Any]) -> None:
    from gateway.validation import validate_chat

    validate_chat(body(**fields))


def test_the_table_of_bad_bodies_is_large_and_has_unique_names() -> None:
    names = [row[0] for row in BAD_BODIES]
    assert len(names) >= 45
    assert len(set(names)) == len(names)


def test_the_valid_body_the_table_spoils_passes_validation() -> None:
    from gateway.validation import validate_chat

    validate_chat(dict(VALID))


def test_every_content_part_the_api_defines_passes_validation() -> None:
    """All but input_audio, which is well formed but priced apart (refused as such)."""
    from gateway.validation import validate_chat

    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {"type": "file", "file": {"file_id": "file-abc"}},
    ]
    answer = {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}
    validate_chat(body(messages=[{"role": "user", "content": parts}, answer, USER_HI]))


async def test_it_names_the_index_of_an_undefined_content_part(customer: Customer) -> None:
    parts = [{"type": "text", "text": "Hi"}, {"type": "text", "text": "again"}, {"type": "bogus"}]
    response = await post(message(role="user", content=parts), customer.secret)
    error = assert_openai_error(response, 400)
    assert "messages[0].content[2]" in error["message"]
    assert "'bogus'" in error["message"] and "image_url" in error["message"]


@pytest.mark.parametrize(
    ("field", "value"), [("max_tokens", 1025), ("max_completion_tokens", 4096)]
)
async def test_it_names_the_models_output_cap(customer: Customer, field: str, value: int) -> None:
    response = await post(body(**{field: value}), customer.secret)
    error = assert_openai_error(response, 400, "invalid_value")
    assert error["param"] == field
    assert "1024" in error["message"] and str(value) in error["message"]


@pytest.mark.parametrize("max_tokens", [None, 1000])
async def test_it_rejects_a_prompt_beyond_the_context_length(
    customer: Customer, max_tokens: int | None
) -> None:
    words = 33_000 if max_tokens is None else 32_000
    messages = [{"role": "user", "content": "hello " * words}]
    prompt = count_prompt(messages)
    response = await post(body(messages=messages, max_tokens=max_tokens), customer.secret)
    error = assert_openai_error(response, 400, "context_length_exceeded")
    assert error["param"] == "messages"
    assert "32768" in error["message"]
    assert str(prompt + (max_tokens or 0)) in error["message"]


@pytest.mark.parametrize("limit", [64, 1024])
async def test_it_refuses_a_body_over_max_request_bytes(
    customer: Customer, settings: Any, limit: int
) -> None:
    settings.MAX_REQUEST_BYTES = limit
    big = body(messages=[{"role": "user", "content": "x" * (limit + 10)}])
    response = await post(big, customer.secret)
    error = assert_openai_error(response, 413, "request_too_large")
    assert str(limit) in error["message"]


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
async def test_it_answers_other_methods_with_405_json(customer: Customer, method: str) -> None:
    client = AsyncClient()
    response = await getattr(client, method)(
        PATH, headers={"Authorization": f"Bearer {customer.secret}"}
    )
    assert_openai_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("Bearer", id="bearer-without-key"),
        pytest.param("Bearer ", id="bearer-blank"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic-auth"),
        pytest.param("sk-sb-0123456789abxxxxxxxxxxxx", id="no-bearer-scheme"),
        pytest.param("Bearer sk-proj-abcdef", id="foreign-key-format"),
        pytest.param("Bearer sk-sb-short", id="too-short"),
        pytest.param("Bearer sk-sb-0123456789ab" + "x" * 43, id="unknown-key"),
    ],
)
async def test_it_refuses_a_missing_or_malformed_key(
    customers: Any, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await post(VALID, None, headers)
    error = assert_openai_error(response, 401, "invalid_api_key")
    assert error["type"] == "invalid_request_error"


async def test_it_refuses_a_key_whose_prefix_matches_but_secret_does_not(
    customer: Customer,
) -> None:
    forged = customer.secret[:-4] + ("AAAA" if customer.secret[-4:] != "AAAA" else "BBBB")
    response = await post(VALID, forged)
    assert_openai_error(response, 401, "invalid_api_key")


@pytest.mark.parametrize(
    ("name", "words"), [("revoked", "revoked"), ("expired", "expired"), ("inactive", "")]
)
async def test_it_refuses_a_key_that_no_longer_works(
    customers: dict[str, Customer], name: str, words: str
) -> None:
    response = await post(VALID, customers[name].secret)
    error = assert_openai_error(response, 401, "invalid_api_key")
    assert words in error["message"]


@pytest.mark.parametrize("name", ["no-such-model", "gpt-4o", "DEMOX", "demo-2", "retired"])
async def test_it_answers_an_unknown_or_disabled_model_with_404_listing_the_available_ids(
    customer: Customer, name: str
) -> None:
    response = await post(body(model=name), customer.secret)
    error = assert_openai_error(response, 404, "model_not_found")
    assert error["param"] == "model"
    assert f"'{name}'" in error["message"]
    assert "Available models: demo." in error["message"]


async def test_it_fails_closed_on_a_model_without_prices(customer: Customer) -> None:
    response = await post(body(model="unpriced"), customer.secret)
    error = assert_openai_error(response, 400, "model_not_priced")
    assert error["param"] == "model" and "unpriced" in error["message"]


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "", "1e3", "0x10"])
async def test_it_rejects_a_bad_max_cost_header(customer: Customer, value: str) -> None:
    response = await post(VALID, customer.secret, {"X-Max-Cost-Micro-Usd": value})
    error = assert_openai_error(response, 400)
    assert error["param"] == "X-Max-Cost-Micro-Usd"


@pytest.mark.parametrize("cap", ["0", "1", "100"])
async def test_it_refuses_a_worst_case_above_the_max_cost_header(
    customer: Customer, cap: str
) -> None:
    response = await post(VALID, customer.secret, {"X-Max-Cost-Micro-Usd": cap})
    error = assert_openai_error(response, 402, "max_cost_exceeded")
    assert cap in error["message"]


async def test_it_refuses_a_model_the_key_may_not_use(customers: dict[str, Customer]) -> None:
    response = await post(VALID, customers["other-models-only"].secret)
    error = assert_openai_error(response, 403, "model_not_allowed")
    assert error["type"] == "permission_error" and "another-model" in error["message"]


async def test_it_refuses_a_worst_case_above_the_keys_default_max_cost(
    customers: dict[str, Customer],
) -> None:
    response = await post(VALID, customers["cost-capped"].secret)
    assert_openai_error(response, 402, "max_cost_exceeded")
