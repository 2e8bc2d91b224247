"""The OpenAI error object, raised anywhere in the engine and rendered by the views."""

from __future__ import annotations

import orjson
from django.http import HttpResponse

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
}


class GatewayError(Exception):
    """An error answered to the client as `{"error": {message, type, param, code}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or TYPES.get(status, "invalid_request_error")
        self.headers = headers or {}

    def as_dict(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self, headers: dict[str, str] | None = None) -> HttpResponse:
        response = HttpResponse(
            orjson.dumps(self.as_dict()), status=self.status, content_type="application/json"
        )
        for name, value in {**(headers or {}), **self.headers}.items():
            response[name] = value
        return response


def openai_error(exc: GatewayError, headers: dict[str, str]) -> HttpResponse:
    """The OpenAI error object: how every /v1 door but the Anthropic one renders errors."""
    return exc.response(headers)


def invalid(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def internal_error(request_id: str) -> GatewayError:
    """The 500 for a failure nothing else explains, with the request id to report."""
    return GatewayError(
        500,
        f"The gateway failed to handle this request (request id {request_id}).",
        code="internal_error",
    )


def method_not_allowed(method: str | None, methods: tuple[str, ...]) -> GatewayError:
    """405 with the `Allow` header, for a JSON API called with the wrong method."""
    allowed = ", ".join(methods)
    return GatewayError(
        405,
        f"Method {method} is not allowed here; use {allowed}.",
        code="method_not_allowed",
        headers={"Allow": allowed},
    )
