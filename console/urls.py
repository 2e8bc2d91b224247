from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path

from accounts.views import confirm_email_link
from console import views
from gateway.metrics import metrics_view
from gateway.urls import account_api_urlpatterns

handler500 = "console.views.server_error"

urlpatterns = [
    path("", views.home, name="home"),
    path("pricing/", views.pricing, name="pricing"),
    # Model ids may hold "/" and ":" (meta-llama/llama-4-…, ft:gpt-4o).
    path("models/<path:model_id>", views.model_page, name="model"),
    path("docs/", views.docs_index, name="docs"),
    path("docs/quickstart/", views.quickstart, name="quickstart"),
    path("docs/clients/", views.docs_clients, name="docs-clients"),
    path("docs/api/", views.docs_api, name="docs-api"),
    path("docs/search/", views.docs_search, name="docs-search"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("v1/", include("gateway.urls")),
    # allauth's confirmation link, which it leaves out while it verifies by code: the
    # sign-up API (gateway/platform_api.py) has no browser session to hold a code in.
    re_path(
        r"^accounts/confirm-email/(?P<key>[-:\w]+)/$",
        confirm_email_link,
        name="account_confirm_email",
    ),
    path("accounts/", include("allauth.urls")),
    path("account/", include("console.account_urls")),
    path("api/v1/", include((account_api_urlpatterns, "api"))),
    path("billing/", include("billing.urls")),
    path("chat/", include("chat.urls")),
    path("documents/", include("gateway.documents.urls")),
    path("admin/", admin.site.urls),
]
