"""`ReservePool`: the relay's reservations on its event loop's own connections."""

import asyncio

import pytest
from django.db import connection

from billing.metering import RESERVE_APPLICATION_NAME, ReservePool, UsageRefused
from billing.models import Account, Reservation
from billing.selectors import books_drift
from tests.billing.helpers import books_snapshot, fund, make_token
from tests.factories import UserFactory
from tokens.services import token_set_enabled

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module", autouse=True)
def _no_connection_left(django_db_blocker):
    """The refusals are explained on worker threads, whose connections stay open."""
    yield
    with django_db_blocker.unblock():
        _terminate_other_backends()


def _run(pool: ReservePool, work):
    """Run `work()` on a fresh event loop, then close that loop's connections."""

    async def main():
        try:
            return await work()
        finally:
            await pool.aclose()

    return asyncio.run(main())


def test_concurrent_reservations_on_the_pool_hold_exactly_the_balance():
    # Given an account that can hold exactly 40 requests of 1,237
    user = UserFactory()
    fund(user, 40 * 1_237 + 1_236)
    token, _ = make_token(user, quota=1_000_000)
    pool = ReservePool(4)

    # When 100 reservations arrive at once
    async def burst():
        async def one(number: int) -> str:
            try:
                await pool.reserve(
                    token_id=token.pk, user_id=user.pk, request_id=f"p{number}", amount=1_237
                )
            except UsageRefused as refused:
                return refused.code
            return "held"

        return await asyncio.gather(*(one(number) for number in range(100)))

    outcomes = _run(pool, burst)

    # Then exactly 40 are held and the others are refused with the reason
    assert outcomes.count("held") == 40
    assert outcomes.count("insufficient_quota") == 60
    account = Account.objects.get(pk=user.pk)
    assert account.reserved == 40 * 1_237
    token.refresh_from_db()
    assert token.reserved == 40 * 1_237
    assert Reservation.objects.filter(status=Reservation.Status.OPEN).count() == 40
    assert books_drift() == []


@pytest.mark.parametrize("size", [2, 0])
def test_refusals_on_the_pool_say_why_and_change_nothing(size):
    user = UserFactory()
    fund(user, 100_000)
    token, _ = make_token(user)
    disabled, _ = make_token(user, name="disabled")
    token_set_enabled(token=disabled, is_enabled=False)
    pool = ReservePool(size)

    async def take() -> None:
        await pool.reserve(token_id=token.pk, user_id=user.pk, request_id="taken", amount=1_000)

    async def attempts() -> list[str]:
        codes = []
        for kwargs in (
            {"token_id": token.pk, "request_id": "too-much", "amount": 100_000},
            {"token_id": token.pk, "request_id": "taken", "amount": 1_000},
            {"token_id": disabled.pk, "request_id": "off", "amount": 1_000},
        ):
            try:
                await pool.reserve(user_id=user.pk, **kwargs)
            except UsageRefused as refused:
                codes.append(refused.code)
        return codes

    _run(pool, take)
    before = books_snapshot()
    codes = _run(pool, attempts)

    assert codes == ["insufficient_quota", "duplicate_request", "invalid_api_key"]
    assert books_snapshot() == before
    assert Account.objects.get(pk=user.pk).reserved == 1_000


def test_a_lost_connection_falls_back_and_the_next_reservation_reconnects():
    user = UserFactory()
    fund(user, 100_000)
    token, _ = make_token(user)
    pool = ReservePool(1)

    async def work():
        await pool.reserve(token_id=token.pk, user_id=user.pk, request_id="a", amount=1_000)
        # The server drops the pool's connection (a restart, a network cut)
        await asyncio.to_thread(_terminate_pool_backends)
        await pool.reserve(token_id=token.pk, user_id=user.pk, request_id="b", amount=1_000)
        await pool.reserve(token_id=token.pk, user_id=user.pk, request_id="c", amount=1_000)

    _run(pool, work)

    assert set(Reservation.objects.values_list("request_id", flat=True)) == {"a", "b", "c"}
    assert Account.objects.get(pk=user.pk).reserved == 3_000
    assert books_drift() == []


def _terminate_pool_backends() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s",
                [RESERVE_APPLICATION_NAME],
            )
    finally:
        connection.close()


def _terminate_other_backends() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
    finally:
        connection.close()
