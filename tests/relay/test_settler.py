"""The relay's settle batcher: settlements queued while one batch runs go in the next."""

import asyncio

import pytest

import relay.settler
from billing.metering import Settlement, usage_reserve, usage_settle_many
from billing.models import Account, Reservation
from billing.selectors import books_drift
from logs.models import RequestLog
from relay.settler import SettleBatcher
from tests.billing.helpers import LOG, fund, make_token
from tests.factories import UserFactory
from tests.logs.helpers import raw_aggregates, rollup_aggregates

pytestmark = pytest.mark.django_db(transaction=True)


def test_queued_settlements_are_written_in_few_batches_to_the_exact_total(monkeypatch):
    # Given 120 open requests on one account
    user = UserFactory()
    fund(user, 10_000_000)
    token, _ = make_token(user, quota=5_000_000)
    for number in range(120):
        usage_reserve(token_id=token.pk, user_id=user.pk, request_id=f"s{number}", amount=5_000)
    batch_sizes: list[int] = []

    def counted(settlements):
        batch_sizes.append(len(settlements))
        return usage_settle_many(settlements)

    monkeypatch.setattr(relay.settler, "usage_settle_many", counted)
    batcher = SettleBatcher(batch_size=50)

    # When one is handed over, then the rest while it is written, with one repeated
    # and one unknown
    async def hand_over() -> None:
        batcher.submit(Settlement(request_id="s0", cost=1_000, log=LOG))
        await asyncio.sleep(0)  # the first batch is on its database thread now
        for number in range(1, 120):
            batcher.submit(Settlement(request_id=f"s{number}", cost=1_000 + number, log=LOG))
        batcher.submit(Settlement(request_id="s3", cost=9, log=LOG))
        batcher.submit(Settlement(request_id="unknown", cost=9, log=LOG))
        assert batcher.pending > 0
        await batcher.aclose()

    asyncio.run(hand_over())

    # Then they went in batches of at most 50, and each request is charged once
    assert batch_sizes == [1, 50, 50, 21]
    assert batcher.pending == 0
    charged = sum(1_000 + number for number in range(120))
    account = Account.objects.get(pk=user.pk)
    assert (account.balance, account.reserved, account.request_count) == (
        10_000_000 - charged,
        0,
        120,
    )
    token.refresh_from_db()
    assert (token.quota_remaining, token.reserved, token.used) == (5_000_000 - charged, 0, charged)
    assert RequestLog.objects.count() == 120
    assert not Reservation.objects.filter(status=Reservation.Status.OPEN).exists()
    assert rollup_aggregates("minute") == raw_aggregates("minute")
    assert books_drift() == []
