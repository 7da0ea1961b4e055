"""The credit meter and its grants against PostgreSQL: exact books under real threads."""

import asyncio
import dataclasses
import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from billing.grants import GRANT_PREFIX, UsageRefused, grant_release_expired, grant_take
from billing.meter import CreditMeter
from billing.models import Account, Reservation
from billing.selectors import books_drift
from billing.settlement import Settlement, _settle_with_orm, settle_many
from core.clientaddress import UNKNOWN_ADDRESS
from logs.models import RequestLog, RequestLogData
from tests.billing.helpers import LOG, books_snapshot, fund, make_token, run_with_threads
from tests.clock import FakeClock
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _meter(**options) -> CreditMeter:
    # Long grants unless a test asks otherwise: aging is tested on its own.
    options.setdefault("max_age_seconds", 60)
    return CreditMeter(**options)


def _account(user) -> tuple[int, int, int, int]:
    return (
        Account.objects.filter(pk=user.pk)
        .values_list("balance", "reserved", "used", "request_count")
        .get()
    )


def _run_threads(count: int, target) -> None:
    def run(number: int) -> None:
        try:
            target(number)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.slow
def test_200_threads_spend_one_account_to_exactly_92_through_one_meter():
    # Given an account holding $10, one unlimited token and this process's meter
    user = UserFactory()
    fund(user, 10_000_000)
    token, _ = make_token(user)
    meter = _meter()
    counts = [[0, 0] for _ in range(200)]
    codes: set[str] = set()
    lowest_seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            lowest_seen.append(
                Account.objects.filter(pk=user.pk).values_list("balance", "reserved").get()
            )
            stop.wait(0.02)
        connection.close()

    async def worker(number: int) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(100):
            request_id = f"g{number}-{attempt}"
            hold = {"token_id": token.pk, "user_id": user.pk, "request_id": request_id}
            try:
                # As the relay does: in memory when the grant covers it, else on a thread.
                if not meter.try_reserve(**hold, amount=1_237):
                    await loop.run_in_executor(None, partial(meter.reserve, **hold, amount=1_237))
            except UsageRefused as refusal:
                codes.add(refusal.code)
                counts[number][1] += 1
                continue
            assert meter.settle(request_id=request_id, cost=1_237, log=LOG)
            counts[number][0] += 1

    async def all_workers() -> None:
        await asyncio.gather(*(worker(number) for number in range(200)))

    # When 200 workers each try 100 reserve + settle of 1,237 micro-USD
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run_with_threads(all_workers)
        meter.close()
    finally:
        stop.set()
        watcher.join()

    # Then exactly 8,084 succeed, the rest are refused, and 92 micro-USD are left
    assert sum(count[0] for count in counts) == 8_084
    assert sum(count[1] for count in counts) == 20_000 - 8_084
    assert codes == {"insufficient_quota"}
    assert _account(user) == (92, 0, 8_084 * 1_237, 8_084)
    assert RequestLog.objects.filter(user=user).count() == 8_084
    assert not Reservation.objects.filter(status=Reservation.Status.OPEN).exists()
    assert all(balance >= reserved >= 0 for balance, reserved in lowest_seen)
    assert books_drift() == []
    call_command("reconcile")


@pytest.mark.slow
def test_two_meters_never_overspend_and_close_with_exact_books():
    # Given one account and two meters, as two relay processes would have
    user = UserFactory()
    fund(user, 3_000_000)
    token, _ = make_token(user, quota=2_500_000)
    meters = [_meter(), _meter()]
    generator = random.Random(7)
    costs = [[generator.randint(0, 5_000) for _ in range(300)] for _ in range(16)]
    charged = [0] * 16

    def worker(number: int) -> None:
        meter = meters[number % 2]
        for attempt, cost in enumerate(costs[number]):
            request_id = f"m{number}-{attempt}"
            try:
                meter.reserve(
                    token_id=token.pk, user_id=user.pk, request_id=request_id, amount=5_000
                )
            except UsageRefused:
                continue
            if attempt % 10 == 0:
                meter.release(request_id=request_id)
                continue
            meter.settle(request_id=request_id, cost=cost, log=LOG)
            charged[number] += cost

    # When 16 threads spend through both until the token's quota runs out
    _run_threads(16, worker)
    for meter in meters:
        meter.close()

    # Then everything charged is in the books, and no more than the quota was spent
    balance, reserved, used, requests = _account(user)
    assert used == sum(charged) == 3_000_000 - balance
    assert used <= 2_500_000
    assert reserved == 0
    assert requests == RequestLog.objects.filter(user=user).count()
    token.refresh_from_db()
    assert (token.used, token.reserved, token.quota_remaining) == (used, 0, 2_500_000 - used)
    # and nothing is stuck in a grant: once both closed, the rest can be spent to 0
    rest = token.quota_remaining
    last = _meter()
    last.reserve(token_id=token.pk, user_id=user.pk, request_id="rest", amount=rest)
    last.settle(request_id="rest", cost=rest, log=LOG)
    last.close()
    token.refresh_from_db()
    assert (token.used, token.quota_remaining) == (2_500_000, 0)
    assert not Reservation.objects.filter(status=Reservation.Status.OPEN).exists()
    assert books_drift() == []


def test_a_refused_reservation_changes_nothing():
    # Given accounts short of money, frozen, and tokens disabled or expired
    user = UserFactory()
    fund(user, 1_000)
    token, _ = make_token(user)
    frozen = UserFactory()
    fund(frozen, 1_000_000)
    frozen_token, _ = make_token(frozen)
    Account.objects.filter(pk=frozen.pk).update(is_frozen=True)
    rich = UserFactory()
    fund(rich, 1_000_000)
    disabled, _ = make_token(rich, name="off")
    disabled.is_enabled = False
    disabled.save()
    expired, _ = make_token(rich, name="old")
    expired.expires_at = timezone.now() - timedelta(seconds=1)
    expired.save()
    query_only, _ = make_token(rich, quota=0, name="query")
    before = books_snapshot()
    meter = _meter()

    cases = [
        (token, user, 1_001, "insufficient_quota"),
        (frozen_token, frozen, 10, "account_frozen"),
        (disabled, rich, 10, "invalid_api_key"),
        (expired, rich, 10, "invalid_api_key"),
        (query_only, rich, 10, "insufficient_quota"),
        (token, rich, 10, "invalid_api_key"),  # another user's token
    ]
    for refused_token, owner, amount, code in cases:
        with pytest.raises(UsageRefused) as refusal:
            meter.reserve(
                token_id=refused_token.pk, user_id=owner.pk, request_id="r-1", amount=amount
            )
        assert refusal.value.code == code

    # Then balances, quotas, the ledger and the reservations are as they were
    meter.close()
    assert books_snapshot() == before


def test_a_disabled_token_is_refused_once_its_grant_ages():
    # Given a token spending through a meter whose grants last a second (its clock
    # stands still until the test moves it)
    user = UserFactory()
    fund(user, 1_000_000)
    token, _ = make_token(user)
    clock = FakeClock()
    meter = _meter(max_age_seconds=1.0, clock=clock)
    meter.reserve(token_id=token.pk, user_id=user.pk, request_id="a", amount=100)
    meter.settle(request_id="a", cost=100, log=LOG)

    # When the token is disabled
    token.is_enabled = False
    token.save()

    # Then requests are still held by the current grant for its second at most
    meter.reserve(token_id=token.pk, user_id=user.pk, request_id="in-time", amount=100)
    meter.release(request_id="in-time")
    clock.advance(1.0)

    # and once it aged, the next request asks for a new grant and is refused
    with pytest.raises(UsageRefused) as refusal:
        meter.reserve(token_id=token.pk, user_id=user.pk, request_id="b", amount=100)
    assert refusal.value.code == "invalid_api_key"
    meter.close()
    assert _account(user) == (1_000_000 - 100, 0, 100, 1)
    assert books_drift() == []


def test_duplicate_request_ids_and_double_settles_charge_once():
    user = UserFactory()
    fund(user, 1_000_000)
    token, _ = make_token(user)
    meter = _meter()
    meter.reserve(token_id=token.pk, user_id=user.pk, request_id="same", amount=1_000)
    with pytest.raises(UsageRefused) as refusal:
        meter.reserve(token_id=token.pk, user_id=user.pk, request_id="same", amount=1_000)
    assert refusal.value.code == "duplicate_request"

    assert meter.settle(request_id="same", cost=400, log=LOG)
    assert not meter.settle(request_id="same", cost=400, log=LOG)
    meter.release(request_id="same")  # too late: nothing happens
    meter.flush()
    # A settlement written twice (a retried flush) is charged once.
    grant_id = Reservation.objects.get(request_id__startswith=GRANT_PREFIX).pk
    settle_many(
        [Settlement(grant_id=grant_id, request_id="same", cost=400, log=LOG)],
        lease_seconds=60,
    )
    meter.close()
    assert _account(user) == (1_000_000 - 400, 0, 400, 1)
    assert books_drift() == []


def test_a_cost_over_the_hold_takes_from_the_grant_then_from_the_balance_in_full():
    user = UserFactory()
    fund(user, 100_000)
    token, _ = make_token(user)
    meter = _meter(max_grant=2_000)
    meter.reserve(token_id=token.pk, user_id=user.pk, request_id="over", amount=1_000)
    # The grant holds 2,000: the hold of 1,000 and 1,000 unused.
    assert meter.settle(request_id="over", cost=1_500, log=LOG)
    meter.reserve(token_id=token.pk, user_id=user.pk, request_id="way-over", amount=100)
    assert meter.settle(request_id="way-over", cost=10_000, log=LOG)
    meter.close()
    # 1,500, then all of 10,000: the hold of 100, the 400 left in the grant, and
    # 9,500 straight from the free balance. Nothing is forgiven.
    assert _account(user) == (100_000 - 11_500, 0, 11_500, 2)
    assert list(RequestLog.objects.order_by("id").values_list("cost", flat=True)) == [
        1_500,
        10_000,
    ]
    assert books_drift() == []


def test_an_overrun_past_the_balance_leaves_the_account_owing_and_refused(mailoutbox):
    user = UserFactory()
    fund(user, 5_000)
    token, _ = make_token(user)
    meter = _meter(max_grant=2_000)
    meter.reserve(token_id=token.pk, user_id=user.pk, request_id="n-1000", amount=1_000)
    assert meter.settle(request_id="n-1000", cost=1_000_000, log=LOG)
    meter.flush()

    assert _account(user) == (5_000 - 1_000_000, 0, 1_000_000, 1)
    assert RequestLog.objects.get().cost == 1_000_000
    assert books_drift() == []
    with pytest.raises(UsageRefused) as refused:
        meter.reserve(token_id=token.pk, user_id=user.pk, request_id="next", amount=1)
    assert refused.value.code == "insufficient_quota"
    meter.close()
    assert len(mailoutbox) == 1


def test_a_dead_process_loses_only_what_it_had_not_written_and_its_grant_is_freed():
    # Given a meter that wrote one request and had another settled but unwritten
    user = UserFactory()
    fund(user, 1_000_000)
    token, _ = make_token(user)
    meter = _meter(flush_seconds=3600)
    meter.reserve(token_id=token.pk, user_id=user.pk, request_id="written", amount=1_000)
    meter.settle(request_id="written", cost=700, log=LOG)
    meter.flush()
    meter.reserve(token_id=token.pk, user_id=user.pk, request_id="lost", amount=1_000)
    meter.settle(request_id="lost", cost=700, log=LOG)
    meter.reserve(token_id=token.pk, user_id=user.pk, request_id="in-flight", amount=1_000)
    assert Account.objects.get(pk=user.pk).reserved > 0

    # When its process dies (the meter is dropped) and the grant's lease ends
    del meter
    Reservation.objects.filter(request_id__startswith=GRANT_PREFIX).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert grant_release_expired() == 1

    # Then only the written request was charged, nothing stays held, the books agree
    assert _account(user) == (1_000_000 - 700, 0, 700, 1)
    assert books_drift() == []


def test_a_request_written_after_its_grant_was_freed_is_charged_in_full():
    user = UserFactory()
    fund(user, 10_000)
    token, _ = make_token(user)
    grant_id, granted = grant_take(
        token_id=token.pk, user_id=user.pk, minimum=1_000, desired=1_000, lease_seconds=60
    )
    assert granted == 1_000
    Reservation.objects.filter(pk=grant_id).update(expires_at=timezone.now())
    grant_release_expired()

    settle_many(
        [
            Settlement(grant_id=grant_id, request_id="late-1", cost=6_000, log=LOG),
            Settlement(grant_id=grant_id, request_id="late-2", cost=6_000, log=LOG),
        ],
        lease_seconds=60,
    )
    # Both are charged in full: the account owes the 2,000 the balance lacked.
    assert _account(user) == (-2_000, 0, 12_000, 2)
    assert books_drift() == []


def test_grants_take_at_most_a_quarter_of_what_is_free_unless_a_request_needs_more():
    user = UserFactory()
    fund(user, 100_000)
    token, _ = make_token(user, quota=60_000)
    _grant, granted = grant_take(
        token_id=token.pk, user_id=user.pk, minimum=10, desired=1_000_000, lease_seconds=60
    )
    assert granted == 15_000  # a quarter of the token's 60,000
    _grant, granted = grant_take(
        token_id=token.pk, user_id=user.pk, minimum=40_000, desired=10, lease_seconds=60
    )
    assert granted == 40_000
    with pytest.raises(UsageRefused):
        grant_take(token_id=token.pk, user_id=user.pk, minimum=5_001, desired=1, lease_seconds=60)
    token.refresh_from_db()
    assert token.reserved == 55_000
    assert Account.objects.get(pk=user.pk).reserved == 55_000
    assert books_drift() == []


def test_the_orm_path_writes_the_same_books():
    # The embedded default (SQLite) writes grants one request at a time with the ORM.
    user = UserFactory()
    fund(user, 10_000)
    token, _ = make_token(user, quota=8_000)
    grant_id, _granted = grant_take(
        token_id=token.pk, user_id=user.pk, minimum=4_000, desired=4_000, lease_seconds=60
    )
    now = timezone.now()
    _settle_with_orm(
        Settlement(grant_id=grant_id, request_id="orm-1", cost=1_500, log=LOG), now=now
    )
    _settle_with_orm(
        Settlement(grant_id=grant_id, request_id="orm-1", cost=1_500, log=LOG), now=now
    )
    assert Reservation.objects.get(pk=grant_id).amount == 2_500
    assert _account(user) == (8_500, 2_500, 1_500, 1)
    token.refresh_from_db()
    assert (token.used, token.reserved, token.quota_remaining) == (1_500, 2_500, 6_500)
    assert books_drift() == []


def test_the_written_log_row_carries_every_fact_of_the_request():
    user = UserFactory()
    fund(user, 1_000_000)
    token, _ = make_token(user, name="ci")
    facts = RequestLogData(
        model="claude-x",
        client_ip="2001:db8::7",
        status_code=499,
        token_name="ci",
        prompt_tokens=12,
        completion_tokens=34,
        cached_tokens=5,
        model_ratio=Decimal("1.25"),
        completion_ratio=Decimal("4"),
        group_ratio=Decimal("0.9"),
        price_per_call=None,
        error_code="client_disconnected",
        latency_ms=812,
        first_token_ms=None,
        is_stream=True,
        usage_estimated=True,
        created_at=datetime(2026, 12, 1, 8, 30, tzinfo=UTC),
    )
    meter = _meter()
    meter.reserve(token_id=token.pk, user_id=user.pk, request_id="facts", amount=900)
    meter.settle(request_id="facts", cost=777, log=facts)
    meter.close()

    row = RequestLog.objects.get(request_id="facts")
    assert (row.user_id, row.token_id, row.cost, row.channel_id) == (user.pk, token.pk, 777, None)
    for name in (
        "model",
        "status_code",
        "token_name",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "model_ratio",
        "completion_ratio",
        "group_ratio",
        "price_per_call",
        "error_code",
        "latency_ms",
        "first_token_ms",
        "is_stream",
        "usage_estimated",
        "created_at",
    ):
        assert getattr(row, name) == getattr(facts, name), name
    assert str(row.client_ip) == "2001:db8::7"
    token.refresh_from_db()
    assert str(token.last_used_ip) == "2001:db8::7"


def test_requests_are_refused_not_piled_up_when_the_writer_cannot_keep_up():
    # Given a meter whose writer is stuck (its lock held here) with a full queue
    user = UserFactory()
    fund(user, 1_000_000)
    token, _ = make_token(user)
    meter = _meter(max_pending=2)
    meter.backlog_wait_seconds = 0.2
    for number in range(2):
        meter.reserve(token_id=token.pk, user_id=user.pk, request_id=f"q{number}", amount=10)
    with meter._flushing:
        for number in range(2):
            meter.settle(request_id=f"q{number}", cost=10, log=LOG)

        # When another request comes, it waits a moment and is refused with a reason
        with pytest.raises(UsageRefused) as refusal:
            meter.reserve(token_id=token.pk, user_id=user.pk, request_id="q-late", amount=10)
        assert refusal.value.code == "billing_unavailable"
        assert not meter.try_reserve(
            token_id=token.pk, user_id=user.pk, request_id="q-late", amount=10
        )

    # Then once the writer runs again, the queued requests are charged and new ones pass
    meter.flush()
    meter.reserve(token_id=token.pk, user_id=user.pk, request_id="q-next", amount=10)
    meter.settle(request_id="q-next", cost=10, log=LOG)
    meter.close()
    assert _account(user) == (1_000_000 - 30, 0, 30, 3)
    assert books_drift() == []


def test_a_process_gives_back_its_other_grants_before_refusing():
    # Given one meter holding grants for two tokens of one account, one of them retired
    # with a request still in flight
    user = UserFactory()
    fund(user, 100_000)
    first, _ = make_token(user, name="first")
    second, _ = make_token(user, name="second")
    meter = _meter(background=False)
    meter.reserve(token_id=first.pk, user_id=user.pk, request_id="in-flight", amount=1_000)
    meter.return_all()  # retires the first token's grant; its request still holds 1,000
    meter.reserve(token_id=second.pk, user_id=user.pk, request_id="small", amount=10)
    assert Account.objects.get(pk=user.pk).reserved > 1_010

    # When the second token asks for everything the account has free
    meter.reserve(token_id=second.pk, user_id=user.pk, request_id="big", amount=98_990)

    # Then it is admitted: nothing was stranded in the process's other grants
    for request_id, cost in (("in-flight", 1_000), ("small", 10), ("big", 98_990)):
        meter.settle(request_id=request_id, cost=cost, log=LOG)
    meter.close()
    assert _account(user) == (0, 0, 100_000, 3)
    assert books_drift() == []


def test_a_settled_request_whose_row_is_refused_is_still_written_and_charged():
    # Given answered requests whose log rows the database refuses as given: an
    # address inet does not take, a NUL in a text, a count past an integer column
    user = UserFactory()
    fund(user, 1_000_000)
    token, _ = make_token(user)
    meter = _meter(background=False)
    refused_as_given = {
        "zone-id": dataclasses.replace(LOG, client_ip="fe80::1%eth0"),
        "script": dataclasses.replace(LOG, client_ip="<script>"),
        "nul": dataclasses.replace(LOG, token_name="te\x00st", error_code="x" * 500),
        "huge": dataclasses.replace(LOG, completion_tokens=10**12),
    }
    for request_id, log in [("fine", LOG), *refused_as_given.items()]:
        meter.reserve(token_id=token.pk, user_id=user.pk, request_id=request_id, amount=1_000)
        assert meter.settle(request_id=request_id, cost=900, log=log)

    # When the writer writes them
    meter.close()

    # Then every one is logged and charged; only the refused detail was dropped
    logs = {log.request_id: log for log in RequestLog.objects.all()}
    assert set(logs) == {"fine", *refused_as_given}
    assert str(logs["fine"].client_ip) == "203.0.113.7"
    assert str(logs["zone-id"].client_ip) == UNKNOWN_ADDRESS
    assert logs["nul"].token_name == "test"
    assert logs["huge"].completion_tokens == 2**31 - 1
    assert _account(user) == (1_000_000 - 5 * 900, 0, 5 * 900, 5)
    assert meter.pending == 0
    assert books_drift() == []


def test_a_write_that_fails_in_any_way_keeps_the_requests_queued(monkeypatch):
    # Given a settled request, and a writer that fails once with an error that is not
    # the database's (a bug, say)
    user = UserFactory()
    fund(user, 1_000_000)
    token, _ = make_token(user)
    meter = _meter(background=False)
    meter.reserve(token_id=token.pk, user_id=user.pk, request_id="kept", amount=1_000)
    meter.settle(request_id="kept", cost=700, log=LOG)
    real = settle_many
    calls = []

    def failing_once(batch, **options):
        calls.append(len(batch))
        if len(calls) == 1:
            raise TypeError("not a database error")
        return real(batch, **options)

    monkeypatch.setattr("billing.meter.settle_many", failing_once)

    # When the write fails, the request stays queued; the next write charges it once
    with pytest.raises(TypeError):
        meter.flush()
    assert meter.pending == 1
    meter.close()
    assert _account(user) == (1_000_000 - 700, 0, 700, 1)
    assert books_drift() == []
