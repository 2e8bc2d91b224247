from __future__ import annotations

from django.urls import path, re_path

from gateway import account_api, estimate, views
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
    path("documents", documents.documents, name="v1-documents"),
    path("documents/search", documents.search, name="v1-documents-search"),
    path("documents/<id:document_id>", documents.document, name="v1-document"),
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
