"""The docs pages' code samples, written for this site's own base URL (SITE_URL).

Each sample is plain text rendered into a `<pre>` (autoescaped); a tab group is a few
samples of the same request in different languages, shown as an ARIA tablist by
static/js/docs.js and as one panel after another without JavaScript.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings

from billing.money import credit_unit
from gateway.catalog import get_catalog

KEY_VARIABLE = "SWITCHBOARD_API_KEY"


@dataclass(frozen=True)
class Snippet:
    id: str
    label: str
    code: str


@dataclass(frozen=True)
class TabGroup:
    id: str
    label: str
    snippets: tuple[Snippet, ...]


def example_model() -> str:
    """A model the samples can name: the first callable model of the catalog, by id."""
    ids = sorted(model.id for model in get_catalog().callable())
    return ids[0] if ids else "demo"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
"""The function tool of the tool-call samples (the same JSON in every language)."""


def key_export(secret: str) -> TabGroup:
    """The shell line that puts a new key where every sample reads it from."""
    return TabGroup(
        "key-export",
        "Keep the key in an environment variable",
        (Snippet("key-export", "Shell", f"export {KEY_VARIABLE}={secret}"),),
    )


def quickstart_groups(base_url: str, model: str) -> list[TabGroup]:
    v1 = f"{base_url}/v1"
    request = TabGroup(
        "first-request",
        "A first request",
        (
            Snippet(
                "first-request-curl",
                "curl",
                f"curl {v1}/chat/completions \\\n"
                f'  -H "Authorization: Bearer ${KEY_VARIABLE}" \\\n'
                '  -H "Content-Type: application/json" \\\n'
                "  -d '{\n"
                f'    "model": "{model}",\n'
                '    "messages": [{"role": "user", "content": "Hello!"}]\n'
                "  }'",
            ),
            Snippet(
                "first-request-python",
                "Python",
                "import os\n\n"
                "from openai import OpenAI\n\n"
                "client = OpenAI(\n"
                f'    base_url="{v1}",\n'
                f'    api_key=os.environ["{KEY_VARIABLE}"],\n'
                ")\n"
                "reply = client.chat.completions.create(\n"
                f'    model="{model}",\n'
                '    messages=[{"role": "user", "content": "Hello!"}],\n'
                ")\n"
                "print(reply.choices[0].message.content)",
            ),
            Snippet(
                "first-request-javascript",
                "JavaScript",
                'import OpenAI from "openai";\n\n'
                "const client = new OpenAI({\n"
                f'  baseURL: "{v1}",\n'
                f"  apiKey: process.env.{KEY_VARIABLE},\n"
                "});\n"
                "const reply = await client.chat.completions.create({\n"
                f'  model: "{model}",\n'
                '  messages: [{ role: "user", content: "Hello!" }],\n'
                "});\n"
                "console.log(reply.choices[0].message.content);",
            ),
        ),
    )
    stream = TabGroup(
        "stream",
        "A streamed answer",
        (
            Snippet(
                "stream-curl",
                "curl",
                f"curl -N {v1}/chat/completions \\\n"
                f'  -H "Authorization: Bearer ${KEY_VARIABLE}" \\\n'
                '  -H "Content-Type: application/json" \\\n'
                "  -d '{\n"
                f'    "model": "{model}",\n'
                '    "stream": true,\n'
                '    "stream_options": {"include_usage": true},\n'
                '    "messages": [{"role": "user", "content": "Stream, please"}]\n'
                "  }'",
            ),
            Snippet(
                "stream-python",
                "Python",
                "import os\n\n"
                "from openai import OpenAI\n\n"
                "client = OpenAI(\n"
                f'    base_url="{v1}",\n'
                f'    api_key=os.environ["{KEY_VARIABLE}"],\n'
                ")\n"
                "stream = client.chat.completions.create(\n"
                f'    model="{model}",\n'
                '    messages=[{"role": "user", "content": "Stream, please"}],\n'
                "    stream=True,\n"
                '    stream_options={"include_usage": True},  # the last chunk has the cost\n'
                ")\n"
                "for chunk in stream:\n"
                "    if chunk.choices:\n"
                '        print(chunk.choices[0].delta.content or "", end="")',
            ),
            Snippet(
                "stream-javascript",
                "JavaScript",
                'import OpenAI from "openai";\n\n'
                "const client = new OpenAI({\n"
                f'  baseURL: "{v1}",\n'
                f"  apiKey: process.env.{KEY_VARIABLE},\n"
                "});\n"
                "const stream = await client.chat.completions.create({\n"
                f'  model: "{model}",\n'
                '  messages: [{ role: "user", content: "Stream, please" }],\n'
                "  stream: true,\n"
                "  stream_options: { include_usage: true },\n"
                "});\n"
                "for await (const chunk of stream) {\n"
                '  process.stdout.write(chunk.choices[0]?.delta?.content ?? "");\n'
                "}",
            ),
        ),
    )
    weather = json.dumps(WEATHER_TOOL, indent=2, ensure_ascii=False)
    tools = TabGroup(
        "tools",
        "Tool calls",
        (
            Snippet(
                "tools-curl",
                "curl",
                f"curl {v1}/chat/completions \\\n"
                f'  -H "Authorization: Bearer ${KEY_VARIABLE}" \\\n'
                '  -H "Content-Type: application/json" \\\n'
                "  -d '{\n"
                f'    "model": "{model}",\n'
                '    "messages": [{"role": "user", "content": "Weather in Paris?"}],\n'
                f'    "tools": [{weather.replace(chr(10), chr(10) + "    ")}]\n'
                "  }'",
            ),
            Snippet(
                "tools-python",
                "Python",
                "import json\nimport os\n\n"
                "from openai import OpenAI\n\n"
                f'client = OpenAI(base_url="{v1}", api_key=os.environ["{KEY_VARIABLE}"])\n'
                f"tools = [{weather}]\n"
                'messages = [{"role": "user", "content": "Weather in Paris?"}]\n'
                "reply = client.chat.completions.create(\n"
                f'    model="{model}", messages=messages, tools=tools\n'
                ")\n"
                "call = reply.choices[0].message.tool_calls[0]\n"
                "print(call.function.name, json.loads(call.function.arguments))\n"
                "# Run the tool, then send its result back for the final answer:\n"
                "messages += [reply.choices[0].message,\n"
                '             {"role": "tool", "tool_call_id": call.id,\n'
                '              "content": "18 °C, sunny"}]\n'
                "final = client.chat.completions.create(\n"
                f'    model="{model}", messages=messages, tools=tools\n'
                ")\n"
                "print(final.choices[0].message.content)",
            ),
            Snippet(
                "tools-javascript",
                "JavaScript",
                'import OpenAI from "openai";\n\n'
                "const client = new OpenAI({\n"
                f'  baseURL: "{v1}",\n'
                f"  apiKey: process.env.{KEY_VARIABLE},\n"
                "});\n"
                f"const tools = [{weather}];\n"
                "const reply = await client.chat.completions.create({\n"
                f'  model: "{model}",\n'
                '  messages: [{ role: "user", content: "Weather in Paris?" }],\n'
                "  tools,\n"
                "});\n"
                "const call = reply.choices[0].message.tool_calls[0];\n"
                "console.log(call.function.name, JSON.parse(call.function.arguments));",
            ),
        ),
    )
    return [request, stream, tools]


def _value(guide: str, label: str, value: str) -> TabGroup:
    """One value to paste into a client's settings form."""
    return TabGroup(f"{guide}-value", label, (Snippet(f"{guide}-value", label, value),))


def client_guides(base_url: str, model: str) -> dict[str, TabGroup]:
    """The code of each client guide, by guide; a guide with one sample has one tab."""
    v1 = f"{base_url}/v1"
    return {
        "claude_code": TabGroup(
            "claude-code",
            "Claude Code configuration",
            (
                Snippet(
                    "claude-code-shell",
                    "Shell",
                    f"export ANTHROPIC_BASE_URL={base_url}\n"
                    f"export ANTHROPIC_AUTH_TOKEN=${KEY_VARIABLE}\n"
                    f"export ANTHROPIC_MODEL={model}\n"
                    "claude",
                ),
                Snippet(
                    "claude-code-settings",
                    "~/.claude/settings.json",
                    "{\n"
                    '  "env": {\n'
                    f'    "ANTHROPIC_BASE_URL": "{base_url}",\n'
                    f'    "ANTHROPIC_AUTH_TOKEN": "{settings.API_KEY_PREFIX}…",\n'
                    f'    "ANTHROPIC_MODEL": "{model}"\n'
                    "  }\n"
                    "}",
                ),
            ),
        ),
        "codex": TabGroup(
            "codex",
            "Codex CLI configuration",
            (
                Snippet(
                    "codex-config",
                    "~/.codex/config.toml",
                    f'model = "{model}"\n'
                    'model_provider = "switchboard"\n'
                    "# Switchboard serves function tools only:\n"
                    'web_search = "disabled"\n'
                    "\n"
                    "# its sub-agent tools are a `namespace` tool:\n"
                    "[agents]\n"
                    "enabled = false\n"
                    "\n"
                    "[model_providers.switchboard]\n"
                    'name = "Switchboard"\n'
                    f'base_url = "{v1}"\n'
                    f'env_key = "{KEY_VARIABLE}"\n'
                    'wire_api = "responses"',
                ),
                Snippet(
                    "codex-shell",
                    "Shell",
                    f'export {KEY_VARIABLE}={settings.API_KEY_PREFIX}…\ncodex exec "Say hello"',
                ),
            ),
        ),
        "openai_sdk": TabGroup(
            "openai-sdk",
            "OpenAI SDK",
            (
                Snippet(
                    "openai-sdk-python",
                    "Python",
                    "import os\n\n"
                    "from openai import OpenAI\n\n"
                    "client = OpenAI(\n"
                    f'    base_url="{v1}",\n'
                    f'    api_key=os.environ["{KEY_VARIABLE}"],\n'
                    ")\n"
                    "\n"
                    "# Chat Completions\n"
                    "reply = client.chat.completions.create(\n"
                    f'    model="{model}",\n'
                    '    messages=[{"role": "user", "content": "Hello!"}],\n'
                    ")\n\n"
                    "# The Responses API\n"
                    f'response = client.responses.create(model="{model}", input="Hello!")\n'
                    "print(response.output_text)",
                ),
                Snippet(
                    "openai-sdk-javascript",
                    "JavaScript",
                    'import OpenAI from "openai";\n\n'
                    "const client = new OpenAI({\n"
                    f'  baseURL: "{v1}",\n'
                    f"  apiKey: process.env.{KEY_VARIABLE},\n"
                    "});\n\n"
                    "const response = await client.responses.create({\n"
                    f'  model: "{model}",\n'
                    '  input: "Hello!",\n'
                    "});\n"
                    "console.log(response.output_text);",
                ),
            ),
        ),
        "anthropic_sdk": TabGroup(
            "anthropic-sdk",
            "Anthropic SDK",
            (
                Snippet(
                    "anthropic-sdk-python",
                    "Python",
                    "import os\n\n"
                    "import anthropic\n\n"
                    "client = anthropic.Anthropic(\n"
                    f'    base_url="{base_url}",  # no /v1: the SDK adds it\n'
                    f'    api_key=os.environ["{KEY_VARIABLE}"],\n'
                    ")\n"
                    "message = client.messages.create(\n"
                    f'    model="{model}",\n'
                    "    max_tokens=1024,\n"
                    '    messages=[{"role": "user", "content": "Hello!"}],\n'
                    ")\n"
                    "print(message.content[0].text)",
                ),
                Snippet(
                    "anthropic-sdk-javascript",
                    "JavaScript",
                    'import Anthropic from "@anthropic-ai/sdk";\n\n'
                    "const client = new Anthropic({\n"
                    f'  baseURL: "{base_url}",\n'
                    f"  apiKey: process.env.{KEY_VARIABLE},\n"
                    "});\n"
                    "const message = await client.messages.create({\n"
                    f'  model: "{model}",\n'
                    "  max_tokens: 1024,\n"
                    '  messages: [{ role: "user", content: "Hello!" }],\n'
                    "});\n"
                    "console.log(message.content[0].text);",
                ),
            ),
        ),
        "opencode": TabGroup(
            "opencode",
            "OpenCode configuration",
            (
                Snippet(
                    "opencode-config",
                    "opencode.json",
                    "{\n"
                    '  "$schema": "https://opencode.ai/config.json",\n'
                    '  "provider": {\n'
                    '    "switchboard": {\n'
                    '      "npm": "@ai-sdk/openai-compatible",\n'
                    '      "name": "Switchboard",\n'
                    '      "options": {\n'
                    f'        "baseURL": "{v1}",\n'
                    f'        "apiKey": "{{env:{KEY_VARIABLE}}}"\n'
                    "      },\n"
                    '      "models": {\n'
                    f'        "{model}": {{ "name": "{model}" }}\n'
                    "      }\n"
                    "    }\n"
                    "  },\n"
                    f'  "model": "switchboard/{model}"\n'
                    "}",
                ),
            ),
        ),
        "cursor": _value("cursor", "Override OpenAI Base URL", v1),
        "cline": _value("cline", "Base URL", v1),
        "cherry_studio": _value("cherry-studio", "API Address", base_url),
    }


@dataclass(frozen=True)
class Page:
    url_name: str
    title: str
    template: str


PAGES = {
    "index": Page("docs", "Overview", "console/docs/index.html"),
    "quickstart": Page("quickstart", "Quickstart", "console/quickstart.html"),
    "clients": Page("docs-clients", "Client guides", "console/docs/clients.html"),
    "api": Page("docs-api", "API reference", "console/docs/api.html"),
}
"""The docs pages, in the sidebar's order; the search reads each of them."""


def page_context(page: str, base_url: str) -> dict[str, object]:
    """What the template of the docs page `page` needs, written for `base_url`."""
    context: dict[str, object] = {"docs_page": page, "base_url": base_url}
    if page == "quickstart":
        context["groups"] = quickstart_groups(base_url, example_model())
    elif page == "clients":
        context["guides"] = client_guides(base_url, example_model())
    elif page == "api":
        context["credit_unit"] = credit_unit()
    return context
