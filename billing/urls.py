from __future__ import annotations

from django.urls import path

from billing import views

app_name = "billing"
urlpatterns = [
    path("", views.index, name="index"),
    path("balance/", views.balance, name="balance"),
    path("checkout/", views.checkout, name="checkout"),
    path("checkout/success/", views.checkout_success, name="checkout_success"),
    path("checkout/status/", views.purchase_status, name="purchase_status"),
    path("redeem/", views.redeem, name="redeem"),
    path("unlimited/", views.unlimited, name="unlimited"),
    path("stripe/webhook", views.stripe_webhook, name="stripe_webhook"),
    path("usage/", views.usage, name="usage"),
    path("usage.csv", views.usage_csv, name="usage_csv"),
    path("usage/settings/", views.usage_settings, name="usage_settings"),
    path("usage/content/erase/", views.content_erase_all, name="content_erase_all"),
    path("usage/<str:request_id>/", views.usage_detail, name="usage_detail"),
    path("usage/<str:request_id>/erase/", views.content_erase, name="content_erase"),
]
