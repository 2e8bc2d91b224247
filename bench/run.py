"""`make bench`: Switchboard against LiteLLM proxy on one machine, in interleaved rounds.

Targets, all on 127.0.0.1 and all in front of the same fake upstream:
- direct: the fake upstream itself (the floor);
- check: a second fake upstream where a gateway would be: its "added" latency must
  come out near zero, or the harness is measuring itself;
- switchboard: uvicorn --workers N, production settings, PostgreSQL, Redis, a real
  key with rate limits, a credit hold and a settlement with a usage record per call;
- litellm: LiteLLM proxy with the same N workers, no database, a master key.

Each round runs every scenario (non-stream and 64-token stream at concurrency 1, 10
and 50) against every target, in a rotating order, so drift hits them all alike.
CPU ms per request is the utime+stime of the server's process tree over the measured
window divided by the requests answered; RSS is read from /proc/<pid>/status.

The agent suite (`--suites agent` runs only it) sends coding-agent-sized streamed
requests (bench/agent.py: a long system prompt, 12 tools, a history of many messages,
seeded) to Switchboard and LiteLLM only: a 60k-token prompt and a 300-token answer on
each door (chat completions, Anthropic messages, Responses), the same with a fresh
prompt every request on chat completions, and a sweep of prompt sizes (1k on every door;
10k and 120k on chat completions).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvloop
from agent import DONE_MARKERS, PATHS, Corpus, Workload, fit, prompt_tokens
from loadgen import Target, run_load

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PYTHON = ROOT / ".venv" / "bin" / "python"
LITELLM = BENCH / ".litellm-venv" / "bin" / "litellm"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
MODEL = "bench"

CATALOG = """
[[provider]]
name = "bench-upstream"
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
api_key_env = "BENCH_UPSTREAM_KEY"
serves_responses = true

[[model]]
id = "bench"
title = "Bench Model"
context_length = 200000
max_output_tokens = 4096
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
routes = [{{ provider = "bench-upstream", upstream_model = "bench-upstream" }}]
"""


# --- processes -------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree.setdefault(parent, []).append(int(entry))
    return tree


def process_tree(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except OSError:
        return 0.0
    return pages * PAGE_KB / 1024


@dataclass
class Server:
    name: str
    url: str
    key: str
    process: subprocess.Popen[bytes] | None = None
    workers: int = 1

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process else []

    def worker_rss_mb(self) -> float:
        """The largest resident set among the N biggest processes (the workers)."""
        sizes = sorted((rss_mb(pid) for pid in self.pids()), reverse=True)
        return max(sizes[: self.workers], default=0.0)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start(
    command: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited early; see {log}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} was not ready after {seconds:.0f}s; see {log}")


# --- Switchboard setup -----------------------------------------------------------------


def recreate_database(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    name = database_url.rsplit("/", 1)[1].split("?")[0]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def flush_redis(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(PYTHON), "manage.py", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


# What `make prod` gives the workers (see the Makefile); LiteLLM gets the same, so the
# allocator is no difference between the two.
MALLOC_ENV = {"MALLOC_ARENA_MAX": "2"}


def switchboard_env(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    metrics_dir = workdir / "prometheus"
    metrics_dir.mkdir(exist_ok=True)
    env = {
        **os.environ,
        **MALLOC_ENV,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "METRICS_TOKEN": secrets.token_urlsafe(24),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "BENCH_UPSTREAM_KEY": "fake-upstream-key",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def start_switchboard(args: argparse.Namespace, workdir: Path) -> Server:
    env = switchboard_env(args, workdir)
    recreate_database(args.database_url)
    flush_redis(args.redis_url)
    manage(env, "migrate", "--noinput")
    catalog = workdir / "catalog.toml"
    catalog.write_text(CATALOG.format(port=args.upstream_port))
    manage(env, "loadcatalog", str(catalog))
    minted = manage(
        env,
        "mintkey",
        "bench@example.com",
        "--credit-usd",
        "1000000",
        "--rpm",
        "1000000",
        "--tpm",
        "1000000000",
        "--name",
        "bench",
    )
    key = minted.strip().splitlines()[-1]
    log = RESULTS / "switchboard.log"
    command = [
        str(ROOT / ".venv" / "bin" / "uvicorn"),
        "console.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(args.switchboard_port),
        "--workers",
        str(args.workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--lifespan",
        "off",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = start(command, env, log)
    base = f"http://127.0.0.1:{args.switchboard_port}"
    wait_ready(f"{base}/readyz", process, 60, log)
    return Server("switchboard", f"{base}/v1/chat/completions", key, process, args.workers)


def start_litellm(args: argparse.Namespace, workdir: Path) -> Server:
    if not LITELLM.exists():
        raise SystemExit(f"{LITELLM} is missing: run `make bench`, which installs it")
    master = "sk-bench-" + secrets.token_hex(16)
    env = {
        **os.environ,
        **MALLOC_ENV,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_MASTER_KEY": master,
        "BENCH_UPSTREAM_BASE": f"http://127.0.0.1:{args.upstream_port}/v1",
        "LITELLM_LOG": "ERROR",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    log = RESULTS / "litellm.log"
    command = [
        str(LITELLM),
        "--config",
        str(BENCH / "litellm_config.yaml"),
        "--host",
        "127.0.0.1",
        "--port",
        str(args.litellm_port),
        "--num_workers",
        str(args.workers),
    ]
    process = start(command, env, log, cwd=workdir)
    base = f"http://127.0.0.1:{args.litellm_port}"
    wait_ready(f"{base}/health/liveliness", process, 120, log)
    return Server("litellm", f"{base}/v1/chat/completions", master, process, args.workers)


def start_fake(port: int, args: argparse.Namespace, name: str) -> Server:
    log = RESULTS / f"{name}.log"
    command = [
        str(PYTHON),
        str(BENCH / "fake_upstream.py"),
        "--port",
        str(port),
        "--tokens",
        str(args.tokens),
        "--ttft-ms",
        str(args.ttft_ms),
        "--itl-ms",
        str(args.itl_ms),
    ]
    process = start(command, dict(os.environ), log)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/v1/models", process, 15, log)
    return Server(name, f"{base}/v1/chat/completions", "none", process, 1)


# --- rounds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    stream: bool
    concurrency: int

    @property
    def label(self) -> str:
        return f"{'stream' if self.stream else 'non-stream'} c={self.concurrency}"


@dataclass(frozen=True)
class AgentScenario:
    """A streamed agent-sized request on one door: `tokens` of prompt, grown or fresh."""

    door: str
    tokens: int
    variation: str  # "growing" (one session's history, turn by turn) or "fresh"
    concurrency: int = 1

    @property
    def label(self) -> str:
        return f"agent {self.door} {self.tokens // 1000}k {self.variation}"


@dataclass
class Cell:
    runs: list[dict[str, Any]] = field(default_factory=list)
    cpu_seconds: float = 0.0
    requests: int = 0
    rss_mb: float = 0.0


def measure(
    server: Server, scenario: Scenario, args: argparse.Namespace
) -> tuple[dict[str, Any], float]:
    target = Target.from_url(
        server.url,
        key=server.key,
        model=MODEL,
        stream=scenario.stream,
        max_tokens=args.tokens,
    )
    return measured_load(
        server,
        target,
        concurrency=scenario.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        max_requests=args.max_requests,
    )


def measured_load(
    server: Server,
    target: Target,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    max_requests: int,
) -> tuple[dict[str, Any], float]:
    """Run the load against `target`; its results and the server's CPU seconds over the
    measured window (sampled by the load generator's probe at its start and end)."""
    pids = server.pids()
    marks: list[float] = []

    def probe() -> None:
        marks.append(cpu_seconds(pids))

    result = uvloop.run(
        run_load(
            target,
            concurrency=concurrency,
            duration=duration,
            max_requests=max_requests,
            warmup=warmup,
            probe=probe,
        )
    )
    return result, marks[1] - marks[0]


def measure_agent(
    server: Server, scenario: AgentScenario, workload: Workload, args: argparse.Namespace
) -> tuple[dict[str, Any], float]:
    base = server.url.split("/v1/", 1)[0]
    target = Target.from_url(
        base + PATHS[scenario.door],
        key=server.key,
        model=MODEL,
        stream=True,
        max_tokens=args.agent_answer,
        bodies=workload.body,
        done_marker=DONE_MARKERS[scenario.door],
    )
    return measured_load(
        server,
        target,
        concurrency=scenario.concurrency,
        duration=args.agent_duration,
        warmup=args.agent_warmup,
        max_requests=args.max_requests,
    )


def agent_scenarios(args: argparse.Namespace) -> list[AgentScenario]:
    """The agent-sized prompt on every door (and fresh on chat), then the size sweep:
    its smallest size on every door (what "a small request" is compared with), the
    others on chat completions, each also fresh there."""
    doors = [door for door in args.agent_doors.split(",") if door]
    size = args.agent_tokens
    c = args.agent_concurrency
    scenarios = [AgentScenario(door, size, "growing", c) for door in doors]
    if "chat" in doors:
        scenarios.append(AgentScenario("chat", size, "fresh", c))
    sweep = [int(tokens) for tokens in args.agent_sizes.split(",") if tokens]
    smallest = min(sweep, default=0)
    for tokens in sweep:
        for door in doors if tokens == smallest else [d for d in doors if d == "chat"]:
            scenario = AgentScenario(door, tokens, "growing", c)
            if scenario not in scenarios:
                scenarios.append(scenario)
        fresh = AgentScenario("chat", tokens, "fresh", c)
        if "chat" in doors and fresh not in scenarios:
            scenarios.append(fresh)
    return scenarios


def fit_agent_prompts(
    scenarios: list[AgentScenario], args: argparse.Namespace
) -> tuple[Corpus, dict[int, float]]:
    """The corpus and, per prompt size, the chars per token that give that size (measured
    with Switchboard's own tokenizer, gateway/tokens.py, before any server starts)."""
    sys.path.insert(1, str(ROOT))
    corpus = Corpus(args.seed)
    return corpus, {
        tokens: fit(corpus, tokens, args.seed) for tokens in {s.tokens for s in scenarios}
    }


def run_agent_rounds(
    servers: list[Server],
    scenarios: list[AgentScenario],
    corpus: Corpus,
    ratios: dict[int, float],
    args: argparse.Namespace,
) -> tuple[dict[tuple[str, AgentScenario], Cell], dict[AgentScenario, float]]:
    """Every agent scenario on every server, in rotating order, `--agent-rounds` times.

    Each (server, scenario) keeps one Workload across rounds, built from the same seed
    for both servers: they get the same bodies in the same order, and a growing session
    carries on from one round to the next as an agent's would.
    """
    workloads = {
        (server.name, scenario): Workload(
            corpus,
            door=scenario.door,
            tokens=scenario.tokens,
            variation=scenario.variation,
            seed=args.seed,
            model=MODEL,
            max_tokens=args.agent_answer,
            chars_per_token=ratios[scenario.tokens],
        )
        for server in servers
        for scenario in scenarios
    }
    cells: dict[tuple[str, AgentScenario], Cell] = {}
    for round_number in range(args.agent_rounds):
        for index, scenario in enumerate(scenarios):
            shift = (round_number + index) % len(servers)
            for server in servers[shift:] + servers[:shift]:
                workload = workloads[(server.name, scenario)]
                result, cpu = measure_agent(server, scenario, workload, args)
                cell = cells.setdefault((server.name, scenario), Cell())
                cell.runs.append(result)
                cell.cpu_seconds += cpu
                cell.requests += result["requests"]
                cell.rss_mb = max(cell.rss_mb, server.worker_rss_mb())
                print(
                    f"agent round {round_number + 1}/{args.agent_rounds} {scenario.label:<28} "
                    f"{server.name:<12} {result['rps']:>7.1f} req/s  p50 {result['p50_ms']:8.2f} ms"
                    f"  errors {result['errors']} {result['error_examples'][:1]}",
                    flush=True,
                )
    sizes = {scenario: mean_prompt_tokens(corpus, scenario, ratios, args) for scenario in scenarios}
    return cells, sizes


def mean_prompt_tokens(
    corpus: Corpus, scenario: AgentScenario, ratios: dict[int, float], args: argparse.Namespace
) -> float:
    """The mean o200k count of the scenario's first session (or first 8 fresh prompts)."""
    work = Workload(
        corpus,
        door="chat",
        tokens=scenario.tokens,
        variation=scenario.variation,
        seed=args.seed,
        model=MODEL,
        max_tokens=args.agent_answer,
        chars_per_token=ratios[scenario.tokens],
    )
    count = work.session_turns if scenario.variation == "growing" else 8
    return statistics.mean(prompt_tokens(work.body(0)) for _ in range(count))


def run_rounds(
    servers: list[Server], scenarios: list[Scenario], args: argparse.Namespace
) -> dict[tuple[str, Scenario], Cell]:
    cells: dict[tuple[str, Scenario], Cell] = {}
    for round_number in range(args.rounds):
        for index, scenario in enumerate(scenarios):
            shift = (round_number + index) % len(servers)
            for server in servers[shift:] + servers[:shift]:
                result, cpu = measure(server, scenario, args)
                cell = cells.setdefault((server.name, scenario), Cell())
                cell.runs.append(result)
                cell.cpu_seconds += cpu
                cell.requests += result["requests"]
                cell.rss_mb = max(cell.rss_mb, server.worker_rss_mb())
                print(
                    f"round {round_number + 1}/{args.rounds} {scenario.label:<16} "
                    f"{server.name:<12} {result['rps']:>9.1f} req/s  p50 {result['p50_ms']:7.2f} ms"
                    f"  errors {result['errors']}",
                    flush=True,
                )
    return cells


# --- report ----------------------------------------------------------------------------


def median(runs: list[dict[str, Any]], name: str) -> float:
    return statistics.median(run[name] for run in runs)


def summarise(
    cells: dict[tuple[str, Scenario], Cell], servers: list[Server], scenarios: list[Scenario]
) -> list[dict[str, Any]]:
    rows = []
    for scenario in scenarios:
        direct = cells[("direct", scenario)]
        for server in servers:
            cell = cells[(server.name, scenario)]
            added = [
                run["p50_ms"] - base["p50_ms"]
                for run, base in zip(cell.runs, direct.runs, strict=True)
            ]
            rows.append(
                {
                    "scenario": scenario.label,
                    "stream": scenario.stream,
                    "concurrency": scenario.concurrency,
                    "target": server.name,
                    "requests": cell.requests,
                    "errors": sum(run["errors"] for run in cell.runs),
                    "rps": median(cell.runs, "rps"),
                    "p50_ms": median(cell.runs, "p50_ms"),
                    "p90_ms": median(cell.runs, "p90_ms"),
                    "p99_ms": median(cell.runs, "p99_ms"),
                    "added_p50_ms": statistics.median(added),
                    "ttft_p50_ms": median(cell.runs, "ttft_p50_ms"),
                    "cpu_ms_per_request": (
                        1000 * cell.cpu_seconds / cell.requests if cell.requests else float("nan")
                    ),
                    "rss_mb_per_worker": cell.rss_mb,
                }
            )
    return rows


def _ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else float("nan")


def add_ratios(rows: list[dict[str, Any]]) -> None:
    by_key = {(row["scenario"], row["target"]): row for row in rows}
    for row in rows:
        theirs = by_key.get((row["scenario"], "litellm"))
        if theirs is None or row["target"] != "switchboard":
            continue
        row["vs_litellm"] = {
            name: _ratio(row[name], theirs[name])
            for name in (
                "added_p50_ms",
                "rps",
                "ttft_p50_ms",
                "cpu_ms_per_request",
                "rss_mb_per_worker",
            )
        }


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ours = [row for row in rows if row["target"] == "switchboard"]

    def ratios(predicate: Callable[[dict[str, Any]], bool], name: str) -> list[float]:
        return [row["vs_litellm"][name] for row in ours if predicate(row)]

    checks = [
        (
            "CPU ms per non-stream request <= 1/3 of LiteLLM's",
            ratios(lambda r: not r["stream"], "cpu_ms_per_request"),
            1 / 3,
            "max",
        ),
        (
            "CPU ms per 64-token stream <= 1/5 of LiteLLM's",
            ratios(lambda r: r["stream"], "cpu_ms_per_request"),
            1 / 5,
            "max",
        ),
        (
            "added p50 latency at c=1 <= 1/2 of LiteLLM's",
            ratios(lambda r: r["concurrency"] == 1, "added_p50_ms"),
            1 / 2,
            "max",
        ),
        (
            "throughput at 50 concurrent streams >= 3x LiteLLM's",
            ratios(lambda r: r["stream"] and r["concurrency"] == 50, "rps"),
            3.0,
            "min",
        ),
    ]
    results: list[dict[str, Any]] = []
    for name, values, bound, kind in checks:
        if not values:
            results.append({"target": name, "worst_ratio": None, "met": False, "not_run": True})
            continue
        worst = max(values) if kind == "max" else min(values)
        met = worst <= bound if kind == "max" else worst >= bound
        results.append({"target": name, "worst_ratio": worst, "met": met})
    rss = max(row["rss_mb_per_worker"] for row in ours)
    results.append({"target": "RSS per worker <= 150 MB", "worst_mb": rss, "met": rss <= 150})
    errors = sum(row["errors"] for row in ours)
    results.append(
        {"target": "no errors through Switchboard", "errors": errors, "met": errors == 0}
    )
    return results


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        "| scenario | target | req/s | p50 ms | p99 ms | added p50 ms | TTFT p50 ms | CPU ms/req "
        "| RSS MB/worker | errors | vs LiteLLM: added / req/s / TTFT / CPU / RSS |"
    )
    lines = [header, "|" + "---|" * 11]
    for row in rows:
        ratios = row.get("vs_litellm")
        versus = (
            f"{ratios['added_p50_ms']:.2f}x / {ratios['rps']:.2f}x / "
            f"{ratios['ttft_p50_ms']:.2f}x / {ratios['cpu_ms_per_request']:.2f}x / "
            f"{ratios['rss_mb_per_worker']:.2f}x"
            if ratios
            else ""
        )
        cpu = row["cpu_ms_per_request"] if row["target"] != "direct" else float("nan")
        lines.append(
            f"| {row['scenario']} | {row['target']} | {row['rps']:.0f} | {row['p50_ms']:.2f} "
            f"| {row['p99_ms']:.2f} | {row['added_p50_ms']:.2f} | {row['ttft_p50_ms']:.2f} "
            f"| {cpu:.2f} | {row['rss_mb_per_worker']:.0f} | {row['errors']} | {versus} |"
        )
    return "\n".join(lines)


def summarise_agent(
    cells: dict[tuple[str, AgentScenario], Cell],
    sizes: dict[AgentScenario, float],
    servers: list[Server],
    scenarios: list[AgentScenario],
) -> list[dict[str, Any]]:
    rows = []
    for scenario in scenarios:
        for server in servers:
            cell = cells[(server.name, scenario)]
            examples = [example for run in cell.runs for example in run["error_examples"]]
            rows.append(
                {
                    "scenario": scenario.label,
                    "door": scenario.door,
                    "tokens": scenario.tokens,
                    "variation": scenario.variation,
                    "concurrency": scenario.concurrency,
                    "prompt_tokens": sizes[scenario],
                    "target": server.name,
                    "requests": cell.requests,
                    "errors": sum(run["errors"] for run in cell.runs),
                    "error_examples": examples[:3],
                    "served": cell.requests > 0,
                    "rps": median(cell.runs, "rps"),
                    "p50_ms": median(cell.runs, "p50_ms"),
                    "ttft_p50_ms": median(cell.runs, "ttft_p50_ms"),
                    "answer_kb": median(cell.runs, "answer_kb"),
                    "cpu_ms_per_request": (
                        1000 * cell.cpu_seconds / cell.requests if cell.requests else float("nan")
                    ),
                    "rss_mb_per_worker": cell.rss_mb,
                }
            )
    by_key = {(row["door"], row["tokens"], row["variation"], row["target"]): row for row in rows}
    smallest = min((s.tokens for s in scenarios), default=0)
    for row in rows:
        if row["target"] != "switchboard":
            continue
        theirs = by_key.get((row["door"], row["tokens"], row["variation"], "litellm"))
        if theirs is not None and theirs["served"] and row["served"]:
            row["cpu_vs_litellm"] = row["cpu_ms_per_request"] / theirs["cpu_ms_per_request"]
        small = by_key.get((row["door"], smallest, "growing", "switchboard")) or by_key.get(
            ("chat", smallest, "growing", "switchboard")
        )
        if small is not None and small["served"] and row["served"]:
            row["cpu_vs_small"] = row["cpu_ms_per_request"] / small["cpu_ms_per_request"]
    return rows


def check_agent_targets(rows: list[dict[str, Any]], agent_tokens: int) -> list[dict[str, Any]]:
    """The issue's targets for an agent-sized streamed request (`agent_tokens` of prompt)."""
    ours = [row for row in rows if row["target"] == "switchboard"]
    sized = [row for row in ours if row["tokens"] == agent_tokens]
    results = []
    for name, key, bound in (
        ("agent-sized stream: CPU <= 1/10 of LiteLLM's", "cpu_vs_litellm", 0.1),
        ("agent-sized stream: CPU <= 2x a small request's", "cpu_vs_small", 2.0),
    ):
        measured = {row["scenario"]: row.get(key) for row in sized}
        known = [value for value in measured.values() if value is not None]
        results.append(
            {
                "target": name,
                "by_scenario": measured,
                "worst_ratio": max(known) if known else None,
                "met": bool(known) and max(known) <= bound,
                "not_run": not known,
            }
        )
    rss = max((row["rss_mb_per_worker"] for row in ours), default=0.0)
    results.append(
        {"target": "agent suite: RSS per worker <= 150 MB", "worst_mb": rss, "met": rss <= 150}
    )
    errors = sum(row["errors"] for row in ours)
    name = "agent suite: no errors through Switchboard"
    results.append({"target": name, "errors": errors, "met": not errors})
    return results


def agent_table(rows: list[dict[str, Any]]) -> str:
    header = (
        "| scenario | target | prompt tokens | req/s | p50 ms | TTFT p50 ms | answer KB "
        "| CPU ms/req | RSS MB/worker | errors | CPU vs LiteLLM | CPU vs small |"
    )
    lines = [header, "|" + "---|" * 12]
    for row in rows:
        if not row["served"]:
            why = row["error_examples"][0] if row["error_examples"] else "no answer"
            lines.append(
                f"| {row['scenario']} | {row['target']} | {row['prompt_tokens']:.0f} "
                f"| not served: {why[:80]} | | | | | | {row['errors']} | | |"
            )
            continue
        versus = f"{row['cpu_vs_litellm']:.2f}x" if "cpu_vs_litellm" in row else ""
        small = f"{row['cpu_vs_small']:.2f}x" if "cpu_vs_small" in row else ""
        lines.append(
            f"| {row['scenario']} | {row['target']} | {row['prompt_tokens']:.0f} "
            f"| {row['rps']:.1f} | {row['p50_ms']:.1f} | {row['ttft_p50_ms']:.1f} "
            f"| {row['answer_kb']:.1f} | {row['cpu_ms_per_request']:.2f} "
            f"| {row['rss_mb_per_worker']:.0f} "
            f"| {row['errors']} | {versus} | {small} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": sys.version.split()[0],
        "litellm": _version(LITELLM.parent / "python", "litellm"),
        "django": _version(PYTHON, "django"),
        "uvicorn": _version(PYTHON, "uvicorn"),
        "load_average_at_end": os.getloadavg(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _version(python: Path, package: str) -> str:
    if not python.exists():
        return "not installed"
    done = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_WORKERS", "2")))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of warm-up per run")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap per run")
    parser.add_argument("--concurrency", default="1,10,50")
    parser.add_argument("--modes", default="non-stream,stream")
    parser.add_argument("--tokens", type=int, default=64, help="output tokens per answer")
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--itl-ms", type=float, default=0.0)
    parser.add_argument("--targets", default="direct,check,switchboard,litellm")
    parser.add_argument(
        "--suites",
        default="classic,agent",
        help="classic (small chat requests), agent (agent-sized streams), or both",
    )
    parser.add_argument("--agent-doors", default="chat,messages,responses")
    parser.add_argument("--agent-tokens", type=int, default=60_000, help="the agent-sized prompt")
    parser.add_argument(
        "--agent-sizes",
        default="1000,10000,60000,120000",
        help="the prompt-size sweep (the smallest on every door, the rest on chat)",
    )
    parser.add_argument("--agent-answer", type=int, default=300, help="output tokens")
    parser.add_argument("--agent-rounds", type=int, default=2)
    parser.add_argument("--agent-duration", type=float, default=4.0)
    parser.add_argument("--agent-warmup", type=float, default=0.5)
    parser.add_argument("--agent-concurrency", type=int, default=1)
    parser.add_argument("--seed", type=int, default=13, help="of the agent prompts")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sb_bench"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
    )
    parser.add_argument("--upstream-port", type=int, default=9100)
    parser.add_argument("--check-port", type=int, default=9101)
    parser.add_argument("--switchboard-port", type=int, default=8100)
    parser.add_argument("--litellm-port", type=int, default=4100)
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    return parser.parse_args()


def check_ports_free(args: argparse.Namespace) -> None:
    """Refuse to start next to another run (or anything else) on the benchmark's ports."""
    for port in (args.upstream_port, args.check_port, args.switchboard_port, args.litellm_port):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                message = f"port {port} is in use ({exc}); is another bench running?"
                raise SystemExit(message) from exc


def stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main() -> None:
    args = parse_args()
    RESULTS.mkdir(exist_ok=True)
    check_ports_free(args)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    wanted = args.targets.split(",")
    suites = args.suites.split(",")
    scenarios = [
        Scenario(stream=mode == "stream", concurrency=int(c))
        for mode in args.modes.split(",")
        for c in args.concurrency.split(",")
        if "classic" in suites
    ]
    agents = agent_scenarios(args) if "agent" in suites else []
    corpus, ratios = fit_agent_prompts(agents, args) if agents else (None, {})
    cells: dict[tuple[str, Scenario], Cell] = {}
    agent_cells: dict[tuple[str, AgentScenario], Cell] = {}
    sizes: dict[AgentScenario, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    servers: list[Server] = []
    started = time.monotonic()
    try:
        upstream = start_fake(args.upstream_port, args, "direct")
        servers.append(upstream)
        if "check" in wanted:
            servers.append(start_fake(args.check_port, args, "check"))
        if "switchboard" in wanted:
            servers.append(start_switchboard(args, workdir))
        if "litellm" in wanted:
            servers.append(start_litellm(args, workdir))
        print(f"servers ready in {time.monotonic() - started:.0f}s", flush=True)
        if scenarios:
            cells = run_rounds(servers, scenarios, args)
        gateways = [server for server in servers if server.name in ("switchboard", "litellm")]
        if corpus is not None and gateways:
            agent_cells, sizes = run_agent_rounds(gateways, agents, corpus, ratios, args)
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    rows = summarise(cells, servers, scenarios) if scenarios else []
    add_ratios(rows)
    gateways = [server for server in servers if server.name in ("switchboard", "litellm")]
    agent_rows = summarise_agent(agent_cells, sizes, gateways, agents) if agent_cells else []
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": {
            name: getattr(args, name)
            for name in (
                "workers",
                "rounds",
                "duration",
                "warmup",
                "tokens",
                "ttft_ms",
                "itl_ms",
                "suites",
                "agent_tokens",
                "agent_sizes",
                "agent_answer",
                "agent_rounds",
                "agent_duration",
                "agent_concurrency",
                "seed",
            )
        },
        "rows": rows,
        "agent_rows": agent_rows,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    if "litellm" in wanted and "switchboard" in wanted:
        report["targets"] = (check_targets(rows) if rows else []) + (
            check_agent_targets(agent_rows, args.agent_tokens) if agent_rows else []
        )
    args.json.write_bytes(
        orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    print()
    if rows:
        print(table(rows))
    if agent_rows:
        print()
        print(agent_table(agent_rows))
    for check in report.get("targets", []):
        verdict = "----" if check.get("not_run") else "MET " if check["met"] else "MISS"
        print(f"{verdict}  {check['target']}: {check}")
    print(f"\nJSON: {args.json}  wall time {report['wall_seconds']}s")


if __name__ == "__main__":
    main()
