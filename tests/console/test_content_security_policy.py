"""Console pages carry a Content-Security-Policy that allows no inline script or style.

htmx and each page's own scripts come from static/, so the policy can refuse every
inline script, inline style and `on…=` handler: an injected one does not run. The
template scan below keeps it that way; the browser tests watch the console for
violations (tests/conftest.py's `browser`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts.models import User

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
PUBLIC_PAGES = ["/", "/pricing/", "/docs/quickstart/", "/accounts/login/", "/accounts/signup/"]
SIGNED_IN_PAGES = ["/account/", "/account/keys/", "/billing/", "/billing/usage/", "/chat/"]


def directives(response: Any) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    parsed = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        parsed[name] = values
    return parsed


def assert_strict(response: Any) -> None:
    policy = directives(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    every_value = [value for values in policy.values() for value in values]
    assert "'unsafe-inline'" not in every_value
    assert "'unsafe-eval'" not in every_value


@pytest.mark.parametrize("path", PUBLIC_PAGES)
def test_public_pages_carry_the_policy(client: Client, demo_catalog: None, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert_strict(response)


@pytest.mark.parametrize("path", SIGNED_IN_PAGES)
def test_signed_in_pages_carry_the_policy(client: Client, demo_catalog: None, path: str) -> None:
    client.force_login(User.objects.create_user("csp@example.com", "pw-123-secret"))
    response = client.get(path)
    assert response.status_code == 200
    assert_strict(response)


def test_error_pages_and_the_admin_carry_it_too(client: Client) -> None:
    assert_strict(client.get("/no-such-page/"))
    assert_strict(client.get("/admin/login/"))


def test_htmx_is_told_not_to_inject_its_own_style_or_eval(client: Client) -> None:
    page = client.get("/").content.decode()
    assert '"includeIndicatorStyles": false' in page
    assert '"allowEval": false' in page


def test_no_template_has_an_inline_script_style_or_handler() -> None:
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I)
    offences = []
    for template in sorted(TEMPLATES.rglob("*.html")):
        text = template.read_text()
        for pattern in (inline_script, re.compile(r"<style", re.I), re.compile(r"\sstyle=")):
            offences += [f"{template}: {m.group(0)}" for m in pattern.finditer(text)]
        offences += [
            f"{template}: {m.group(0)}"
            for m in re.finditer(r"\son[a-z]+\s*=|hx-on|javascript:", text, re.I)
        ]
    assert offences == []
