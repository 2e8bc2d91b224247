"""Codex CLI (the real one, pinned in tests/clients/codex/package.json) against the live
server's Responses door, fully offline: its model provider is Switchboard, whose route
is the fake upstream. `.ci/run` installs it; without it the test fails, never skips.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from billing.models import UsageRecord
from gateway.models import Model, Provider, Route
from tests.fakes.upstream import Ok
from tests.gateway.test_responses_sdk import assert_billed_once, expected_cost

pytestmark = pytest.mark.django_db(transaction=True)

CODEX = Path(__file__).parent / "codex" / "node_modules" / ".bin" / "codex"
CONFIG = """\
model = "gpt-test"
model_provider = "switchboard"
check_for_update_on_startup = false
web_search = "disabled"
model_context_window = 400000

[agents]
enabled = false

[model_providers.switchboard]
name = "Switchboard"
base_url = "{base_url}"
env_key = "SWITCHBOARD_API_KEY"
wire_api = "responses"
"""


ROUTES = {
    "gpt-test": ("openai", "/v1", "openai-up"),
    "gpt-native": ("openai", "/v1", "native-up"),
    "claude-test": ("anthropic", "/v1", "claude-up"),
    "gemini-test": ("gemini", "/v1beta", "gemini-up"),
}
SERVES_RESPONSES = {"gpt-native"}  # passed through to the fake's own /v1/responses


@pytest.fixture
def catalog(fake_upstream):
    """A model per kind of route, each with Codex's own context window."""
    for model_id, (kind, path, upstream) in ROUTES.items():
        provider = Provider.objects.create(
            name=model_id,
            kind=kind,
            base_url=fake_upstream.url + path,
            api_key="k",
            serves_responses=model_id in SERVES_RESPONSES,
        )
        model = Model.objects.create(
            id=model_id,
            context_length=400_000,
            max_output_tokens=32_000,
            input_price=2_000_000,
            output_price=8_000_000,
            cached_input_price=500_000,
        )
        Route.objects.create(model=model, provider=provider, upstream_model=upstream)
    return fake_upstream


def codex(
    tmp_path: Path, base_url: str, secret: str, prompt: str, config: str = CONFIG
) -> subprocess.CompletedProcess:
    if not CODEX.exists():
        pytest.fail("Codex CLI is not installed: cd tests/clients/codex && npm ci --ignore-scripts")
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(config.format(base_url=base_url))
    work = tmp_path / "work"
    work.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        "SWITCHBOARD_API_KEY": secret,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    return subprocess.run(
        # --strict-config: every line of the config README shows is one Codex knows.
        [
            str(CODEX),
            "exec",
            "--strict-config",
            "--skip-git-repo-check",
            "--sandbox",
            "read-only",
            prompt,
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def responses_answered() -> float:
    """POST /v1/responses answered so far by the live server (it runs in this process)."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "switchboard_http_requests"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("route") == "responses"
    )


@pytest.mark.parametrize("model", list(ROUTES))
def test_codex_exec_answers_one_turn_billed_once(
    tmp_path, live_server_url, customer, catalog, model
):
    config = CONFIG.replace('model = "gpt-test"', f'model = "{model}"')

    done = codex(tmp_path, live_server_url + "/v1", customer.secret, "Say hello.", config)

    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Hello from {ROUTES[model][2]}. This answer is deterministic." in done.stdout
    [record] = UsageRecord.objects.filter(account=customer.account)
    assert_billed_once(customer.account, record.request_id)
    assert record.stream is True


def test_codex_runs_its_own_tool_and_completes_the_loop(
    tmp_path, live_server_url, customer, catalog
):
    command = '{"cmd":"echo switchboard-tool-ran"}'
    catalog.script(
        "openai-up", Ok(tool_calls=[("exec_command", command)]), Ok(text="The command ran.")
    )

    done = codex(tmp_path, live_server_url + "/v1", customer.secret, "Run the echo command.")

    assert done.returncode == 0, done.stderr[-3000:]
    assert "The command ran." in done.stdout
    first, second = catalog.requests_for("openai-up")
    assert first.json["tools"] and second.json["tools"]
    [call] = second.json["messages"][-2]["tool_calls"]
    assert call["function"] == {"name": "exec_command", "arguments": command}
    result = second.json["messages"][-1]
    assert result["role"] == "tool" and result["tool_call_id"] == call["id"]
    # The command's own output, so Codex really ran it (not an error quoting it).
    assert "exited with code 0" in result["content"]
    assert "Output:\nswitchboard-tool-ran" in result["content"]
    records = UsageRecord.objects.filter(account=customer.account)
    assert records.count() == 2
    for record in records:
        assert record.source == UsageRecord.Source.RESPONSES and record.status == "ok"
        assert record.cost_micro_usd == expected_cost(
            record.prompt_tokens, record.completion_tokens
        )
    customer.account.refresh_from_db()
    assert customer.account.ledger_sum() == customer.account.balance_micro_usd


def test_codex_completes_its_tool_loop_through_a_responses_upstream(
    tmp_path, live_server_url, customer, catalog
):
    command = '{"cmd":"echo switchboard-tool-ran"}'
    catalog.script(
        "native-up", Ok(tool_calls=[("exec_command", command)]), Ok(text="The command ran.")
    )
    config = CONFIG.replace('model = "gpt-test"', 'model = "gpt-native"')

    done = codex(tmp_path, live_server_url + "/v1", customer.secret, "Run it.", config)

    assert done.returncode == 0, done.stderr[-3000:]
    assert "The command ran." in done.stdout
    first, second = catalog.requests_for("native-up")
    assert first.path == second.path == "/v1/responses"
    call, output = second.json["input"][-2:]
    assert call["type"] == "function_call" and call["arguments"] == command
    assert output["type"] == "function_call_output" and output["call_id"] == call["call_id"]
    assert "switchboard-tool-ran" in str(output["output"])
    records = UsageRecord.objects.filter(account=customer.account)
    assert records.count() == 2
    for record in records:
        assert record.source == UsageRecord.Source.RESPONSES and record.status == "ok"
        assert record.cost_micro_usd == expected_cost(
            record.prompt_tokens, record.completion_tokens
        )
    customer.account.refresh_from_db()
    assert customer.account.ledger_sum() == customer.account.balance_micro_usd


def test_codex_out_of_credit_stops_with_the_reason_and_nothing_is_called(
    tmp_path, live_server_url, make_customer, catalog
):
    """The refused stream fails as a stream with `insufficient_quota`: Codex stops at
    once (it retried an HTTP 402 five times)."""
    poor = make_customer(credit_micro_usd=0)
    before = responses_answered()

    done = codex(tmp_path, live_server_url + "/v1", poor.secret, "Say hello.")

    assert done.returncode != 0
    assert "Quota exceeded" in done.stdout + done.stderr
    assert responses_answered() - before == 1
    assert catalog.requests == []
    # The refusal itself reaches the request log a moment later, at no cost.
    billed = UsageRecord.objects.filter(account=poor.account).exclude(
        status=UsageRecord.Status.REFUSED
    )
    assert not billed.exists()


def test_codex_with_its_web_search_on_is_told_which_tool_is_not_served(
    tmp_path, live_server_url, customer, catalog
):
    config = CONFIG.replace('web_search = "disabled"\n', "")

    done = codex(tmp_path, live_server_url + "/v1", customer.secret, "Hi.", config)

    assert done.returncode != 0
    assert "tools of type 'web_search' are not served" in done.stdout + done.stderr
    assert catalog.requests == []
    # The refusal itself reaches the request log a moment later, at no cost.
    billed = UsageRecord.objects.filter(account=customer.account).exclude(
        status=UsageRecord.Status.REFUSED
    )
    assert not billed.exists()
