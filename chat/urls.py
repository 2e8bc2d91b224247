from __future__ import annotations

from django.urls import path

from chat import api, views

app_name = "chat"
urlpatterns = [
    path("", views.index, name="index"),
    path("list/", views.conversation_list, name="list"),
    path("new/", views.create, name="create"),
    # The chat API for front ends (chat/api.py): JSON and server-sent events.
    path("stream", api.stream, name="api-stream"),
    path("models", api.models, name="api-models"),
    path("<id:conversation_id>/", views.conversation, name="conversation"),
    path("<id:conversation_id>/settings/", views.update_settings, name="settings"),
    path("<id:conversation_id>/rename/", views.rename, name="rename"),
    path("<id:conversation_id>/delete/", views.delete, name="delete"),
    path("request/<str:request_id>/", views.for_request, name="for_request"),
]
