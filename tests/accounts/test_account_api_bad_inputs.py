"""The account API refuses bad input with a 4xx JSON error object and mints nothing.

`POST /api/v1/keys` takes strict JSON: booleans are JSON booleans, integers are JSON
integers in range, dates are ISO 8601 strings, and unknown fields are refused (a
misspelt limit must not silently mint an unlimited key). Every path and method under
/api/v1/ answers JSON, never an HTML page or an empty body.

The key is looked up on a worker thread, so `world` commits the owner and their keys
once for the module and flushes once at the end (as tests/gateway/test_bad_inputs.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from django.core.management import call_command
from django.test import Client

from accounts.models import ApiKey, User
from tests.books import money_snapshot

pytestmark = pytest.mark.django_db

KEYS = "/api/v1/keys"
MISSING = object()


def key_body(**changes: Any) -> dict[str, Any]:
    """A valid key request with some fields replaced (MISSING drops one)."""
    result: dict[str, Any] = {"name": "deploy"}
    for name, value in changes.items():
        if value is MISSING:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def nested(depth: int) -> bytes:
    return b'{"name": "deep", "allowed_models": ' + b"[" * depth + b"]" * depth + b"}"


# (id, body: raw bytes or JSON-able, expected param or None); every one is a 400.
BAD_KEY_BODIES: list[tuple[str, bytes | Any, str | None]] = [
    ("not-json", b"{nope", None),
    ("truncated-json", b'{"name": "dep', None),
    ("empty-body", b"", None),
    ("whitespace-body", b" \n ", None),
    ("bad-utf8", b'{"name": "\xff\xfe"}', None),
    ("utf8-bom", b'\xef\xbb\xbf{"name": "deploy"}', None),
    ("array-body", [{"name": "deploy"}], None),
    ("string-body", "deploy", None),
    ("number-body", 42, None),
    ("null-body", None, None),
    ("true-body", True, None),
    ("deeply-nested-array", b"[" * 100_000 + b"]" * 100_000, None),
    ("deeply-nested-field", nested(50_000), None),
    ("nested-a-little-too-deep", nested(2_000), None),
    ("nan-literal", b'{"name": "deploy", "rpm_limit": NaN}', None),
    ("infinity-literal", b'{"name": "deploy", "tpm_limit": Infinity}', None),
    ("huge-exponent", b'{"name": "deploy", "rpm_limit": 1e999}', None),
    ("lone-surrogate", b'{"name": "\\ud800"}', None),
    ("unknown-field", key_body(is_admin=True), "is_admin"),
    ("misspelt-field", key_body(rpm_limt=5), "rpm_limt"),
    ("name-missing", key_body(name=MISSING), "name"),
    ("name-null", key_body(name=None), "name"),
    ("name-empty", key_body(name=""), "name"),
    ("name-blank", key_body(name="   "), "name"),
    ("name-number", key_body(name=5), "name"),
    ("name-bool", key_body(name=True), "name"),
    ("name-list", key_body(name=["deploy"]), "name"),
    ("name-object", key_body(name={"first": "deploy"}), "name"),
    ("name-too-long", key_body(name="k" * 101), "name"),
    ("name-with-nul", key_body(name="de\x00ploy"), "name"),
    ("expires-on-number", key_body(expires_on=20300101), "expires_on"),
    ("expires-on-float", key_body(expires_on=1.5), "expires_on"),
    ("expires-on-object", key_body(expires_on={"year": 2030}), "expires_on"),
    ("expires-on-list", key_body(expires_on=[2030, 1, 1]), "expires_on"),
    ("expires-on-true", key_body(expires_on=True), "expires_on"),
    ("expires-on-false", key_body(expires_on=False), "expires_on"),
    ("expires-on-empty-string", key_body(expires_on=""), "expires_on"),
    ("expires-on-words", key_body(expires_on="tomorrow"), "expires_on"),
    ("expires-on-month-13", key_body(expires_on="2030-13-01"), "expires_on"),
    ("expires-on-february-30", key_body(expires_on="2030-02-30"), "expires_on"),
    ("expires-on-us-format", key_body(expires_on="01/02/2030"), "expires_on"),
    ("expires-on-a-datetime", key_body(expires_on="2030-01-01T00:00:00Z"), "expires_on"),
    ("expires-on-in-the-past", key_body(expires_on="2020-01-01"), "expires_on"),
    ("expires-on-the-last-day", key_body(expires_on="9999-12-31"), "expires_on"),
    ("expires-on-nul", key_body(expires_on="2030-01-01\x00"), "expires_on"),
    ("allowed-models-string", key_body(allowed_models="demo"), "allowed_models"),
    ("allowed-models-object", key_body(allowed_models={"demo": True}), "allowed_models"),
    ("allowed-models-true", key_body(allowed_models=True), "allowed_models"),
    ("allowed-models-numbers", key_body(allowed_models=[1, 2]), "allowed_models"),
    ("allowed-models-null-item", key_body(allowed_models=[None]), "allowed_models"),
    ("allowed-models-nested", key_body(allowed_models=[["demo"]]), "allowed_models"),
    ("allowed-models-unknown", key_body(allowed_models=["no-such-model"]), "allowed_models"),
    ("rpm-zero", key_body(rpm_limit=0), "rpm_limit"),
    ("rpm-negative", key_body(rpm_limit=-1), "rpm_limit"),
    ("rpm-2-to-the-31", key_body(rpm_limit=2**31), "rpm_limit"),
    ("rpm-2-to-the-32", key_body(rpm_limit=2**32), "rpm_limit"),
    ("rpm-2-to-the-63", key_body(rpm_limit=2**63), "rpm_limit"),
    ("rpm-2-to-the-64", key_body(rpm_limit=2**64 - 1), "rpm_limit"),
    ("rpm-beyond-int64", b'{"name": "deploy", "rpm_limit": 100000000000000000000000}', None),
    ("rpm-float", key_body(rpm_limit=1.5), "rpm_limit"),
    ("rpm-whole-float", key_body(rpm_limit=10.0), "rpm_limit"),
    ("rpm-string", key_body(rpm_limit="10"), "rpm_limit"),
    ("rpm-true", key_body(rpm_limit=True), "rpm_limit"),
    ("rpm-false", key_body(rpm_limit=False), "rpm_limit"),
    ("rpm-list", key_body(rpm_limit=[10]), "rpm_limit"),
    ("rpm-object", key_body(rpm_limit={"value": 10}), "rpm_limit"),
    ("tpm-zero", key_body(tpm_limit=0), "tpm_limit"),
    ("tpm-2-to-the-31", key_body(tpm_limit=2**31), "tpm_limit"),
    ("tpm-2-to-the-40", key_body(tpm_limit=2**40), "tpm_limit"),
    ("tpm-string", key_body(tpm_limit="1000"), "tpm_limit"),
    ("tpm-true", key_body(tpm_limit=True), "tpm_limit"),
    ("tpm-float", key_body(tpm_limit=99.9), "tpm_limit"),
    ("spend-cap-negative", key_body(spend_cap_usd=-1), "spend_cap_usd"),
    ("spend-cap-words", key_body(spend_cap_usd="ten dollars"), "spend_cap_usd"),
    ("spend-cap-true", key_body(spend_cap_usd=True), "spend_cap_usd"),
    ("spend-cap-list", key_body(spend_cap_usd=[5]), "spend_cap_usd"),
    ("spend-cap-object", key_body(spend_cap_usd={"usd": 5}), "spend_cap_usd"),
    ("spend-cap-huge", key_body(spend_cap_usd=1e30), "spend_cap_usd"),
    ("spend-cap-huge-string", key_body(spend_cap_usd="1e400"), "spend_cap_usd"),
    ("spend-cap-nan-string", key_body(spend_cap_usd="NaN"), "spend_cap_usd"),
    ("spend-cap-infinity-string", key_body(spend_cap_usd="Infinity"), "spend_cap_usd"),
    ("spend-cap-sub-cent", key_body(spend_cap_usd=0.001), "spend_cap_usd"),
    ("spend-period-unknown", key_body(spend_cap_period="year"), "spend_cap_period"),
    ("spend-period-number", key_body(spend_cap_period=30), "spend_cap_period"),
    ("spend-period-true", key_body(spend_cap_period=True), "spend_cap_period"),
    ("spend-period-list", key_body(spend_cap_period=["day"]), "spend_cap_period"),
    ("can-manage-no", key_body(can_manage="no"), "can_manage"),
    ("can-manage-off", key_body(can_manage="off"), "can_manage"),
    ("can-manage-false-string", key_body(can_manage="false"), "can_manage"),
    ("can-manage-yes", key_body(can_manage="yes"), "can_manage"),
    ("can-manage-empty-object", key_body(can_manage={}), "can_manage"),
    ("can-manage-empty-list", key_body(can_manage=[]), "can_manage"),
    ("can-manage-one", key_body(can_manage=1), "can_manage"),
    ("can-manage-zero", key_body(can_manage=0), "can_manage"),
]

# (id, method, path, expected status, expected code or None)
BAD_REQUESTS: list[tuple[str, str, str, int, str | None]] = [
    ("key-id-letters", "delete", f"{KEYS}/abc", 404, "unknown_endpoint"),
    ("key-id-negative", "delete", f"{KEYS}/-1", 404, "unknown_endpoint"),
    ("key-id-fraction", "delete", f"{KEYS}/1.5", 404, "unknown_endpoint"),
    ("key-id-empty", "delete", f"{KEYS}/", 404, "unknown_endpoint"),
    ("key-id-trailing-slash", "delete", f"{KEYS}/1/", 404, "unknown_endpoint"),
    ("key-id-beyond-int64", "delete", f"{KEYS}/99999999999999999999", 404, None),
    ("key-id-just-beyond-int64", "delete", f"{KEYS}/9223372036854775808", 404, None),
    ("key-id-nul", "delete", f"{KEYS}/1%00", 404, "unknown_endpoint"),
    ("key-id-newline", "delete", f"{KEYS}/1%0a2", 404, "unknown_endpoint"),
    ("key-id-zero", "delete", f"{KEYS}/0", 404, "key_not_found"),
    ("unknown-path", "get", "/api/v1/nope", 404, "unknown_endpoint"),
    ("api-root", "get", "/api/v1/", 404, "unknown_endpoint"),
    ("me-trailing-slash", "get", "/api/v1/me/", 404, "unknown_endpoint"),
    ("keys-trailing-slash", "get", f"{KEYS}/", 404, "unknown_endpoint"),
    ("post-me", "post", "/api/v1/me", 405, "method_not_allowed"),
    ("put-me", "put", "/api/v1/me", 405, "method_not_allowed"),
    ("delete-me", "delete", "/api/v1/me", 405, "method_not_allowed"),
    ("put-keys", "put", KEYS, 405, "method_not_allowed"),
    ("patch-keys", "patch", KEYS, 405, "method_not_allowed"),
    ("delete-keys", "delete", KEYS, 405, "method_not_allowed"),
    ("get-a-key", "get", f"{KEYS}/1", 405, "method_not_allowed"),
    ("post-a-key", "post", f"{KEYS}/1", 405, "method_not_allowed"),
    ("put-a-key", "put", f"{KEYS}/1", 405, "method_not_allowed"),
]

BAD_AUTHORIZATIONS = [
    pytest.param({}, id="missing"),
    pytest.param({"Authorization": ""}, id="empty"),
    pytest.param({"Authorization": "Bearer"}, id="bearer-only"),
    pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic"),
    pytest.param({"Authorization": "Bearer sk-sb-" + "0" * 55}, id="unknown-key"),
    pytest.param({"Authorization": "Bearer sk-sb-\u00e9\u00e9"}, id="non-ascii-key"),
]


@pytest.fixture(scope="module")
def world(django_db_setup: None, django_db_blocker: Any) -> Iterator[dict[str, Any]]:
    """An owner with a management key and a plain key, committed once; one flush after."""
    with django_db_blocker.unblock():
        call_command("synccatalog", "--demo-only", verbosity=0)
        owner = User.objects.create_user("api-bad-inputs@example.com", "pw-123-secret")
        _, manager = ApiKey.objects.mint(user=owner, name="ops", can_manage=True)
        _, plain = ApiKey.objects.mint(user=owner, name="plain")
        yield {"owner": owner, "manager": manager, "plain": plain}
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
def manager(world: dict[str, Any]) -> Iterator[str]:
    """The management key's secret; afterwards no key was minted and no money moved."""
    assert User.objects.filter(pk=world["owner"].pk).exists(), "world was flushed"
    keys, books = ApiKey.objects.count(), money_snapshot()
    yield world["manager"]
    assert ApiKey.objects.count() == keys
    assert money_snapshot() == books


def assert_json_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    payload = orjson.loads(response.content)
    assert set(payload) == {"error"}
    error = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"].strip()
    if code is not None:
        assert error["code"] == code
    return error


@pytest.mark.parametrize(
    ("payload", "param"), [pytest.param(b, p, id=name) for name, b, p in BAD_KEY_BODIES]
)
def test_it_refuses_a_bad_key_request_with_a_400(
    client: Client, manager: str, payload: Any, param: str | None
) -> None:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    response = client.post(
        KEYS, raw, content_type="application/json", headers={"Authorization": f"Bearer {manager}"}
    )
    error = assert_json_error(response, 400)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
        assert param in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [pytest.param(m, p, s, c, id=name) for name, m, p, s, c in BAD_REQUESTS],
)
def test_every_path_and_method_answers_a_json_error(
    client: Client, manager: str, method: str, path: str, status: int, code: str | None
) -> None:
    response = getattr(client, method)(path, headers={"Authorization": f"Bearer {manager}"})
    assert_json_error(response, status, code)
    if status == 405:
        assert response["Allow"]


@pytest.mark.parametrize("headers", BAD_AUTHORIZATIONS)
@pytest.mark.parametrize(("method", "path"), [("get", "/api/v1/me"), ("post", KEYS)])
def test_it_refuses_a_missing_or_unknown_key(
    client: Client, manager: str, headers: dict[str, str], method: str, path: str
) -> None:
    response = getattr(client, method)(path, headers=headers)
    assert_json_error(response, 401, "invalid_api_key")


def test_a_key_without_the_management_scope_gets_a_json_403(
    client: Client, manager: str, world: dict[str, Any]
) -> None:
    response = client.post(
        KEYS,
        orjson.dumps(key_body()),
        content_type="application/json",
        headers={"Authorization": f"Bearer {world['plain']}"},
    )
    assert_json_error(response, 403, "insufficient_scope")


def test_a_valid_request_with_every_field_still_mints_its_key(
    client: Client, world: dict[str, Any]
) -> None:
    body = key_body(
        expires_on="2099-12-31",
        allowed_models=["demo"],
        rpm_limit=2**31 - 1,
        tpm_limit=1,
        spend_cap_usd=12.5,
        spend_cap_period="week",
        can_manage=False,
    )
    response = client.post(
        KEYS,
        orjson.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {world['manager']}"},
    )
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["expires_at"].startswith("2100-01-01T00:00:00")
    assert (data["rpm_limit"], data["tpm_limit"]) == (2**31 - 1, 1)
    assert data["spend_cap_micro_usd"] == 12_500_000
    assert data["can_manage"] is False


@pytest.mark.parametrize("value", [True, False])
def test_can_manage_takes_a_json_boolean(
    client: Client, world: dict[str, Any], value: bool
) -> None:
    response = client.post(
        KEYS,
        orjson.dumps(key_body(can_manage=value)),
        content_type="application/json",
        headers={"Authorization": f"Bearer {world['manager']}"},
    )
    assert response.status_code == 201
    assert response.json()["can_manage"] is value
