"""The URL conf of the lean handler (console.lean_handler): /v1, the probes and the
metrics first, then the whole site's URL conf (console.urls), imported only when a
request needs it.

Resolving /v1 never reaches that last entry (gateway.urls answers every /v1 path, its
unknown ones included), so a worker that serves only the API never imports the
console's sign-in, chat and account views (allauth's providers and passkeys, the
Markdown renderer: about 15 MB a worker, BENCHMARKS.md). Reversing a console URL from
the API (the confirmation link the sign-up API mails, the checkout's return URLs)
imports it then, and finds every name console.urls has.
"""

from __future__ import annotations

from django.urls import URLResolver, include, path
from django.urls.resolvers import RegexPattern

from console import views
from gateway.metrics import metrics_view

handler500 = "console.views.server_error"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("v1/", include("gateway.urls")),
    # A URLResolver given the module's name imports it on first use (include() would
    # import it now).
    URLResolver(RegexPattern(r"^"), "console.urls"),
]
