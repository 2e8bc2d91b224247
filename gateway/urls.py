from __future__ import annotations

from django.urls import path

from gateway import estimate, views

urlpatterns = [
    path("chat/completions", views.chat_completions, name="v1-chat-completions"),
    path("models", views.models, name="v1-models"),
    path("models/<path:model_id>", views.model_detail, name="v1-model"),
    path("catalog", views.catalog, name="v1-catalog"),
    path("generation/<str:request_id>", views.generation, name="v1-generation"),
    path("estimate", estimate.estimate, name="v1-estimate"),
]
