from __future__ import annotations

from django.urls import path

from console import account_views as views
from console import persona_views

# The account pages read the balance (billing) and the catalog (gateway), so they live
# in the project package; their URL names keep the "accounts" namespace.
app_name = "accounts"
urlpatterns = [
    path("", views.profile, name="profile"),
    path("keys/", views.keys, name="keys"),
    path("keys/new/", views.key_create, name="key_create"),
    path("keys/<id:key_id>/edit/", views.key_edit, name="key_edit"),
    path("keys/<id:key_id>/created/", views.key_created, name="key_created"),
    path("keys/<id:key_id>/revoke/", views.key_revoke, name="key_revoke"),
    path("time-zone/", views.time_zone, name="time_zone"),
    path("delete/", views.close_account, name="close"),
    path("personas/", persona_views.personas, name="personas"),
    path("personas/new/", persona_views.persona_create, name="persona_create"),
    path("personas/<id:persona_id>/edit/", persona_views.persona_edit, name="persona_edit"),
    path("personas/<id:persona_id>/delete/", persona_views.persona_delete, name="persona_delete"),
    path("personas/<id:persona_id>/memory/", persona_views.persona_memory, name="persona_memory"),
    path(
        "personas/<id:persona_id>/memory/erase/",
        persona_views.persona_memory_erase,
        name="persona_memory_erase",
    ),
]
