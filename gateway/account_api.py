"""The account API for programs: profile, balance and key management.

Callers authenticate with an API key that has the management scope (`can_manage`);
answers and errors use the same JSON shapes as /v1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from accounts.forms import ApiKeyForm
from accounts.models import ApiKey, ExceedsCreator, User
from billing.ledger import account_for
from billing.money import format_usd
from gateway.auth import KeyInfo, authenticate
from gateway.catalog import model_choices
from gateway.errors import GatewayError
from gateway.ratelimit import client_address

View = Callable[..., HttpResponse]

# The request's names for ApiKey fields where they differ, and back.
FIELDS = {"expires_on": "expires_at", "spend_cap_usd": "spend_cap_micro_usd"}
PARAMS = {field: param for param, field in FIELDS.items()}


class ApiRequest(HttpRequest):
    api_key: KeyInfo
    owner: User


def management_key_required(view: View) -> View:
    """Authenticate `Authorization: Bearer sk-sb-…`, require the management scope and
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


def parse_json_object(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError as exc:
        raise GatewayError(400, f"The body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise GatewayError(400, "The body must be a JSON object.")
    return body


@require_GET
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
                "display": format_usd(account.balance_micro_usd),
            },
        }
    )


@require_http_methods(["GET", "POST"])
@management_key_required
def keys(request: ApiRequest) -> JsonResponse | HttpResponse:
    if request.method == "GET":
        data = [
            key_as_dict(key)
            for key in ApiKey.objects.for_user(request.owner).filter(kind=ApiKey.Kind.API)
        ]
        return JsonResponse({"object": "list", "data": data})
    try:
        body = parse_json_object(request)
    except GatewayError as error:
        return error.response()
    form = ApiKeyForm(body, models=model_choices())
    if not form.is_valid():
        param, errors = next(iter(form.errors.items()))
        return GatewayError(
            400, f"{param}: {' '.join(str(e) for e in errors)}", param=param
        ).response()
    try:
        fields = request.api_key.key.bound_minted(
            form.key_fields(), given={FIELDS.get(param, param) for param in body}
        )
    except ExceedsCreator as exceeded:
        param = PARAMS.get(exceeded.field, exceeded.field)
        return GatewayError(
            403, f"{param}: {exceeded.message}", param=param, code="key_exceeds_creator"
        ).response()
    key, secret = ApiKey.objects.mint(user=request.owner, **fields)
    return JsonResponse({**key_as_dict(key), "key": secret}, status=201)


@require_http_methods(["DELETE"])
@management_key_required
def key_detail(request: ApiRequest, key_id: int) -> JsonResponse | HttpResponse:
    key = ApiKey.objects.for_user(request.owner).filter(kind=ApiKey.Kind.API, pk=key_id).first()
    if key is None:
        return GatewayError(404, f"No key with id {key_id}.", code="key_not_found").response()
    key.revoke()
    return JsonResponse(key_as_dict(key))
