"""What the rollup upserts add to a settle: the same settle with and without them.

One thread, one account, one grant, N settled requests per variant each written by
its own `billing.settlement.settle_many` call, alternating blocks so both see the
same load: "with rollups" is the statement as shipped; "without" is the same
statement minus `logs.rollups.SETTLE_CTE` (a measurement only: the books are not
kept for those rows' rollups). Prints settles/s and per-settle ms.

Usage:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/comet_logs_settle \\
    REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python bench/logs/settle_cost.py
"""

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comet.settings.test")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--settles", type=int, default=500, help="per block")
    parser.add_argument("--blocks", type=int, default=6)
    arguments = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.models import User
    from billing import settlement
    from billing.grants import grant_take
    from billing.services import account_credit
    from logs.models import RequestLogData
    from logs.rollups import SETTLE_CTE, SETTLE_SELECT
    from tokens.services import token_create

    user = User.objects.create_user(email=f"settle-{uuid.uuid4().hex[:8]}@bench.example.com")
    account_credit(user_id=user.pk, amount=10**12, idempotency_key=f"bench:{user.pk}")
    token, _ = token_create(user=user, name="bench")
    log = RequestLogData(
        model="gpt-4o-mini",
        client_ip="203.0.113.7",
        token_name="bench",  # noqa: S106 (a token's name, not a secret)
        prompt_tokens=120,
        completion_tokens=40,
        channel_id=1,
    )
    grant_id, _ = grant_take(
        token_id=token.pk, user_id=user.pk, minimum=10**11, desired=10**11, lease_seconds=3600
    )
    with_rollups = settlement._settle_statement()
    without = with_rollups.replace(SETTLE_CTE, "").replace(f", {SETTLE_SELECT}", ", NULL")
    assert without != with_rollups

    def block(sql: str) -> float:
        settlement._settle_statement = lambda: sql
        started = time.perf_counter()
        for _ in range(arguments.settles):
            one = settlement.Settlement(
                grant_id=grant_id, request_id=uuid.uuid4().hex, cost=1_237, log=log
            )
            settlement.settle_many([one], lease_seconds=3600)
        return arguments.settles / (time.perf_counter() - started)

    rates: dict[str, list[float]] = {"with rollups": [], "without rollups": []}
    for index in range(arguments.blocks):
        for name, sql in (("with rollups", with_rollups), ("without rollups", without))[
            :: 1 if index % 2 == 0 else -1
        ]:
            rates[name].append(block(sql))
    print("| variant | settled requests/s, one per statement (median of blocks) | ms each |")
    print("|---|---|---|")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.0f} | {1000 / median:.2f} |")


if __name__ == "__main__":
    main()
