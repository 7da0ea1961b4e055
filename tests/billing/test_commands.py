import pytest
from django.core.management import CommandError, call_command

from accounts.models import Token
from accounts.tokens import key_hash, key_is_well_formed
from billing.models import Account, LedgerEntry
from tests.billing.helpers import books_snapshot

pytestmark = pytest.mark.django_db


def test_credit_records_an_adjustment_once_per_key(user, capsys):
    call_command("credit", user.email, "25.5", reason="Ticket 42", key="ticket-42")
    call_command("credit", user.email.upper(), "25.5", reason="Ticket 42", key="ticket-42")

    entry = LedgerEntry.objects.get()
    assert (entry.kind, entry.amount, entry.reason) == ("adjustment", 25_500_000, "Ticket 42")
    assert Account.objects.get(user=user).balance == 25_500_000
    assert "$25.50" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nobody@example.com", "5"], "No user"),
        (["{email}", "abc"], "not an amount"),
        (["{email}", "0.0000001"], "6 decimals"),
        (["{email}", "-5"], "more than zero"),
        (["{email}", "0"], "more than zero"),
    ],
)
def test_credit_refuses_bad_input_and_changes_nothing(user, arguments, message):
    before = books_snapshot()

    with pytest.raises(CommandError, match=message):
        call_command("credit", *[a.format(email=user.email) for a in arguments], reason="x")

    assert books_snapshot() == before


def test_credit_with_a_reused_key_and_another_amount_is_refused(user):
    call_command("credit", user.email, "1", reason="x", key="k")
    before = books_snapshot()

    with pytest.raises(CommandError, match="already used"):
        call_command("credit", user.email, "2", reason="x", key="k")

    assert books_snapshot() == before


def test_create_token_prints_the_key_alone_on_its_line(user, capsys):
    call_command("create_token", user.email, "deploy", quota="0")

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    key = lines[0]
    assert key_is_well_formed(key)
    token = Token.objects.get()
    assert token.key_hash == key_hash(key)
    assert token.quota_remaining == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nobody@example.com", "x"], "No user"),
        (["{email}", "x", "--quota", "lots"], "not an amount"),
        (["{email}", "x", "--quota", "-1"], "negative"),
        (["{email}", "   "], "1 to 100"),
    ],
)
def test_create_token_refuses_bad_input(user, arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_token", *[a.format(email=user.email) for a in arguments])

    assert not Token.objects.exists()


def test_reconcile_is_clean_then_reports_drift_and_fails(user, capsys):
    call_command("credit", user.email, "3", reason="x")
    call_command("reconcile")
    assert "no drift" in capsys.readouterr().out

    Account.objects.filter(pk=user.pk).update(balance=3_000_001)

    with pytest.raises(CommandError, match="1 drift"):
        call_command("reconcile")
    assert "balance is 3000001, the books say 3000000" in capsys.readouterr().out


def test_reconcile_reports_token_drift(user, capsys):
    call_command("create_token", user.email, "t")
    Token.objects.update(used=5)

    with pytest.raises(CommandError):
        call_command("reconcile")
    assert "used is 5" in capsys.readouterr().out
