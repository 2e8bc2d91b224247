"""Response headers for the console (the /v1 API sets its own in gateway.views)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Adds settings.CONTENT_SECURITY_POLICY to every page that has not set its own."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        # DEBUG's technical 404 and 500 pages are built on inline script and style.
        if settings.DEBUG and response.status_code in {404, 500}:
            return response
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response
