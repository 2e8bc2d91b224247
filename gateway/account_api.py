"""The account API for programs: profile, balance and key management.

Callers authenticate with an API key that has the management scope (`can_manage`);
answers and errors use the same JSON shapes as /v1, on every path and method under
/api/v1/ (never an HTML page or an empty body).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import date
from functools import wraps
from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.forms import ApiKeyForm
from accounts.models import ApiKey, ExceedsCreator, User
from billing.ledger import account_for
from billing.money import credit_unit_json, format_money, unit_amount
from gateway import outages
from gateway.auth import KeyInfo, authenticate
from gateway.catalog import model_choices
from gateway.errors import GatewayError, invalid, method_not_allowed
from gateway.ratelimit import client_address
from gateway.validation import parse_json

log = logging.getLogger(__name__)

View = Callable[..., HttpResponse]

# The request's names for ApiKey fields where they differ, and back.
FIELDS = {"expires_on": "expires_at", "spend_cap_usd": "spend_cap_micro_usd"}
PARAMS = {field: param for param, field in FIELDS.items()}


class ApiRequest(HttpRequest):
    api_key: KeyInfo
    owner: User


def api_methods(*methods: str) -> Callable[[View], View]:
    """Allow `methods` (else a JSON 405 with Allow) and answer every failure as the JSON
    error object: a GatewayError as itself, an outage as its 503, anything else as a
    logged 500."""

    def decorator(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise method_not_allowed(request.method, methods)
                return view(request, *args, **kwargs)
            except GatewayError as error:
                return error.response()
            except Exception as exc:
                if kind := outages.kind_of(exc):
                    outages.note(kind, exc)
                    return outages.unavailable(kind).response()
                log.exception("unhandled error in the account API")
                return GatewayError(
                    500, "The account API failed to handle this request.", code="internal_error"
                ).response()

        return wrapper

    return decorator


def management_key_required(view: View) -> View:
    """Authenticate `Authorization: Bearer <key>`, require the management scope and
    attach the key (`request.api_key`) and its owner (`request.owner`) to the request."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: ApiRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            key = async_to_sync(authenticate)(
                request.headers.get("Authorization"), client=client_address(request)
            )
        except GatewayError as error:
            return error.response()
        if not key.can_manage:
            return GatewayError(
                403,
                "This key may not manage the account: create one with the management scope.",
                code="insufficient_scope",
            ).response()
        request.api_key = key
        request.owner = User.objects.get(pk=key.user_id)
        return view(request, *args, **kwargs)

    return wrapper


def key_as_dict(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.pk,
        "object": "api_key",
        "name": key.name,
        "masked": key.masked,
        "kind": key.kind,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "allowed_models": key.allowed_models,
        "rpm_limit": key.rpm_limit,
        "tpm_limit": key.tpm_limit,
        "spend_cap_micro_usd": key.spend_cap_micro_usd,
        "spend_cap_period": key.spend_cap_period,
        "can_manage": key.can_manage,
    }


KEY_FIELDS = (
    "name",
    "expires_on",
    "allowed_models",
    "rpm_limit",
    "tpm_limit",
    "spend_cap_usd",
    "spend_cap_period",
    "can_manage",
)
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# What each field of a key request must be in JSON, before the form checks its range.
# A form coerces ("no" is a true boolean, "10" an integer); JSON clients get no such
# guesses, so a mistyped value is a 400 rather than a key with powers nobody meant.
JSON_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (lambda v: isinstance(v, str), "a string"),
    "expires_on": (
        lambda v: isinstance(v, str) and ISO_DATE.fullmatch(v) is not None,
        "an ISO 8601 date (YYYY-MM-DD) or null",
    ),
    "allowed_models": (
        lambda v: isinstance(v, list) and all(isinstance(m, str) for m in v),
        "an array of model ids",
    ),
    "rpm_limit": (_is_int, "an integer or null"),
    "tpm_limit": (_is_int, "an integer or null"),
    "spend_cap_usd": (
        lambda v: isinstance(v, int | float | str) and not isinstance(v, bool),
        "a number of US dollars or null",
    ),
    "spend_cap_period": (lambda v: isinstance(v, str), "a string"),
    "can_manage": (lambda v: isinstance(v, bool), "true or false"),
}


def key_request_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The `ApiKey.objects.mint` fields that a `POST /api/v1/keys` body asks for.

    Raises a 400 GatewayError naming the first field that is unknown, of the wrong JSON
    type, or refused by ApiKeyForm (the same rules as the Keys page).
    """
    unknown = sorted(set(body) - set(KEY_FIELDS))
    if unknown:
        raise invalid(
            f"{unknown[0]}: unknown field; a key takes {', '.join(KEY_FIELDS)}.", unknown[0]
        )
    data = dict(body)
    for name, (accepts, expected) in JSON_TYPES.items():
        value = body.get(name)
        if value is not None and not accepts(value):
            raise invalid(f"{name}: must be {expected}.", name)
    if body.get("expires_on") is not None:
        try:
            data["expires_on"] = date.fromisoformat(body["expires_on"])
        except ValueError:
            raise invalid("expires_on: not a date on the calendar.", "expires_on") from None
    form = ApiKeyForm(data, models=model_choices())
    if not form.is_valid():
        param, errors = next(iter(form.errors.items()))
        raise invalid(f"{param}: {' '.join(str(e) for e in errors)}", param)
    return form.key_fields()


@api_methods("GET")
@management_key_required
def me(request: ApiRequest) -> JsonResponse:
    user = request.owner
    account = account_for(user)
    return JsonResponse(
        {
            "object": "account",
            "id": user.pk,
            "email": user.email,
            "name": user.name,
            "date_joined": user.date_joined.isoformat(),
            "balance": {
                "micro_usd": account.balance_micro_usd,
                "available_micro_usd": account.available_micro_usd,
                "display": format_money(account.balance_micro_usd),
                "units": unit_amount(account.balance_micro_usd),
                "available_units": unit_amount(account.available_micro_usd),
            },
            "credit_unit": credit_unit_json(),
        }
    )


@api_methods("GET", "POST")
@management_key_required
def keys(request: ApiRequest) -> JsonResponse | HttpResponse:
    if request.method == "GET":
        data = [key_as_dict(key) for key in ApiKey.objects.for_user(request.owner).listed()]
        return JsonResponse({"object": "list", "data": data})
    body = parse_json(request.body)
    try:
        fields = request.api_key.key.bound_minted(
            key_request_fields(body), given={FIELDS.get(param, param) for param in body}
        )
    except ExceedsCreator as exceeded:
        param = PARAMS.get(exceeded.field, exceeded.field)
        return GatewayError(
            403, f"{param}: {exceeded.message}", param=param, code="key_exceeds_creator"
        ).response()
    key, secret = ApiKey.objects.mint(user=request.owner, **fields)
    return JsonResponse({**key_as_dict(key), "key": secret}, status=201)


@api_methods("DELETE")
@management_key_required
def key_detail(request: ApiRequest, key_id: int) -> JsonResponse | HttpResponse:
    key = ApiKey.objects.for_user(request.owner).listed().filter(pk=key_id).first()
    if key is None:
        return GatewayError(404, f"No key with id {key_id}.", code="key_not_found").response()
    key.revoke()
    return JsonResponse(key_as_dict(key))


@api_methods("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
def unknown_endpoint(request: HttpRequest) -> HttpResponse:
    """Any other path under /api/v1/: a JSON 404 that says what exists."""
    raise GatewayError(
        404,
        f"Unknown endpoint {request.method} {request.path}. The account API serves "
        "/api/v1/me, /api/v1/keys and /api/v1/keys/<id>.",
        code="unknown_endpoint",
    )
