"""The operator's commands: synccatalog, loadcatalog, mintkey, and `check --deploy`."""

from __future__ import annotations

import io
import re
import secrets
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.checks import Error
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.utils import timezone

from accounts.models import ApiKey, User
from billing.models import LedgerEntry
from gateway.auth import authenticate
from gateway.catalog import get_catalog
from gateway.checks import production_problems
from gateway.management.commands.synccatalog import VENDORS
from gateway.models import Model, Provider, Route

VENDOR_ENV = [env for _, _, _, env in VENDORS.values()]


@pytest.fixture
def no_vendor_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in VENDOR_ENV:
        monkeypatch.delenv(env, raising=False)


def catalog_rows() -> dict[str, list[Any]]:
    return {
        "providers": list(Provider.objects.values_list("name", "kind", "base_url", "api_key_env")),
        "models": list(
            Model.objects.order_by("id").values_list(
                "id",
                "title",
                "owned_by",
                "context_length",
                "max_output_tokens",
                "input_price",
                "output_price",
                "cached_input_price",
                "enabled",
                "price_source",
            )
        ),
        "routes": list(
            Route.objects.order_by("model_id", "provider__name").values_list(
                "model_id", "provider__name", "upstream_model", "priority", "enabled"
            )
        ),
    }


@pytest.mark.django_db
def test_synccatalog_demo_seeds_the_demo_provider_model_and_route(no_vendor_keys: None) -> None:
    call_command("synccatalog", "--demo-only", stdout=io.StringIO())

    assert list(Provider.objects.values_list("name", "kind", "enabled")) == [("demo", "demo", True)]
    demo = Model.objects.get(id="demo")
    assert (demo.input_price, demo.output_price, demo.cached_input_price) == (
        1_000_000,
        2_000_000,
        500_000,
    )
    assert (demo.context_length, demo.max_output_tokens, demo.aliases) == (
        32768,
        1024,
        ["demo-model"],
    )
    assert list(Route.objects.values_list("model_id", "provider__name", "upstream_model")) == [
        ("demo", "demo", "demo")
    ]


@pytest.mark.django_db
def test_synccatalog_imports_genai_prices_with_whole_positive_prices(
    no_vendor_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    call_command("synccatalog", "--demo", stdout=io.StringIO())

    imported = Model.objects.filter(price_source__startswith="genai-prices:")
    assert imported.count() > 50
    for model in imported:
        assert isinstance(model.input_price, int) and model.input_price > 0
        assert isinstance(model.output_price, int) and model.output_price > 0
        assert model.cached_input_price is None or model.cached_input_price >= 0
        assert 0 < model.max_output_tokens <= model.context_length
        vendor = model.price_source.removeprefix("genai-prices:")
        assert list(model.routes.values_list("provider__name", flat=True)) == [VENDORS[vendor][0]]
        assert model.enabled is (vendor == "openai")
    assert Model.objects.get(id="gpt-4o").enabled
    assert Provider.objects.get(name="anthropic").api_key_env == "ANTHROPIC_API_KEY"
    assert Provider.objects.get(name="anthropic").api_key == ""


@pytest.mark.django_db
def test_synccatalog_routes_a_model_only_to_its_own_vendor(no_vendor_keys: None) -> None:
    call_command("synccatalog", stdout=io.StringIO())

    claude = Model.objects.get(id="claude-sonnet-4-5")
    assert claude.price_source == "genai-prices:anthropic"
    assert list(claude.routes.values_list("provider__name", flat=True)) == ["anthropic"]


@pytest.mark.django_db
def test_synccatalog_can_run_again_without_changing_anything(no_vendor_keys: None) -> None:
    call_command("synccatalog", "--demo", stdout=io.StringIO())
    first = catalog_rows()

    out = io.StringIO()
    call_command("synccatalog", "--demo", stdout=out)

    assert catalog_rows() == first
    assert "0 models added, 0 prices refreshed" in out.getvalue()


@pytest.mark.django_db
def test_synccatalog_refreshes_imported_prices_and_keeps_the_operators(
    no_vendor_keys: None, settings: Any
) -> None:
    settings.CATALOG_CACHE_SECONDS = 0
    call_command("synccatalog", stdout=io.StringIO())
    listed = Model.objects.get(id="gpt-4o").input_price
    yesterday = timezone.now() - timedelta(days=1)
    Model.objects.filter(id="gpt-4o").update(input_price=1, updated_at=yesterday)
    Model.objects.filter(id="gpt-4o-mini").update(input_price=7, price_source="operator")
    stale = get_catalog().models["gpt-4o"]
    assert stale.input_price == 1

    out = io.StringIO()
    call_command("synccatalog", stdout=out)

    assert "1 prices refreshed" in out.getvalue()
    assert Model.objects.get(id="gpt-4o").input_price == listed
    assert Model.objects.get(id="gpt-4o-mini").input_price == 7
    fresh = get_catalog().models["gpt-4o"]
    assert fresh.input_price == listed
    assert fresh.price_version > stale.price_version


@pytest.mark.django_db
def test_the_catalog_snapshot_carries_the_markup(no_vendor_keys: None, settings: Any) -> None:
    settings.PRICE_MARKUP_PERCENT = 10
    call_command("synccatalog", "--demo", stdout=io.StringIO())

    snapshot = get_catalog()

    assert snapshot.models["demo"].input_price == 1_100_000
    assert snapshot.models["demo"].output_price == 2_200_000
    for model in Model.objects.exclude(id="demo"):
        info = snapshot.models[model.id]
        assert info.input_price == -(-model.input_price * 110 // 100)
        assert info.output_price == -(-model.output_price * 110 // 100)
        assert isinstance(info.input_price, int) and info.input_price >= model.input_price


CATALOG_TOML = """
[[provider]]
name = "local"
kind = "openai"
base_url = "http://127.0.0.1:9000/v1"
api_key_env = "LOCAL_KEY"
timeout_seconds = 30

[[provider]]
name = "spare"
kind = "anthropic"
base_url = "http://127.0.0.1:9001/v1"

[[model]]
id = "my-model"
title = "My Model"
aliases = ["mm", "mine"]
context_length = 32768
max_output_tokens = 4096
input_usd_per_mtok = 0.5
output_usd_per_mtok = 1.5
cached_input_usd_per_mtok = 0.25
routes = [
  { provider = "spare", upstream_model = "spare-name" },
  { provider = "local", upstream_model = "upstream-name" },
]

[[model]]
id = "free-text"
input_usd_per_mtok = 0.000001
output_usd_per_mtok = 0
enabled = false
routes = [{ provider = "local" }]
"""


@pytest.mark.django_db
def test_loadcatalog_declares_providers_models_and_routes_in_priority_order(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_KEY", "sk-local")
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG_TOML)

    call_command("loadcatalog", str(path), stdout=io.StringIO())
    call_command("loadcatalog", str(path), stdout=io.StringIO())

    local = Provider.objects.get(name="local")
    assert (local.kind, local.base_url, local.api_key, local.timeout_seconds) == (
        "openai",
        "http://127.0.0.1:9000/v1",
        "",
        30,
    )
    assert local.resolve_api_key() == "sk-local"
    model = Model.objects.get(id="my-model")
    assert (model.title, model.aliases, model.context_length, model.max_output_tokens) == (
        "My Model",
        ["mm", "mine"],
        32768,
        4096,
    )
    assert (model.input_price, model.output_price, model.cached_input_price) == (
        500_000,
        1_500_000,
        250_000,
    )
    assert list(
        model.routes.order_by("priority").values_list("provider__name", "upstream_model")
    ) == [
        ("spare", "spare-name"),
        ("local", "upstream-name"),
    ]
    free = Model.objects.get(id="free-text")
    assert (free.input_price, free.output_price, free.enabled) == (1, 0, False)
    assert list(free.routes.values_list("upstream_model", flat=True)) == ["free-text"]
    assert get_catalog().resolve("mine").id == "my-model"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("toml", "complaint"),
    [
        pytest.param(
            '[[provider]]\nname = "leaky"\nkind = "openai"\napi_key = "sk-live-123"\n',
            "api_key_env",
            id="api-key-in-the-file",
        ),
        pytest.param(
            '[[provider]]\nname = "odd"\nkind = "carrier-pigeon"\n', "kind", id="bad-kind"
        ),
        pytest.param('[[provider]]\nkind = "openai"\n', "name", id="provider-without-name"),
        pytest.param('[[model]]\ntitle = "No id"\n', "id", id="model-without-id"),
        pytest.param('[[model]]\nid = "m"\naliases = "mm"\n', "aliases", id="aliases-not-a-list"),
        pytest.param(
            '[[model]]\nid = "m"\ninput_usd_per_mtok = -1\n',
            "input_usd_per_mtok",
            id="negative-price",
        ),
        pytest.param(
            '[[model]]\nid = "m"\noutput_usd_per_mtok = "cheap"\n',
            "output_usd_per_mtok",
            id="price-not-a-number",
        ),
        pytest.param(
            '[[model]]\nid = "m"\nroutes = [{ provider = "nowhere" }]\n',
            "nowhere",
            id="route-to-unknown-provider",
        ),
        pytest.param("[[provider]\n", "catalog.toml", id="not-toml"),
    ],
)
def test_loadcatalog_refuses_a_bad_file_and_changes_nothing(
    tmp_path: Any, toml: str, complaint: str
) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(f'[[provider]]\nname = "first"\nkind = "demo"\n\n{toml}')

    with pytest.raises(CommandError, match=re.escape(complaint)):
        call_command("loadcatalog", str(path), stdout=io.StringIO())

    assert not Provider.objects.exists() and not Model.objects.exists()


@pytest.mark.django_db
def test_loadcatalog_refuses_a_missing_file(tmp_path: Any) -> None:
    with pytest.raises(CommandError, match=r"missing\.toml"):
        call_command("loadcatalog", str(tmp_path / "missing.toml"))


def mintkey(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("mintkey", *args, stdout=out)
    return out.getvalue().splitlines()


@pytest.mark.django_db(transaction=True)
def test_mintkey_creates_the_user_grants_credit_and_prints_a_working_key(
    settings: Any,
) -> None:
    lines = mintkey("New.Person@Example.com", "--credit-usd", "2.5", "--name", "ci", "--rpm", "7")

    secret = lines[-1]
    assert secret.startswith("sk-sb-") and secret.strip() == secret
    user = User.objects.get(email="new.person@example.com")
    account = user.account
    assert account.balance_micro_usd == settings.SIGNUP_GRANT_MICRO_USD + 2_500_000
    assert account.ledger_sum() == account.balance_micro_usd
    assert account.entries.filter(kind=LedgerEntry.Kind.GRANT).count() == 2
    key = ApiKey.objects.get(user=user)
    assert (key.name, key.rpm_limit, key.allowed_models) == ("ci", 7, [])
    info = async_to_sync(authenticate)(f"Bearer {secret}")
    assert (info.id, info.account_id) == (key.pk, account.pk)


@pytest.mark.django_db
def test_mintkey_reuses_an_existing_user_and_sets_the_allowlist(customer: Any) -> None:
    start = customer.account.balance_micro_usd

    lines = mintkey(customer.user.email, "--models", "demo, gpt-4o,")

    assert User.objects.count() == 1
    key = ApiKey.objects.get(prefix=lines[-1][6:18])
    assert key.user == customer.user and key.allowed_models == ["demo", "gpt-4o"]
    assert key.matches(lines[-1])
    customer.account.refresh_from_db()
    assert customer.account.balance_micro_usd == start


@pytest.mark.django_db
@pytest.mark.parametrize("credit", ["-1", "lots", "NaN"])
def test_mintkey_refuses_a_bad_credit_amount(credit: str) -> None:
    with pytest.raises(CommandError, match="credit-usd"):
        mintkey("someone@example.com", "--credit-usd", credit)

    assert not User.objects.filter(email="someone@example.com").exists()


@pytest.fixture
def production_settings(settings: Any) -> Any:
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    settings.DATABASES = {
        "default": {**settings.DATABASES["default"], "ENGINE": "django.db.backends.postgresql"}
    }
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    settings.ALLOWED_HOSTS = ["gateway.example.com"]
    settings.METRICS_TOKEN = secrets.token_urlsafe(16)
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    return settings


def problem_ids() -> list[str]:
    return [problem.id for problem in production_problems()]


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_production_settings_have_no_problems(production_settings: Any) -> None:
    assert problem_ids() == []


@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_check_deploy_passes_with_production_settings(production_settings: Any) -> None:
    out = io.StringIO()
    call_command("check", "--deploy", stdout=out, stderr=out)

    assert "no issues" in out.getvalue()


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
@pytest.mark.parametrize(
    "secret_key",
    ["insecure-development-key-change-me-in-production-0123456789", "short-but-random-Zq8"],
)
def test_an_insecure_secret_key_is_an_error(production_settings: Any, secret_key: str) -> None:
    production_settings.SECRET_KEY = secret_key

    problems = production_problems()

    assert [p.id for p in problems] == ["console.E001"]
    assert isinstance(problems[0], Error)


@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_check_deploy_fails_on_an_insecure_secret_key(production_settings: Any) -> None:
    production_settings.SECRET_KEY = "insecure-" + "x" * 60

    with pytest.raises(SystemCheckError, match=r"console\.E001"):
        call_command("check", "--deploy", stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_sqlite_and_a_missing_redis_are_production_errors(production_settings: Any) -> None:
    production_settings.DATABASES = {
        "default": {
            **production_settings.DATABASES["default"],
            "ENGINE": "django.db.backends.sqlite3",
        }
    }
    production_settings.REDIS_URL = ""

    assert problem_ids() == ["console.E002", "console.E003"]
