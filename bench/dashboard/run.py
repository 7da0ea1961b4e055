"""The platform dashboard's panels at the rollups of tens of millions of requests.

`--fill` writes, with SQL, what 90 days of a busy platform leave in the tables the
dashboard reads (never raw log rows: the dashboard does not read them): ~1,000
accounts in 5 pricing groups (the default one calling all 200 models, each of the 4
other lines 50 of them), every model served by 3 of 20 channels, one platform day per
(day, model, channel, group): 1,200 a day, one account day per (day, account),
one channel hour per (hour, channel), a ledger of recharges, daily usage settlements,
refunds and lost disputes, and recharge orders (a few dozen needing attention). Then
each panel function (`comet/dashboard.py`) is timed for the 7-, 30- and 90-day
windows, and the whole page through Django's test client for a staff user.

    createdb -h 127.0.0.1 -U postgres comet_dashboard_bench
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/comet_dashboard_bench \
        REDIS_URL=redis://127.0.0.1:6379/13
    DJANGO_SETTINGS_MODULE=comet.settings.test .venv/bin/python manage.py migrate
    .venv/bin/python bench/dashboard/run.py --fill --runs 40
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comet.settings.test")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from comet import dashboard  # noqa: E402
from logs.selectors import platform_since  # noqa: E402

ACCOUNTS = 1000
MODELS = 200
CHANNELS = 20
CHANNELS_PER_MODEL = 3
GROUPS = 5
DAYS = 90
EMAIL = "bench-{}@dashboard.example.com"


def fill() -> None:
    """Replace the dashboard's tables with a generated platform (idempotent)."""
    from models_catalog.models import PricingGroup
    from relay.models import Channel
    from relay.services import channel_create
    from tests.factories import StaffFactory

    started = time.perf_counter()
    groups = [
        PricingGroup.objects.get_or_create(
            name="default" if index == 0 else f"line-{index}",
            defaults={"display_name": f"Line {index}", "is_default": index == 0},
        )[0].pk
        for index in range(GROUPS)
    ]
    channels = list(Channel.objects.order_by("pk").values_list("pk", flat=True)[:CHANNELS])
    for index in range(len(channels), CHANNELS):
        channels.append(
            channel_create(name=f"bench-{index}", kind="mock", served_models=["gpt-4o"]).pk
        )
    if not StaffFactory._meta.model.objects.filter(email="staff@dashboard.example.com").exists():
        StaffFactory(email="staff@dashboard.example.com")
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE logs_platformday, logs_accountday, logs_channelhour, "
            "billing_rechargeorder, billing_orderevent"
        )
        cursor.execute(
            "DELETE FROM billing_ledgerentry WHERE account_id IN "
            "(SELECT id FROM accounts_user WHERE email LIKE 'bench-%%')"
        )
        cursor.execute(
            "INSERT INTO accounts_user (password, is_superuser, email, display_name, is_staff, "
            "is_active, date_joined, pricing_group_id, notify_new_ip, language) "
            "SELECT '!', false, format(%s, n), '', false, true, now(), "
            "(%s::bigint[])[1 + n %% %s], true, '' FROM generate_series(1, %s) n "
            "ON CONFLICT DO NOTHING",
            [EMAIL.replace("{}", "%s"), groups, GROUPS, ACCOUNTS],
        )
        cursor.execute(
            "INSERT INTO billing_account (user_id, balance, reserved, used, request_count, "
            "recharged, created_at, updated_at, frozen_reason, is_frozen) "
            "SELECT id, 0, 0, 0, 0, 0, now(), now(), '', false FROM accounts_user "
            "WHERE email LIKE 'bench-%%' ON CONFLICT DO NOTHING"
        )
        cursor.execute(
            "SELECT array_agg(id ORDER BY id) FROM accounts_user WHERE email LIKE 'bench-%%'"
        )
        users = cursor.fetchone()[0]
        today = "date_trunc('day', now(), 'UTC')"
        # Requests per row fall with the model's rank (a few models carry most traffic).
        cursor.execute(
            "INSERT INTO logs_platformday (bucket, model, channel_id, pricing_group_id, "
            "requests, errors, prompt_tokens, completion_tokens, cost) "
            f"SELECT {today} - d * interval '1 day', 'model-' || m, "
            "(%s::bigint[])[1 + (m + k * 7) %% %s], g, r, r / 40, r * 900, r * 250, "
            "r * (200 + (m %% 17) * 300) "
            "FROM generate_series(0, %s - 1) d, generate_series(1, %s) m, "
            "generate_series(0, %s - 1) k, unnest(%s::bigint[]) WITH ORDINALITY AS grp(g, gi), "
            "LATERAL (SELECT 1 + floor(random() * 1800 / sqrt(m))::bigint AS r) req "
            # The default group calls every model; each other line a quarter of them.
            "WHERE gi = 1 OR (m + gi) %% 4 = 0",
            [channels, CHANNELS, DAYS, MODELS, CHANNELS_PER_MODEL, groups],
        )
        cursor.execute(
            "INSERT INTO logs_accountday (bucket, user_id, requests, errors, prompt_tokens, "
            "completion_tokens, cost) "
            f"SELECT {today} - d * interval '1 day', u, r, r / 40, r * 900, r * 250, r * 1500 "
            "FROM generate_series(0, %s - 1) d, unnest(%s::bigint[]) WITH ORDINALITY AS a(u, i), "
            "LATERAL (SELECT 1 + floor(random() * 4000 / sqrt(i))::bigint AS r) req",
            [DAYS, users],
        )
        cursor.execute(
            "INSERT INTO logs_channelhour (channel_id, bucket, requests, failures) "
            "SELECT c, date_trunc('hour', now(), 'UTC') - h * interval '1 hour', r, r / 60 "
            "FROM generate_series(0, %s * 24 - 1) h, unnest(%s::bigint[]) c, "
            "LATERAL (SELECT 200 + floor(random() * 1500)::bigint AS r) req",
            [DAYS, channels],
        )
        # The ledger: ~20 recharges per account, a usage settlement per account and day,
        # a few hundred refunds and a few dozen lost disputes.
        cursor.execute(
            "INSERT INTO billing_ledgerentry (account_id, kind, amount, balance_after, "
            "idempotency_key, reason, created_at) "
            "SELECT (%s::bigint[])[1 + n %% %s], 'recharge', 10000000 + (n %% 50) * 5000000, 0, "
            "'bench:recharge:' || n, '', now() - random() * interval '90 days' "
            "FROM generate_series(1, %s * 20) n",
            [users, ACCOUNTS, ACCOUNTS],
        )
        cursor.execute(
            "INSERT INTO billing_ledgerentry (account_id, kind, amount, balance_after, "
            "idempotency_key, reason, created_at) "
            "SELECT u, 'usage_settlement', -1000 - d, 0, 'bench:usage:' || u || ':' || d, '', "
            f"{today} - d * interval '1 day' "
            "FROM unnest(%s::bigint[]) u, generate_series(0, %s - 1) d",
            [users, DAYS],
        )
        for kind, count in (("refund", 300), ("dispute", 40)):
            cursor.execute(
                "INSERT INTO billing_ledgerentry (account_id, kind, amount, balance_after, "
                "idempotency_key, reason, created_at) "
                "SELECT (%s::bigint[])[1 + n %% %s], %s, -(5000000 + n * 1000), 0, "
                "'bench:' || %s || ':' || n, '', now() - random() * interval '90 days' "
                "FROM generate_series(1, %s) n",
                [users, ACCOUNTS, kind, kind, count],
            )
        # An order per recharge, credited; and 40 needing attention, 10 disputed.
        cursor.execute(
            "INSERT INTO billing_rechargeorder (number, credit, currency, price_per_usd, "
            "amount_minor, discount_percent, discount_source, status, livemode, "
            "stripe_session_id, stripe_payment_intent_id, stripe_charge_id, "
            "amount_refunded_minor, paid_at, credited_at, created_at, updated_at, "
            "ledger_entry_id, user_id) "
            "SELECT 'B' || id, amount, 'usd', 1, amount / 10000, 0, '', 'credited', false, "
            "'', '', '', 0, created_at, created_at, created_at, created_at, id, account_id "
            "FROM billing_ledgerentry WHERE kind = 'recharge' AND idempotency_key LIKE 'bench:%%'"
        )
        cursor.execute(
            "INSERT INTO billing_rechargeorder (number, credit, currency, price_per_usd, "
            "amount_minor, discount_percent, discount_source, status, livemode, "
            "stripe_session_id, stripe_payment_intent_id, stripe_charge_id, "
            "amount_refunded_minor, paid_at, created_at, updated_at, user_id) "
            "SELECT 'A' || n, 20000000, 'usd', 1, 2000, 0, '', "
            "CASE WHEN n <= 10 THEN 'disputed' WHEN n <= 30 THEN 'needs_attention' "
            "ELSE 'paid' END, false, '', '', '', 0, "
            "CASE WHEN n <= 10 THEN NULL ELSE now() - n * interval '1 hour' END, "
            "now() - n * interval '1 hour', now(), (%s::bigint[])[n] "
            "FROM generate_series(1, 50) n",
            [users],
        )
        cursor.execute("ANALYZE")
        for table in (
            "logs_platformday",
            "logs_accountday",
            "logs_channelhour",
            "billing_ledgerentry",
            "billing_rechargeorder",
        ):
            cursor.execute(
                f"SELECT count(*), pg_size_pretty(pg_total_relation_size('{table}')) FROM {table}"
            )
            rows, size = cursor.fetchone()
            print(f"{table}: {rows:,} rows, {size}")
        cursor.execute("SELECT sum(requests) FROM logs_platformday")
        print(f"requests summed by the platform days: {cursor.fetchone()[0]:,}")
    print(f"filled in {time.perf_counter() - started:.1f} s")


def timed(function, runs: int) -> list[float]:
    for _ in range(3):
        function()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


def report(name: str, times: list[float], *, target: bool = True) -> None:
    ordered = sorted(times)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    verdict = ("met" if p95 <= 100 else "**missed**") if target else "(no target: all panels)"
    print(
        f"| {name} | {statistics.median(ordered):.1f} | {p95:.1f} | {ordered[-1]:.1f} | {verdict} |"
    )


def measure(runs: int) -> None:
    print("| panel | p50 ms | p95 ms | max ms | p95 ≤ 100 ms |")
    print("|---|---|---|---|---|")
    for days in dashboard.WINDOWS:
        since = platform_since(days=days, now=timezone.now())
        panels = {
            "revenue": lambda since=since: dashboard.revenue_panel(since=since),
            "spend by day": lambda since=since: dashboard.days_panel(since=since),
            "spend by model": lambda since=since: dashboard.models_panel(since=since),
            "channels": lambda since=since: dashboard.channels_panel(since=since),
            "spend by group": lambda since=since: dashboard.groups_panel(since=since),
            "top accounts": lambda since=since: dashboard.accounts_panel(since=since),
            "orders needing attention": dashboard.orders_panel,
        }
        for name, panel in panels.items():
            report(f"{name}, {days} days", timed(panel, runs))
    from accounts.models import User

    client = Client()
    client.force_login(User.objects.get(email="staff@dashboard.example.com"))
    for days in dashboard.WINDOWS:
        report(
            f"whole page (test client), {days} days",
            timed(lambda days=days: client.get("/admin/dashboard/", {"days": days}), runs),
            target=False,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fill", action="store_true", help="generate the tables first")
    parser.add_argument("--runs", type=int, default=40)
    arguments = parser.parse_args()
    if arguments.fill:
        fill()
    print(f"load average before timing: {os.getloadavg()[0]:.1f}")
    measure(arguments.runs)
    print(f"load average after timing: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
