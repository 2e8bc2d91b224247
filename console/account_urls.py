from __future__ import annotations

from django.urls import path

from console import account_views as views

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
]
