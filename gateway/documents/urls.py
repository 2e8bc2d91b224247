from __future__ import annotations

from django.urls import path

from gateway.documents import views

app_name = "documents"
urlpatterns = [
    path("", views.library, name="library"),
    path("upload/", views.upload, name="upload"),
    path("<id:document_id>/delete/", views.delete, name="delete"),
]
