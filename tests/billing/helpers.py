"""Helpers shared by the billing and token tests: fund accounts, snapshot the books."""

import asyncio
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.db import connection

from accounts.models import Token, User
from billing.grants import grant_take
from billing.meter import CreditMeter
from billing.models import Account, LedgerEntry, Reservation
from billing.services import account_credit
from logs.models import RequestLog, RequestLogData
from tokens.services import token_create

LOG = RequestLogData(model="gpt-4o-mini", client_ip="203.0.113.7", token_name="test")


def fund(user: User, amount: int, *, key: str | None = None) -> None:
    """Credit `amount` micro-USD to the user's account."""
    account_credit(
        user_id=user.pk, amount=amount, idempotency_key=key or f"test:{user.pk}:{amount}"
    )


def make_token(user: User, *, quota: int | None = None, name: str = "test") -> tuple[Token, str]:
    return token_create(user=user, name=name, quota_remaining=quota)


_request_numbers = itertools.count(1)


def hold(token: Token, amount: int) -> int:
    """Hold exactly `amount` of the token's account (and quota) in a grant; return its id.

    What a relay process holds while requests are in flight; raises UsageRefused,
    changing nothing, when the account or the token cannot cover it.
    """
    grant_id, _ = grant_take(
        token_id=token.pk, user_id=token.user_id, minimum=amount, desired=amount, lease_seconds=60
    )
    return grant_id


def spend(
    token: Token,
    *,
    cost: int,
    log: RequestLogData = LOG,
    request_id: str | None = None,
    held: int | None = None,
) -> str:
    """Hold, answer and settle one request of `token` through a credit meter, as the
    relay does, and write it to the books at once; return its request id.

    `held` is the request's hold (its most cost; the cost by default): a cost above
    it is charged in full all the same.
    """
    request_id = request_id or f"test-{next(_request_numbers)}-{token.pk}"
    meter = CreditMeter(background=False)
    meter.reserve(
        token_id=token.pk, user_id=token.user_id, request_id=request_id, amount=max(held or cost, 1)
    )
    meter.settle(request_id=request_id, cost=cost, log=log)
    meter.close()
    return request_id


@dataclass(frozen=True)
class Books:
    """Everything a refused operation must leave exactly as it was."""

    accounts: tuple
    tokens: tuple
    ledger: tuple
    reservations: tuple
    logs: int


def books_snapshot() -> Books:
    return Books(
        accounts=tuple(
            Account.objects.order_by("pk").values_list(
                "pk", "balance", "reserved", "used", "request_count", "recharged"
            )
        ),
        tokens=tuple(
            Token.objects.order_by("pk").values_list(
                "pk", "quota_remaining", "reserved", "used", "request_count", "is_enabled"
            )
        ),
        ledger=tuple(LedgerEntry.objects.order_by("pk").values_list("pk", "amount")),
        reservations=tuple(
            Reservation.objects.order_by("pk").values_list("request_id", "amount", "status")
        ),
        logs=RequestLog.objects.count(),
    )


def post_webhook(client, payload: bytes, header: str | None = "sign") -> int:
    """POST a Stripe event to the webhook; `header="sign"` signs it with the test secret."""
    from tests.billing.stripe_fake import sign

    extra = {}
    if header == "sign":
        extra["HTTP_STRIPE_SIGNATURE"] = sign(payload)
    elif header is not None:
        extra["HTTP_STRIPE_SIGNATURE"] = header
    response = client.post(
        "/billing/stripe/webhook/", data=payload, content_type="application/json", **extra
    )
    return response.status_code


DATABASE_THREADS = 24


def close_thread_connections(executor: ThreadPoolExecutor, threads: int) -> None:
    """Run one close on every worker thread (a barrier makes each take exactly one)."""
    barrier = threading.Barrier(threads)

    def close() -> None:
        barrier.wait(timeout=30)
        connection.close()

    for future in [executor.submit(close) for _ in range(threads)]:
        future.result()


def run_with_threads(coroutine_factory, threads: int = DATABASE_THREADS):
    """Run a coroutine on a new loop whose default executor is `threads` real threads."""
    executor = ThreadPoolExecutor(max_workers=threads)
    loop = asyncio.new_event_loop()
    loop.set_default_executor(executor)
    try:
        return loop.run_until_complete(coroutine_factory())
    finally:
        close_thread_connections(executor, threads)
        loop.close()
        executor.shutdown()
