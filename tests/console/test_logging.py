"""The log keeps one line per message: values from a request cannot forge lines.

The test writes through the handler settings.LOGGING configures (its stream swapped for
a buffer), so it checks what an operator's log would hold.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import AsyncClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def lines_of(output: io.StringIO, marker: str) -> list[str]:
    return [line for line in output.getvalue().splitlines() if marker in line]


@pytest.mark.django_db(transaction=True)
async def test_a_newline_in_a_request_path_cannot_forge_a_log_line(
    log_output: io.StringIO, monkeypatch: pytest.MonkeyPatch, customer: Any
) -> None:
    from gateway import views

    async def broken_lookup(request_id: str, user_id: int) -> Any:
        raise RuntimeError("the database is unreachable")

    monkeypatch.setattr(views, "_generation_async", broken_lookup)
    forged = "2026-01-01 00:00:00,000 INFO billing credited 1000000"
    response = await AsyncClient().get(
        "/v1/generation/req_1%0a" + forged.replace(" ", "%20") + "%0d%00x",
        headers={"Authorization": f"Bearer {customer.secret}"},
    )

    assert response.status_code == 500
    (line,) = lines_of(log_output, "unhandled error in")
    assert "/v1/generation/req_1\\n2026-01-01" in line and "\\r\\x00x" in line
    assert not [line for line in log_output.getvalue().splitlines() if line.startswith(forged)]


def test_control_characters_in_a_message_are_escaped(log_output: io.StringIO) -> None:
    logging.getLogger("switchboard.test").warning("path %s end", "/v1/a\nb\r\x00\x1b[31m\u2028c")

    (line,) = lines_of(log_output, "switchboard.test")
    assert line.endswith("path /v1/a\\nb\\r\\x00\\x1b[31m\\u2028c end")


def test_a_traceback_still_follows_on_its_own_lines(log_output: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("switchboard.test").exception("failed for %s", "a\nb")

    output = log_output.getvalue()
    assert "failed for a\\nb\nTraceback (most recent call last):\n" in output
    assert output.rstrip().endswith("ValueError: boom")
