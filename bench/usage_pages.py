"""Time the usage, logs and operator pages over real HTTP at scale (issue 11).

    .venv/bin/python manage.py makeusage 1000000          # into DATABASE_URL, once
    DATABASE_URL=postgres://... .venv/bin/python bench/usage_pages.py [--runs 7]

It serves the database DATABASE_URL names (never recreated: fill it with `makeusage`
first) with one production-settings uvicorn worker on 127.0.0.1, signs in as the
busiest synthetic customer and as a staff user (sessions made in the database, no
trip through the sign-in form), and times each page: the median and the slowest of
--runs requests after one warm-up, the time to the first byte of the CSV export, and
the page size. `--explain` writes EXPLAIN (ANALYZE, BUFFERS) of the dashboards'
queries to bench/results/usage_explain.txt. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))


SECRET = secrets.token_urlsafe(50)
"""The server's and this script's SECRET_KEY: sessions made here carry a hash of it."""


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["SECRET_KEY"] = SECRET
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    import django

    django.setup()


def session_for(user: Any) -> str:
    """A signed-in session for `user`, as django.contrib.auth.login() would store it."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return str(session.session_key)


def subjects() -> dict[str, Any]:
    """The busiest account's user, a request of theirs, a model they use, and staff."""
    from django.db.models import Sum
    from django.utils import timezone

    from accounts.models import User
    from billing.models import UsageDay, UsageRecord
    from billing.usage import cursor_of

    busiest = (
        UsageDay.objects.values("account_id")
        .annotate(n=Sum("requests"))
        .order_by("-n")
        .values_list("account_id", "n")
        .first()
    )
    if busiest is None:
        raise SystemExit("No usage in this database: run `manage.py makeusage N` first.")
    account_id, requests = busiest
    customer = User.objects.get(account__id=account_id)
    mine = UsageRecord.objects.filter(account_id=account_id)
    record = mine.order_by("-created_at")[1000]
    # Fifteen days back in the 30-day log: a keyset cursor, as the "Older" link carries.
    middle = mine.filter(created_at__lte=timezone.now() - timedelta(days=15)).order_by(
        "-created_at", "-id"
    )[0]
    model = (
        UsageDay.objects.filter(account_id=account_id)
        .values("model")
        .annotate(n=Sum("requests"))
        .order_by("n")
        .values_list("model", flat=True)
        .first()
    )
    staff, _ = User.objects.get_or_create(
        email="bench-operator@example.invalid", defaults={"is_staff": True, "password": "!"}
    )
    return {
        "customer": customer,
        "requests": requests,
        "total": UsageRecord.objects.count(),
        "request_id": record.request_id,
        "deep_cursor": cursor_of(middle),
        "rare_model": model,
        "staff": staff,
    }


def start_server(database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    # Production settings serve hashed static names: the manifest must exist (make prod).
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    log = (RESULTS / "usage_pages_server.log").open("wb")
    process = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "uvicorn"),
            "console.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--lifespan",
            "off",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server did not start; see {RESULTS / 'usage_pages_server.log'}")


def timed_get(client: httpx.Client, url: str, headers: dict[str, str]) -> tuple[float, int, int]:
    """Seconds to the whole answer, its status and its size."""
    started = time.perf_counter()
    response = client.get(url, headers=headers)
    return time.perf_counter() - started, response.status_code, len(response.content)


def first_byte(client: httpx.Client, url: str, headers: dict[str, str]) -> tuple[float, int, int]:
    """Seconds to the first byte of the body (the answer is read no further)."""
    started = time.perf_counter()
    with client.stream("GET", url, headers=headers) as response:
        for chunk in response.iter_raw():
            if chunk:
                break
        return time.perf_counter() - started, response.status_code, 0


def measure(
    fetch: Callable[[], tuple[float, int, int]], runs: int
) -> tuple[float, float, int, int]:
    fetch()  # warm-up: the worker's first request builds its caches
    results = [fetch() for _ in range(runs)]
    statuses = {status for _, status, _ in results}
    if statuses != {200}:
        raise SystemExit(f"a page answered {statuses}")
    times = [seconds for seconds, _, _ in results]
    return statistics.median(times), max(times), results[-1][1], results[-1][2]


def pages(info: dict[str, Any]) -> list[tuple[str, str, str, dict[str, str], bool]]:
    """(name, who, path, extra headers, time to first byte only)."""
    htmx = {"HX-Request": "true"}
    return [
        (
            "Usage page, 30 days (dashboard and log)",
            "customer",
            "/billing/usage/?days=30",
            {},
            False,
        ),
        (
            "Usage dashboard alone, 30 days (htmx)",
            "customer",
            "/billing/usage/?days=30",
            {**htmx, "HX-Target": "dashboard"},
            False,
        ),
        (
            "Usage dashboard alone, 90 days (htmx)",
            "customer",
            "/billing/usage/?days=90",
            {**htmx, "HX-Target": "dashboard"},
            False,
        ),
        (
            "Usage dashboard alone, today (htmx)",
            "customer",
            "/billing/usage/?days=1",
            {**htmx, "HX-Target": "dashboard"},
            False,
        ),
        (
            "Logs, first page (htmx)",
            "customer",
            "/billing/usage/?days=30",
            {**htmx, "HX-Target": "usage-log"},
            False,
        ),
        (
            "Logs, filtered: rarest model, errors (htmx)",
            "customer",
            f"/billing/usage/?days=30&model={info['rare_model']}&status=error",
            {**htmx, "HX-Target": "usage-log"},
            False,
        ),
        (
            "Logs, a page 15 days deep in the range (keyset, htmx)",
            "customer",
            f"/billing/usage/?days=30&after={info['deep_cursor']}",
            {**htmx, "HX-Target": "usage-log"},
            False,
        ),
        (
            "Logs, search by request id",
            "customer",
            f"/billing/usage/?q={info['request_id']}",
            {**htmx, "HX-Target": "usage-log"},
            False,
        ),
        ("Request detail", "customer", f"/billing/usage/{info['request_id']}/", {}, False),
        ("Operator page", "staff", "/ops/", {}, False),
        ("CSV export, 30 days: first byte", "customer", "/billing/usage.csv?days=30", {}, True),
    ]


def explain(info: dict[str, Any], path: Path) -> None:
    """EXPLAIN ANALYZE of the dashboards' main queries, to show the indexes they use."""
    from django.db import connection
    from django.db.models import Sum
    from django.utils import timezone

    from billing.dashboard import span, usage_dashboard
    from billing.models import UsageDay, UsageHour, UsageRecord

    account = info["customer"].account
    today = timezone.now().astimezone(UTC).date()
    the_span = span(today - timedelta(days=29), today, UTC)
    queries: dict[str, Any] = {}

    def keep(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries[sql] = params
        return execute(sql, params, many, context)

    with connection.execute_wrapper(keep):
        usage_dashboard(UsageHour.objects.filter(account=account), the_span, {})
    first = today - timedelta(days=29)
    day_rows = UsageDay.objects.between(first, today).values("day").annotate(n=Sum("requests"))
    sql, params = day_rows.query.sql_with_params()
    queries[sql] = params
    recent = UsageRecord.objects.filter(created_at__gte=timezone.now() - timedelta(hours=1))
    sql, params = recent.values_list("provider", "status").query.sql_with_params()
    queries[sql] = params
    detail = UsageRecord.objects.filter(request_id=info["request_id"])
    sql, params = detail.query.sql_with_params()
    queries[sql] = params
    with connection.cursor() as cursor, path.open("w") as out:
        for sql, params in queries.items():
            if params is None:
                continue
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
            out.write(sql + "\n" + "\n".join(row[0] for row in cursor.fetchall()) + "\n\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--port", type=int, default=8031)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    if not args.database_url.startswith("postgres"):
        raise SystemExit("give --database-url (or DATABASE_URL) of a PostgreSQL database")
    setup_django(args.database_url)
    info = subjects()
    cookies = {
        "customer": session_for(info["customer"]),
        "staff": session_for(info["staff"]),
    }
    if args.explain:
        RESULTS.mkdir(parents=True, exist_ok=True)
        explain(info, RESULTS / "usage_explain.txt")
    server = start_server(args.database_url, args.port)
    base = f"http://127.0.0.1:{args.port}"
    print(
        f"{info['total']:,} usage records; the busiest account has {info['requests']:,}; "
        f"{args.runs} runs per page after a warm-up; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
    )
    print("| page | median ms | slowest ms | size |")
    print("| --- | ---: | ---: | ---: |")
    try:
        with httpx.Client(timeout=120) as client:
            for name, who, path, extra, ttfb in pages(info):
                headers = {"Cookie": f"sessionid={cookies[who]}", **extra}
                fetch = first_byte if ttfb else timed_get
                median, slowest, _, size = measure(
                    lambda f=fetch, p=path, h=headers: f(client, base + p, h), args.runs
                )
                shown = f"{size / 1024:.0f} kB" if size else "—"
                print(f"| {name} | {median * 1000:.0f} | {slowest * 1000:.0f} | {shown} |")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
