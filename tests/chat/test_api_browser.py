"""A page of the site calling the chat API with fetch(), as a same-site front end does:
the session cookie authenticates, the csrftoken cookie's value goes in X-CSRFToken."""

from __future__ import annotations

import orjson
import pytest

from accounts.models import ApiKey
from billing.models import UsageRecord
from tests.chat.test_browser import signed_in_page
from tests.gateway.test_chat_completions_sdk import wait_for_record

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STREAM = """async (csrf) => {
  const headers = {"Content-Type": "application/json"};
  if (csrf) {
    headers["X-CSRFToken"] = document.cookie.match(/csrftoken=([^;]+)/)[1];
  }
  const response = await fetch("/chat/stream", {
    method: "POST",
    headers,
    body: JSON.stringify({messages: [{role: "user", content: "Hello"}]}),
  });
  return {status: response.status, text: await response.text()};
}"""


def test_a_signed_in_page_streams_from_the_chat_api_with_its_csrf_token(
    browser, localhost_url, customer, fast_demo, settings
):
    settings.CHAT_API_DEFAULT_MODEL = "demo"
    page = signed_in_page(browser, customer.user, localhost_url, 1280, 800)
    page.goto(f"{localhost_url}/chat/")

    refused = page.evaluate(STREAM, False)
    answered = page.evaluate(STREAM, True)

    assert refused["status"] == 403
    assert "X-CSRFToken" in orjson.loads(refused["text"])["error"]
    assert answered["status"] == 200
    events = [line[6:] for line in answered["text"].splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    summary = orjson.loads(events[-2])
    assert summary["cost"]["microUsd"] > 0
    record = wait_for_record(summary["requestId"])
    assert UsageRecord.objects.filter(account=customer.account).count() == 1
    assert record.api_key.kind == ApiKey.Kind.WEB
    assert record.cost_micro_usd == summary["cost"]["microUsd"]
