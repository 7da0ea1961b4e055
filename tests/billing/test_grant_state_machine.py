"""A hypothesis state machine over the money operations: the ledger and the credit meter
(the one engine that meters requests), the books checked after each step."""

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from accounts.models import Token
from billing.grants import UsageRefused
from billing.meter import CreditMeter
from billing.models import Account, LedgerEntry
from billing.selectors import books_drift
from billing.services import (
    IdempotencyConflict,
    InsufficientBalance,
    account_credit,
    account_debit,
)
from logs.models import RequestLog
from tests.billing.helpers import LOG, books_snapshot, make_token
from tests.factories import UserFactory

amounts = st.integers(min_value=1, max_value=2_000_000)
key_numbers = st.integers(min_value=0, max_value=5)


class GrantMachine(RuleBasedStateMachine):
    """One account, one token (with or without a quota) and one meter, against a model.

    The model counts what was spent when the meter accepted a settle; the database
    catches up at each `flush`. After every step the books must close (`books_drift`)
    and the database must equal the model minus what is not written yet.
    """

    @initialize(
        quota=st.one_of(st.none(), st.integers(min_value=0, max_value=4_000_000)),
        max_grant=st.integers(min_value=1, max_value=3_000_000),
    )
    def start(self, quota, max_grant):
        self.user = UserFactory()
        self.token, _ = make_token(self.user, quota=quota)
        self.meter = CreditMeter(max_grant=max_grant, max_age_seconds=3600, background=False)
        self.meter.refusal_memory_seconds = 0  # credits between steps must be seen at once
        self.credited = 0
        self.quota = quota
        self.spent = 0  # accepted by the meter
        self.written = 0  # in the database
        self.unwritten: list[int] = []
        self.holds: dict[str, int] = {}
        self.closed: list[str] = []
        self.requests = 0
        self.entries: dict[str, tuple[str, int]] = {}
        self.overrun_seen = False

    def _free(self) -> int:
        free = self.credited - self.spent - sum(self.holds.values())
        if self.quota is not None:
            free = min(free, self.quota - self.spent - sum(self.holds.values()))
        return free

    def _key(self, number: int) -> str:
        # Examples share the database (one transaction per test): keys are per user.
        return f"user{self.user.pk}:key{number}"

    @rule(number=key_numbers, amount=amounts)
    def credit(self, number, amount):
        key = self._key(number)
        previous = self.entries.get(key)
        if previous is not None and previous != ("credit", amount):
            before = books_snapshot()
            with pytest.raises(IdempotencyConflict):
                account_credit(user_id=self.user.pk, amount=amount, idempotency_key=key)
            assert books_snapshot() == before
            return
        account_credit(user_id=self.user.pk, amount=amount, idempotency_key=key)
        if previous is None:
            self.entries[key] = ("credit", amount)
            self.credited += amount

    @rule(number=key_numbers, amount=amounts)
    def debit(self, number, amount):
        key = self._key(number)
        previous = self.entries.get(key)
        self.meter.flush()  # what the meter settled is in the books before money leaves
        self.written = self.spent
        self.unwritten.clear()
        before = books_snapshot()
        if previous is not None and previous != ("debit", amount):
            with pytest.raises(IdempotencyConflict):
                account_debit(user_id=self.user.pk, amount=amount, idempotency_key=key)
            assert books_snapshot() == before
            return
        account = Account.objects.get(pk=self.user.pk)
        if previous is None and amount > account.balance - account.reserved:
            # Money the meter's grants hold is not free: refused, nothing changes.
            with pytest.raises(InsufficientBalance):
                account_debit(user_id=self.user.pk, amount=amount, idempotency_key=key)
            assert books_snapshot() == before
            return
        account_debit(user_id=self.user.pk, amount=amount, idempotency_key=key)
        if previous is None:
            self.entries[key] = ("debit", amount)
            self.credited -= amount

    @rule(amount=amounts)
    def reserve(self, amount):
        request_id = f"u{self.user.pk}-g{self.requests}"
        self.requests += 1
        hold = {"token_id": self.token.pk, "user_id": self.user.pk, "request_id": request_id}
        if amount > self._free():
            # Refused exactly when the money is short: one meter strands nothing.
            with pytest.raises(UsageRefused) as refused:
                self.meter.reserve(**hold, amount=amount)
            assert refused.value.code == "insufficient_quota"
            return
        self.meter.reserve(**hold, amount=amount)
        self.holds[request_id] = amount

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def reserve_a_taken_request_id(self, data):
        request_id = data.draw(st.sampled_from(sorted(self.holds)))
        with pytest.raises(UsageRefused) as refused:
            self.meter.reserve(
                token_id=self.token.pk, user_id=self.user.pk, request_id=request_id, amount=1
            )
        assert refused.value.code == "duplicate_request"

    @precondition(lambda self: self.holds)
    @rule(
        data=st.data(),
        fraction=st.one_of(st.floats(min_value=0, max_value=1), st.sampled_from([1.5, 4, 50])),
    )
    def settle(self, data, fraction):
        request_id = data.draw(st.sampled_from(sorted(self.holds)))
        if fraction > 1 and self.quota is not None:
            fraction = 1  # an overrun on a quota'd token is tested in test_grants
        hold = self.holds.pop(request_id)
        cost = int(hold * fraction)
        # Charged in full: what the hold does not cover comes from the grant, then the balance.
        assert self.meter.settle(request_id=request_id, cost=cost, log=LOG)
        self.overrun_seen = self.overrun_seen or cost > hold
        self.spent += cost
        self.unwritten.append(min(cost, hold))
        self.closed.append(request_id)

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def release(self, data):
        request_id = data.draw(st.sampled_from(sorted(self.holds)))
        self.holds.pop(request_id)
        self.meter.release(request_id=request_id)
        self.closed.append(request_id)

    @precondition(lambda self: self.closed)
    @rule(data=st.data())
    def settle_a_closed_request(self, data):
        request_id = data.draw(st.sampled_from(self.closed))
        assert not self.meter.settle(request_id=request_id, cost=1, log=LOG)

    @rule()
    def flush(self):
        self.meter.flush()
        self.written = self.spent
        self.unwritten.clear()

    @rule()
    def return_all(self):
        self.meter.return_all()
        self.written = self.spent
        self.unwritten.clear()

    @invariant()
    def books_close_and_match_the_model(self):
        if not hasattr(self, "user"):
            return
        if self.meter.pending == 0:
            # The meter writes its queue on its own too: before it asks for more money
            # than is free, it gives back what its other grants hold.
            self.written = self.spent
            self.unwritten.clear()
        account = Account.objects.get(pk=self.user.pk)
        token = Token.objects.get(pk=self.token.pk)
        assert account.balance == self.credited - self.written
        assert account.used == token.used == self.written
        assert account.request_count == RequestLog.objects.filter(user=self.user).count()
        if self.quota is not None:
            assert token.quota_remaining == self.quota - self.written
        # What the grants hold covers every open hold and every unwritten cost.
        held = sum(self.holds.values()) + sum(self.unwritten)
        assert held <= account.reserved
        if not self.overrun_seen:
            assert account.reserved <= account.balance
        if self.quota is not None:
            assert held <= token.reserved <= token.quota_remaining
        assert LedgerEntry.objects.filter(account_id=self.user.pk).count() == len(self.entries)
        assert books_drift(user_ids=[self.user.pk]) == []

    def teardown(self):
        if hasattr(self, "meter"):
            self.meter.close()
            if not self.holds:
                assert Account.objects.get(pk=self.user.pk).reserved == 0


GrantMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.django_db
class TestGrantMachine(GrantMachine.TestCase):
    pass
