"""GET /healthz (the process answers) and GET /readyz (database and cache answer)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import AsyncClient


async def test_healthz_answers_without_touching_anything():
    response = await AsyncClient().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
async def test_readyz_reports_the_database_and_cache():
    response = await AsyncClient().get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "cache": "ok"}


@pytest.mark.django_db(transaction=True)
async def test_readyz_is_unavailable_when_the_cache_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("cache is down")

    monkeypatch.setattr(cache, "set", broken)

    response = await AsyncClient().get("/readyz")

    assert response.status_code == 503
    assert response.json()["cache"] == "error: ConnectionError"
