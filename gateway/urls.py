from __future__ import annotations

from django.urls import path, re_path

from gateway import account_api, estimate, platform_api, pricing, views
from gateway.documents import api as documents
from gateway.doors import messages, responses

urlpatterns = [
    path("chat/completions", views.chat_completions, name="v1-chat-completions"),
    path("messages", messages.messages, name="v1-messages"),
    path("messages/count_tokens", messages.count_tokens, name="v1-messages-count-tokens"),
    path("responses", responses.create_response, name="v1-responses"),
    path("responses/<path:rest>", responses.stored_response, name="v1-stored-response"),
    path("models", views.models, name="v1-models"),
    path("models/<path:model_id>", views.model_detail, name="v1-model"),
    path("catalog", views.catalog, name="v1-catalog"),
    path("generation/<str:request_id>", views.generation, name="v1-generation"),
    path("estimate", estimate.estimate, name="v1-estimate"),
    # The account API for programs and partner platforms (gateway/platform_api.py).
    path("auth/signup", platform_api.signup, name="v1-auth-signup"),
    path("auth/login", platform_api.login, name="v1-auth-login"),
    path("account", platform_api.account, name="v1-account"),
    path("billing/balance", platform_api.balance, name="v1-billing-balance"),
    path("billing/unlimited", platform_api.unlimited, name="v1-billing-unlimited"),
    path("billing/checkout", platform_api.checkout, name="v1-billing-checkout"),
    path("documents", documents.documents, name="v1-documents"),
    path("documents/search", documents.search, name="v1-documents-search"),
    path("documents/<id:document_id>", documents.document, name="v1-document"),
    # Branding: prices per key, and the public offer (packages, bonuses, credit unit).
    path("pricing", pricing.pricing, name="v1-pricing"),
    path("pricing/public", pricing.public_pricing, name="v1-pricing-public"),
    # Anything else, newlines (%0a) included: `.` would stop at one and fall to Django's HTML 404.
    re_path(r"^[\s\S]*$", views.unknown_endpoint, name="v1-unknown"),
]

# The account API for programs, mounted at /api/v1/ by console/urls.py ("api" namespace).
account_api_urlpatterns = [
    path("me", account_api.me, name="me"),
    path("keys", account_api.keys, name="keys"),
    path("keys/<id:key_id>", account_api.key_detail, name="key"),
    re_path(r"^[\s\S]*$", account_api.unknown_endpoint, name="unknown"),
]
