"""A URLconf with one failing view, for the 500 page's test."""

from __future__ import annotations

from django.urls import path

from console import views
from console.urls import handler500, urlpatterns

__all__ = ["handler500", "urlpatterns"]

urlpatterns = [*urlpatterns, path("broken/", lambda request: views.pricing(request))]
