"""A hypothesis state machine over the money operations, checking the books after each step."""

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from accounts.models import Token
from billing.metering import (
    Settlement,
    UsageRefused,
    usage_release,
    usage_reserve,
    usage_settle,
    usage_settle_many,
)
from billing.models import Account, LedgerEntry, Reservation
from billing.selectors import books_drift
from billing.services import IdempotencyConflict, InsufficientBalance, account_credit, account_debit
from logs.models import RequestLog
from tests.billing.helpers import LOG, books_snapshot, make_token
from tests.factories import UserFactory

amounts = st.integers(min_value=1, max_value=3_000_000)
key_numbers = st.integers(min_value=0, max_value=5)


class MoneyMachine(RuleBasedStateMachine):
    """A model of one account and a quota'd token, compared with the database."""

    @initialize(quota=st.one_of(st.none(), st.integers(min_value=0, max_value=5_000_000)))
    def start(self, quota):
        self.user = UserFactory()
        self.token, _ = make_token(self.user, quota=quota)
        self.balance = 0
        self.quota = quota
        self.used = 0
        self.open: dict[str, int] = {}
        self.closed: set[str] = set()
        self.entries: dict[str, tuple[str, int]] = {}
        self.requests = 0

    def _key(self, number: int) -> str:
        # Examples share the database (one transaction per test): keys are per user.
        return f"user{self.user.pk}:key{number}"

    def _free(self) -> int:
        return self.balance - sum(self.open.values())

    def _token_free(self) -> int | None:
        return None if self.quota is None else self.quota - sum(self.open.values())

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
            self.balance += amount

    @rule(number=key_numbers, amount=amounts)
    def debit(self, number, amount):
        key = self._key(number)
        previous = self.entries.get(key)
        before = books_snapshot()
        if previous is not None and previous != ("debit", amount):
            with pytest.raises(IdempotencyConflict):
                account_debit(user_id=self.user.pk, amount=amount, idempotency_key=key)
            assert books_snapshot() == before
            return
        if previous is None and amount > self._free():
            with pytest.raises(InsufficientBalance):
                account_debit(user_id=self.user.pk, amount=amount, idempotency_key=key)
            assert books_snapshot() == before
            return
        account_debit(user_id=self.user.pk, amount=amount, idempotency_key=key)
        if previous is None:
            self.entries[key] = ("debit", amount)
            self.balance -= amount

    @rule(amount=amounts)
    def reserve(self, amount):
        request_id = f"u{self.user.pk}-req{self.requests}"
        self.requests += 1
        token_free = self._token_free()
        short = amount > self._free() or (token_free is not None and amount > token_free)
        before = books_snapshot()
        if short:
            with pytest.raises(UsageRefused) as refused:
                usage_reserve(
                    token_id=self.token.pk,
                    user_id=self.user.pk,
                    request_id=request_id,
                    amount=amount,
                )
            assert refused.value.code == "insufficient_quota"
            assert books_snapshot() == before
            return
        usage_reserve(
            token_id=self.token.pk, user_id=self.user.pk, request_id=request_id, amount=amount
        )
        self.open[request_id] = amount

    @precondition(lambda self: self.open)
    @rule(
        data=st.data(),
        fraction=st.one_of(st.floats(min_value=0, max_value=1), st.sampled_from([1.5, 4, 50])),
    )
    def settle(self, data, fraction):
        request_id = data.draw(st.sampled_from(sorted(self.open)))
        hold = self.open.pop(request_id)
        cost = int(hold * fraction)
        usage_settle(request_id=request_id, cost=cost, log=LOG)
        self._book(cost)
        self.closed.add(request_id)
        assert RequestLog.objects.get(request_id=request_id).cost == cost

    def _book(self, cost: int) -> None:
        """Charge `cost` in the model: in full, the balance may go below zero.

        A token's quota goes down by the cost, but never below what the other open
        requests hold: past that it reads as exhausted.
        """
        self.balance -= cost
        self.used += cost
        if self.quota is not None:
            self.quota = max(self.quota - cost, sum(self.open.values()))

    def _charge(self, request_id: str, cost: int) -> int:
        """Close an open request in the model; return what settling `cost` charges."""
        self.open.pop(request_id)
        self._book(cost)
        self.closed.add(request_id)
        return cost

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def settle_many(self, data):
        chosen = data.draw(
            st.lists(st.sampled_from(sorted(self.open)), min_size=1, max_size=6, unique=True)
        )
        fractions = st.one_of(st.floats(min_value=0, max_value=1), st.sampled_from([1.5, 4, 50]))
        costs = {
            request_id: int(self.open[request_id] * data.draw(fractions)) for request_id in chosen
        }
        settled = [
            request_id
            for request_id in sorted(self.closed)
            if RequestLog.objects.filter(request_id=request_id).exists()
        ][:2]
        batch = [
            Settlement(request_id=request_id, cost=costs[request_id], log=LOG)
            for request_id in chosen
        ]
        # Already settled (nothing changes), and a repeat within the batch (the first counts).
        batch += [Settlement(request_id=request_id, cost=1, log=LOG) for request_id in settled]
        batch.append(Settlement(request_id=chosen[0], cost=costs[chosen[0]] + 7, log=LOG))

        assert usage_settle_many(batch) == [None] * len(batch)

        # The batch statement settles those within their hold; those over it follow in order.
        within = [request_id for request_id in chosen if costs[request_id] <= self.open[request_id]]
        over = [request_id for request_id in chosen if request_id not in within]
        charged = {
            request_id: self._charge(request_id, costs[request_id]) for request_id in within + over
        }
        logged = dict(
            RequestLog.objects.filter(request_id__in=chosen).values_list("request_id", "cost")
        )
        assert logged == charged

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def release(self, data):
        request_id = data.draw(st.sampled_from(sorted(self.open)))
        self.open.pop(request_id)
        usage_release(request_id=request_id)
        self.closed.add(request_id)

    @precondition(lambda self: self.closed)
    @rule(data=st.data())
    def repeat_a_closed_request(self, data):
        request_id = data.draw(st.sampled_from(sorted(self.closed)))
        before = books_snapshot()
        if RequestLog.objects.filter(request_id=request_id).exists():
            usage_settle(request_id=request_id, cost=1, log=LOG)
        usage_release(request_id=request_id)
        assert books_snapshot() == before

    @invariant()
    def books_match_the_model(self):
        if not hasattr(self, "user"):
            return
        account = Account.objects.get(pk=self.user.pk)
        token = Token.objects.get(pk=self.token.pk)
        assert account.balance == self.balance
        assert account.reserved == sum(self.open.values())
        assert account.used == self.used
        assert token.used == self.used
        assert token.quota_remaining == self.quota
        assert 0 <= account.reserved <= account.balance
        open_reservations = Reservation.objects.filter(
            account_id=self.user.pk, status=Reservation.Status.OPEN
        )
        assert open_reservations.count() == len(self.open)
        assert LedgerEntry.objects.filter(account_id=self.user.pk).count() == len(self.entries)
        assert books_drift(user_ids=[self.user.pk]) == []


MoneyMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.django_db
class TestMoneyMachine(MoneyMachine.TestCase):
    pass
