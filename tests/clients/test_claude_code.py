"""Claude Code (the real CLI, pinned in tests/clients/claude-code/package.json) against
the live server's Messages door, fully offline: `claude -p` with ANTHROPIC_BASE_URL at
Switchboard, whose routes are the fake upstream. `make test` installs it (npm ci, then
the package's own install.cjs, since install scripts are off); without it the test
fails, never skips.

What Claude Code 2.1.328 sends in `-p` mode with nonessential traffic off, found from
its debug log and the fake upstream's records: one streamed POST /v1/messages?beta=true
per model turn (its system prompt, a mid-conversation system turn, about a dozen of its
own tools, thinking, context management, anthropic-beta), and nothing else: no
count_tokens, no title or summary call on a small model, no quota check. The tests
assert exactly that, so a version that sends more shows up here first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from billing.models import UsageRecord
from gateway.models import Model, Provider, Route
from tests.fakes.upstream import Ok
from tests.gateway.test_messages_sdk import expected_cost

pytestmark = pytest.mark.django_db(transaction=True)

CLAUDE = Path(__file__).parent / "claude-code" / "node_modules" / ".bin" / "claude"
INSTALL = "make tests/clients/claude-code/node_modules/.bin/claude (make test does it)"
CONTEXT_LENGTH = 200_000
# model id → (route kind, the upstream model its one route calls)
ROUTES = {"claude-test": ("anthropic", "claude-up"), "gpt-test": ("openai", "openai-up")}
ECHO = {"command": "echo switchboard-tool-ran", "description": "Print a marker"}


@pytest.fixture
def catalog(fake_upstream):
    """claude-test → an Anthropic-kind route, gpt-test → an OpenAI-compatible one."""
    for model_id, (kind, upstream) in ROUTES.items():
        provider = Provider.objects.create(
            name=kind, kind=kind, base_url=fake_upstream.url + "/v1", api_key="k"
        )
        model = Model.objects.create(
            id=model_id,
            context_length=CONTEXT_LENGTH,
            max_output_tokens=64_000,
            input_price=2_000_000,
            output_price=8_000_000,
            cached_input_price=500_000,
        )
        Route.objects.create(model=model, provider=provider, upstream_model=upstream)
    return fake_upstream


def claude(
    tmp_path: Path,
    base_url: str,
    secret: str,
    prompt: str,
    *flags: str,
    model: str | None = "claude-test",
    **more_env: str,
) -> tuple[subprocess.CompletedProcess, str]:
    """Run `claude -p` (with `--model` unless `model` is None) with nothing of this
    machine's own config; returns the finished process and its debug log, having checked
    that it tried no host but 127.0.0.1."""
    if not CLAUDE.exists() or CLAUDE.stat().st_size < 1_000_000:
        # Below that size bin/claude.exe is the package's placeholder: install.cjs did not run.
        pytest.fail(f"Claude Code is not installed: {INSTALL}")
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    debug = tmp_path / "claude-debug.log"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "TMPDIR": str(tmp_path),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": secret,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS": str(CONTEXT_LENGTH),
        # Anything not for 127.0.0.1 goes to a closed port, so nothing leaves the machine.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
        **more_env,
    }
    choose = ["--model", model] if model else []
    done = subprocess.run(
        [str(CLAUDE), "-p", prompt, *choose, "--debug-file", str(debug), *flags],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log = debug.read_text() if debug.exists() else ""
    assert "[API REQUEST]" in log, done.stdout[-2000:] + done.stderr[-2000:]
    # Had it tried another host (telemetry, a registry, an update), the closed proxy port
    # would have refused it, and the log would say so.
    assert "ECONNREFUSED" not in log
    return done, log


def api_requests(log: str) -> list[str]:
    """The API requests Claude Code's debug log says it made, in order."""
    return re.findall(r"\[API REQUEST\] (\S+)", log)


def assert_each_request_billed_once(customer, model: str, requests: int) -> None:
    """One usage record per request Claude Code made, each at its price; the books balance."""
    # Settlement can finish just after the client has read the last byte.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        records = list(UsageRecord.objects.filter(account=customer.account))
        if len(records) >= requests:
            break
        time.sleep(0.02)
    assert len(records) == requests
    for record in records:
        assert record.source == UsageRecord.Source.MESSAGES and record.status == "ok"
        assert (record.model, record.provider, record.stream) == (model, ROUTES[model][0], True)
        assert record.cost_micro_usd == expected_cost(
            record.prompt_tokens, record.completion_tokens, record.cached_tokens
        )
    account = customer.account
    account.refresh_from_db()
    assert account.held_micro_usd == 0
    assert account.ledger_sum() == account.balance_micro_usd
    assert account.balance_micro_usd == 10_000_000 - sum(r.cost_micro_usd for r in records)


@pytest.mark.parametrize("model", list(ROUTES))
def test_claude_p_answers_one_turn_billed_once(tmp_path, live_server_url, customer, catalog, model):
    kind, upstream = ROUTES[model]

    done, log = claude(tmp_path, live_server_url, customer.secret, "Say hello.", model=model)

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip() == f"Hello from {upstream}. This answer is deterministic."
    assert api_requests(log) == ["/v1/messages"]
    [sent] = catalog.requests
    assert sent.path == ("/v1/messages" if kind == "anthropic" else "/v1/chat/completions")
    assert sent.json["stream"] is True and sent.json["tools"]
    assert_each_request_billed_once(customer, model, 1)


@pytest.mark.parametrize("model", list(ROUTES))
def test_claude_runs_its_own_bash_tool_and_completes_the_loop(
    tmp_path, live_server_url, customer, catalog, model
):
    kind, upstream = ROUTES[model]
    catalog.script(
        upstream, Ok(tool_calls=[("Bash", json.dumps(ECHO))]), Ok(text="The command ran.")
    )

    done, log = claude(
        tmp_path,
        live_server_url,
        customer.secret,
        "Run the echo command.",
        "--allowedTools",
        "Bash(echo:*)",
        model=model,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip() == "The command ran."
    assert api_requests(log) == ["/v1/messages", "/v1/messages"]
    first, second = catalog.requests_for(upstream)
    assert catalog.requests == [first, second]
    if kind == "anthropic":
        # Passed through natively: Claude Code's own tool_use and tool_result blocks.
        use, result = second.json["messages"][-2:]
        [call] = use["content"]
        assert call["type"] == "tool_use" and (call["name"], call["input"]) == ("Bash", ECHO)
        [block] = result["content"]
        assert block["type"] == "tool_result" and block["tool_use_id"] == call["id"]
        assert block["is_error"] is False
        output = block["content"]
    else:
        use, result = second.json["messages"][-2:]
        [call] = use["tool_calls"]
        assert call["function"]["name"] == "Bash"
        assert json.loads(call["function"]["arguments"]) == ECHO
        assert result["role"] == "tool" and result["tool_call_id"] == call["id"]
        output = result["content"]
    # The command's own output, so Claude Code really ran it.
    assert output == "switchboard-tool-ran"
    assert_each_request_billed_once(customer, model, 2)


def test_claude_out_of_credit_stops_with_the_reason_and_nothing_is_called(
    tmp_path, live_server_url, make_customer, catalog
):
    poor = make_customer(credit_micro_usd=0)

    done, log = claude(tmp_path, live_server_url, poor.secret, "Say hello.")

    assert done.returncode != 0
    assert "Insufficient credits" in done.stdout + done.stderr
    # A billing error is not retried.
    assert api_requests(log) == ["/v1/messages"]
    assert catalog.requests == []
    assert not UsageRecord.objects.settled().filter(account=poor.account).exists()


def test_claude_codes_own_default_model_resolves_by_a_catalog_alias(
    tmp_path, live_server_url, customer, catalog
):
    """With no --model, Claude Code asks for its own default (claude-opus-5-5 in this
    version, with max_tokens 128000): an alias in the catalog routes it, and
    CLAUDE_CODE_MAX_OUTPUT_TOKENS keeps its answer within the model's output cap."""
    Model.objects.filter(id="claude-test").update(aliases=["claude-opus-5-5"])

    done, log = claude(
        tmp_path,
        live_server_url,
        customer.secret,
        "Say hello.",
        model=None,
        CLAUDE_CODE_MAX_OUTPUT_TOKENS="64000",
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip() == "Hello from claude-up. This answer is deterministic."
    assert api_requests(log) == ["/v1/messages"]
    [sent] = catalog.requests
    assert (sent.json["model"], sent.json["max_tokens"]) == ("claude-up", 64_000)
    assert_each_request_billed_once(customer, "claude-test", 1)


def test_claude_codes_own_default_model_unknown_to_the_catalog_is_a_404_billed_nothing(
    tmp_path, live_server_url, customer, catalog
):
    done, log = claude(tmp_path, live_server_url, customer.secret, "Say hello.", model=None)

    assert done.returncode != 0
    assert "claude-opus-5-5" in done.stdout
    # Streamed, then once more without streaming; our 404 in Anthropic's shape.
    assert api_requests(log) == ["/v1/messages", "/v1/messages"]
    assert '"type":"not_found_error"' in log
    assert catalog.requests == []
    assert not UsageRecord.objects.settled().filter(account=customer.account).exists()
