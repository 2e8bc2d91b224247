"""The docs pages: the quickstart, the client guides and the API reference."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import URLPattern, URLResolver, reverse

from chat.urls import urlpatterns as chat_urlpatterns
from gateway.urls import account_api_urlpatterns, urlpatterns

pytestmark = pytest.mark.django_db

DOCS = ["docs", "quickstart", "docs-clients", "docs-api"]
BASE_URL = "https://gw.example.com"


@pytest.fixture(autouse=True)
def site_url(settings) -> None:
    settings.SITE_URL = BASE_URL


def page(client, name: str) -> str:
    response = client.get(reverse(name))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def code_blocks(text: str) -> dict[str, str]:
    return dict(re.findall(r'<pre[^>]*><code id="([^"]+)">(.*?)</code></pre>', text, flags=re.S))


def documented_endpoints() -> list[tuple[str, str]]:
    """(anchor, literal path prefix) of every endpoint the URLconf serves, the catch-alls
    that answer 404 `unknown_endpoint` aside."""
    found = []
    for prefix, anchor, patterns in [
        ("/v1/", "", urlpatterns),
        ("/api/v1/", "api-", account_api_urlpatterns),
        # The chat app's API routes (its pages are not API endpoints).
        ("/chat/", "chat-", [p for p in chat_urlpatterns if (p.name or "").startswith("api-")]),
    ]:
        for pattern in patterns:
            assert isinstance(pattern, URLPattern) and not isinstance(pattern, URLResolver)
            if pattern.name is None or pattern.name.endswith("unknown"):
                continue
            literal = str(pattern.pattern).split("<")[0].rstrip("/")
            found.append((anchor + pattern.name, prefix + literal))
    return found


@pytest.mark.parametrize("name", DOCS)
def test_each_docs_page_answers_and_is_reached_from_the_header(client, name):
    text = page(client, name)
    header = text.split("</header>")[0]
    assert f'href="{reverse("docs")}"' in header
    assert ">Docs</a>" in header


@pytest.mark.parametrize("name", ["quickstart", "docs-clients"])
def test_the_snippets_use_the_sites_own_base_url(client, name):
    blocks = code_blocks(page(client, name))
    assert blocks
    # The one sample without a URL: Codex's shell, whose URL is in its config.toml.
    without = [code_id for code_id, code in blocks.items() if BASE_URL not in code]
    assert without == ([] if name == "quickstart" else ["code-codex-shell"])


def test_the_quickstart_has_curl_python_and_javascript_tabs(client):
    text = page(client, "quickstart")
    tabs = re.findall(r'role="tab"[^>]*>([^<]+)</button>', text)
    assert tabs[:3] == ["curl", "Python", "JavaScript"]
    assert f"curl {BASE_URL}/v1/chat/completions" in text
    assert f'base_url="{BASE_URL}/v1"' in text
    assert f'baseURL: "{BASE_URL}/v1"' in text


def test_the_samples_name_a_model_of_the_catalog(client, demo_catalog, warm_catalog):
    warm_catalog()
    assert '"model": "demo"' in page(client, "quickstart")


def test_every_client_has_a_guide(client):
    text = page(client, "docs-clients")
    for anchor in [
        "claude-code",
        "codex-cli",
        "openai-sdk",
        "anthropic-sdk",
        "cursor",
        "cline",
        "opencode",
        "cherry-studio",
    ]:
        assert f'id="{anchor}"' in text
    assert f"export ANTHROPIC_BASE_URL={BASE_URL}\n" in text
    assert "ANTHROPIC_AUTH_TOKEN" in text
    assert f'base_url = "{BASE_URL}/v1"' in text
    assert 'wire_api = "responses"' in text
    assert 'web_search = "disabled"' in text and "[agents]\nenabled = false" in text
    assert '"npm": "@ai-sdk/openai-compatible"' in text


def test_every_code_block_has_its_copy_button(client):
    for name in ["quickstart", "docs-clients"]:
        text = page(client, name)
        ids = re.findall(r'<code id="(code-[^"]+)"', text)
        assert ids and len(ids) == len(set(ids))
        for code_id in ids:
            assert f'data-copy-target="{code_id}"' in text


def test_every_endpoint_of_the_urlconf_is_in_the_reference(client):
    text = page(client, "docs-api")
    endpoints = documented_endpoints()
    assert len(endpoints) >= 13
    for anchor, path in endpoints:
        section = re.search(rf'<h3 id="{re.escape(anchor)}">(.*?)</h3>', text, flags=re.S)
        assert section, f"{path} ({anchor}) has no section in the API reference"
        assert path in section.group(1), f"the section {anchor} does not name {path}"


def test_the_reference_has_the_readme_sections(client):
    text = page(client, "docs-api")
    for anchor in [
        "errors",
        "rate-limit-headers",
        "idempotency-key",
        "messages-door",
        "responses-api",
    ]:
        assert f'id="{anchor}"' in text
        assert f'href="#{anchor}"' in text
