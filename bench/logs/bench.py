"""Benchmark: the Logs page, its filters, charts and CSV export at ~10M rows for one user.

Needs a database filled by `generate_request_logs` (see README.md). Server time is
measured in-process around Django's test client: middleware, view, queries and
template rendering, without the network. Each URL is requested `--warmup` times,
then `--runs` times; p50 / p95 / max are printed as a Markdown table.

`--csv` streams the CSV export of the busy user's newest `--csv-rows` rows in a
child process and reports the time, the lines, and its RSS while streaming.

Usage:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/comet_logs_bench \\
    REDIS_URL=redis://127.0.0.1:6379/13 \\
    .venv/bin/python bench/logs/bench.py --runs 40 --csv --csv-rows 1000000
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comet.settings.test")
BUSY = "busy@bench.example.com"


def _setup():
    import django

    django.setup()
    from django.test import Client

    from accounts.models import User

    user = User.objects.get(email=BUSY)
    client = Client()
    client.force_login(user)
    return user, client


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _deep_cursor(user_id: int, offset: int) -> str:
    """Return the cursor of the row `offset` rows down the 30-day list (set-up only)."""
    from datetime import timedelta

    from django.utils import timezone

    from logs.forms import Cursor
    from logs.models import RequestLog

    row = (
        RequestLog.objects.filter(
            user_id=user_id, created_at__gte=timezone.now() - timedelta(days=30)
        )
        .order_by("-created_at", "-id")
        .values_list("created_at", "id")[offset]
    )
    return Cursor(row[0], row[1]).sign()


def _scenarios(user) -> list[tuple[str, str, str]]:
    from urllib.parse import urlencode

    from accounts.models import Token
    from logs.models import TokenIp

    token = Token.objects.filter(user=user).order_by("id").first()
    busiest_ip = TokenIp.objects.filter(token_id=token.pk).order_by("-requests").first()
    deep = _deep_cursor(user.pk, 200_000)
    page = "page"
    chart = "chart"
    return [
        (page, "first page (24h, default)", "/logs/"),
        (page, "first page, 30 days", "/logs/?range=30d"),
        (
            page,
            "deep page (row 200,000 of 30 days)",
            "/logs/?" + urlencode({"range": "30d", "cursor": deep}),
        ),
        (page, "filter: token (30d)", f"/logs/?range=30d&token={token.pk}"),
        (page, "filter: model (30d)", "/logs/?range=30d&model=claude-3-5-sonnet"),
        (page, "filter: rare model (30d)", "/logs/?range=30d&model=dall-e-3"),
        (page, "filter: IP (30d)", f"/logs/?range=30d&ip={busiest_ip.client_ip}"),
        (page, "filter: status ok (30d)", "/logs/?range=30d&status=ok"),
        (page, "filter: status error (30d)", "/logs/?range=30d&status=error"),
        (page, "filter: status 429 (30d)", "/logs/?range=30d&status=429"),
        (
            page,
            "filter: custom 7 days",
            "/logs/?range=custom&start=" + _days_ago(9) + "&end=" + _days_ago(2),
        ),
        (
            page,
            "filter: token + model + ok (7d)",
            f"/logs/?range=7d&token={token.pk}&model=gpt-4o&status=ok",
        ),
        (
            page,
            "filter: IP + model (7d)",
            f"/logs/?range=7d&ip={busiest_ip.client_ip}&model=gpt-4o",
        ),
        (
            page,
            "  its totals alone (/logs/totals/)",
            f"/logs/totals/?range=7d&ip={busiest_ip.client_ip}&model=gpt-4o",
        ),
        (
            page,
            "filter: IP + model (30d)",
            f"/logs/?range=30d&ip={busiest_ip.client_ip}&model=gpt-4o",
        ),
        (
            page,
            "filter: IP + token + model + ok (30d)",
            f"/logs/?range=30d&ip={busiest_ip.client_ip}&token={token.pk}&model=gpt-4o&status=ok",
        ),
        (
            page,
            "filter: IP + status error (custom 7 days)",
            f"/logs/?range=custom&ip={busiest_ip.client_ip}&status=error&start="
            + _days_ago(9)
            + "&end="
            + _days_ago(2),
        ),
        (page, "htmx results fragment (30d)", "/logs/?range=30d&htmx=1"),
        (page, "API /api/v1/logs (30d)", "/api/v1/logs?range=30d"),
        (page, "console home", "/"),
        (chart, "chart: RPM/TPM last hour", "/logs/charts/usage-per-minute.json?window=hour"),
        (chart, "chart: RPM/TPM last day", "/logs/charts/usage-per-minute.json?window=day"),
        (chart, "chart: spend by model, 7 days", "/logs/charts/by-model.json?days=7"),
        (chart, "chart: spend by model, 30 days", "/logs/charts/by-model.json?days=30"),
        (chart, "chart: spend by model, 90 days", "/logs/charts/by-model.json?days=90"),
        (
            chart,
            "chart: requests by model, 90 days",
            "/logs/charts/by-model.json?days=90&measure=requests",
        ),
        (chart, "chart: spend by token, 90 days", "/logs/charts/by-token.json?days=90"),
        (chart, "chart: home, 7 days", "/logs/charts/home.json"),
    ]


def _days_ago(days: int) -> str:
    from datetime import timedelta

    from django.utils import timezone

    return (timezone.now() - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_pages(runs: int, warmup: int, only: list[str]) -> None:
    user, client = _setup()
    from logs.models import RequestLog

    rows = RequestLog.objects.filter(user=user).count()
    total = RequestLog.objects.count()
    print(f"rows: {total:,} in all, {rows:,} of {BUSY}\n")
    print("| kind | what | p50 ms | p95 ms | max ms | target |")
    print("|---|---|---|---|---|---|")
    for kind, name, url in _scenarios(user):
        if only and not any(part in name for part in only):
            continue
        headers = {"HTTP_HX_REQUEST": "true"} if "htmx=1" in url else {}
        url = url.replace("&htmx=1", "")
        for _ in range(warmup):
            response = client.get(url, **headers)
            assert response.status_code == 200, (url, response.status_code)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get(url, **headers)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        target = 50 if kind == "page" else 100
        p95 = _percentile(times, 0.95)
        mark = "met" if p95 <= target else "**missed**"
        print(
            f"| {kind} | {name} | {statistics.median(times):.1f} | {p95:.1f} | "
            f"{max(times):.1f} | ≤ {target} ({mark}) |"
        )


def run_csv(rows: int) -> None:
    """Stream the CSV of the busy user's newest `rows` rows; print time, lines and RSS."""
    user, client = _setup()
    from datetime import timedelta

    from django.utils import timezone

    from logs.models import RequestLog

    start = (
        RequestLog.objects.filter(user=user)
        .order_by("-created_at", "-id")
        .values_list("created_at", flat=True)[rows - 1]
    )
    query = {
        "range": "custom",
        "start": start.strftime("%Y-%m-%dT%H:%M"),
        "end": (timezone.now() + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"),
    }
    rss_before = _rss_mb()
    samples = []
    started = time.perf_counter()
    response = client.get("/logs/export.csv", query)
    assert response.status_code == 200
    assert response.streaming
    lines = size = 0
    next_sample = 100_000
    for chunk in response.streaming_content:
        lines += chunk.count(b"\n")
        size += len(chunk)
        if lines >= next_sample:
            samples.append((lines, round(_rss_mb(), 1)))
            next_sample += 100_000
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"CSV export: {lines - 1:,} rows, {size / 1e6:.0f} MB in {elapsed:.1f} s")
    print(f"RSS before: {rss_before:.1f} MB; peak RSS: {peak:.1f} MB")
    print(
        "RSS while streaming (rows sent, MB): "
        + ", ".join(f"{n:,}: {mb}" for n, mb in samples[::2])
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--csv", action="store_true", help="also stream a CSV export")
    parser.add_argument("--csv-rows", type=int, default=1_000_000)
    parser.add_argument("--csv-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only the rows whose name contains TEXT (repeatable)",
    )
    arguments = parser.parse_args()
    if arguments.csv_only:
        run_csv(arguments.csv_rows)
        return
    run_pages(arguments.runs, arguments.warmup, arguments.only)
    if arguments.csv:
        print()
        # A child process of its own, so its peak RSS is the export's alone.
        subprocess.run(
            [sys.executable, __file__, "--csv-only", "--csv-rows", str(arguments.csv_rows)],
            check=True,
        )


if __name__ == "__main__":
    main()
