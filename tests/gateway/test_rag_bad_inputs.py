"""The `rag` extension field of /v1/chat/completions: a bad value is a 400 naming it,
before any credit is held or any upstream is called."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.test import Client

from billing.models import Hold, LedgerEntry, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

BAD_RAG: list[tuple[str, Any, str]] = [
    ("true", True, "rag"),
    ("string", "yes", "rag"),
    ("null", None, "rag"),
    ("list", [{"enabled": True}], "rag"),
    ("enabled-string", {"enabled": "yes"}, "rag.enabled"),
    ("enabled-number", {"enabled": 1}, "rag.enabled"),
    ("top-k-zero", {"top_k": 0}, "rag.top_k"),
    ("top-k-negative", {"top_k": -3}, "rag.top_k"),
    ("top-k-too-many", {"top_k": 21}, "rag.top_k"),
    ("top-k-float", {"top_k": 2.5}, "rag.top_k"),
    ("top-k-bool", {"top_k": True}, "rag.top_k"),
    ("top-k-string", {"top_k": "4"}, "rag.top_k"),
    ("top-k-huge", {"top_k": 2**62}, "rag.top_k"),
    ("unknown-field", {"enabled": True, "documents": [1]}, "rag.documents"),
]


@pytest.mark.parametrize(("value", "param"), [b[1:] for b in BAD_RAG], ids=[b[0] for b in BAD_RAG])
def test_a_bad_rag_value_is_a_400_that_touches_no_money(customer, demo_catalog, value, param):
    body = {"model": "demo", "messages": [{"role": "user", "content": "Hi"}], "rag": value}

    response = Client().post(
        "/v1/chat/completions",
        orjson.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {customer.secret}"},
    )

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert "rag" in error["message"]
    assert not Hold.objects.exists() and not UsageRecord.objects.exists()
    assert not LedgerEntry.objects.filter(idempotency_key__startswith="usage:").exists()


@pytest.mark.parametrize(
    "messages",
    [[], [{"role": "assistant", "content": "no question"}], "not a list", [{"role": "user"}]],
    ids=["empty", "no-user-message", "not-a-list", "no-content"],
)
def test_rag_on_a_body_without_a_question_is_refused_as_it_would_be_without_rag(
    customer, demo_catalog, messages
):
    def post(extra: dict[str, Any]) -> Any:
        return Client().post(
            "/v1/chat/completions",
            orjson.dumps({"model": "demo", "messages": messages, **extra}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {customer.secret}"},
        )

    with_rag, without = post({"rag": {"enabled": True}}), post({})

    assert with_rag.status_code == without.status_code
    if without.status_code == 400:
        assert with_rag.json()["error"]["param"] == without.json()["error"]["param"]
