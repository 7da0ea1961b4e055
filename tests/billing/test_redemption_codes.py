"""Redemption codes: stored as hashes, shown once at minting, redeemed once."""

import base64
import csv
import hashlib
import io
import logging
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import RedemptionCode
from billing.recharge import RechargeError, code_redeem, codes_mint
from tests.billing.helpers import books_snapshot
from tests.billing.recharge_helpers import balance_of
from tests.factories import StaffFactory, UserFactory

USD = 1_000_000
MINT_URL = "admin:billing_redemptioncode_mint"
CHANGELIST_URL = "admin:billing_redemptioncode_changelist"


def _mint(count=1, credit=5 * USD, batch="b1", expires_at=None):
    return codes_mint(
        count=count, credit=credit, batch=batch, expires_at=expires_at, created_by=None
    )


def _mint_in_admin(client, *, count=3, batch="Spring promo"):
    return client.post(
        reverse(MINT_URL),
        {"count": str(count), "credit_usd": "2.50", "batch": batch, "expires_at": ""},
    )


def _codes_on_page(html: str) -> list[str]:
    match = re.search(r'<textarea id="minted-codes"[^>]*>([^<]*)</textarea>', html)
    assert match, "the page shows no codes"
    return match.group(1).split()


def _csv_offered(html: str) -> list[dict[str, str]]:
    match = re.search(r'href="data:text/csv;charset=utf-8;base64,([A-Za-z0-9+/=]+)"', html)
    assert match, "the page offers no CSV"
    return list(csv.DictReader(io.StringIO(base64.b64decode(match.group(1)).decode())))


# --- Minting in the admin -----------------------------------------------------------


def test_minting_shows_the_codes_once_and_the_admin_never_shows_them_again(client, db):
    # Given an admin who mints a batch
    client.force_login(StaffFactory())
    response = _mint_in_admin(client)

    # Then the answer shows the codes, is not cached, and the codes redeem
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    codes = _codes_on_page(html)
    assert len(codes) == 3
    assert "only time they are shown" in html

    # And no later page shows them: the list, a code's page, the mint form, the CSV export
    rows = list(RedemptionCode.objects.order_by("pk"))
    later = [
        client.get(reverse(CHANGELIST_URL)),
        client.get(reverse(CHANGELIST_URL), {"batch": "Spring promo"}),
        client.get(reverse("admin:billing_redemptioncode_change", args=[rows[0].pk])),
        client.get(reverse(MINT_URL)),
        client.post(
            reverse(CHANGELIST_URL),
            {"action": "export_csv", "_selected_action": [row.pk for row in rows]},
        ),
    ]
    for page in later:
        assert page.status_code == 200
        text = page.content.decode()
        for code in codes:
            assert code not in text
        assert rows[0].code_hash not in text
    listing = later[0].content.decode()
    assert f"{codes[0][:4]}-…" in listing
    assert "Unused" in listing
    assert "$2.50" in listing
    export = list(csv.DictReader(io.StringIO(later[-1].content.decode())))
    assert {line["state"] for line in export} == {"Unused"}
    assert {line["code_prefix"] for line in export} == {f"{code[:4]}-…" for code in codes}


def test_the_csv_offered_at_minting_holds_every_code_of_the_batch(client, db):
    client.force_login(StaffFactory())

    response = _mint_in_admin(client, count=4, batch="Conference")

    html = response.content.decode()
    lines = _csv_offered(html)
    assert [line["code"] for line in lines] == _codes_on_page(html)
    assert {(line["batch"], line["credit_usd"]) for line in lines} == {("Conference", "2.500000")}
    assert 'download="redemption-codes-conference.csv"' in html


def test_after_minting_the_list_shows_who_redeemed_which_code(client, user):
    client.force_login(StaffFactory())
    codes = _codes_on_page(_mint_in_admin(client).content.decode())

    code_redeem(user=user, code=codes[0])

    listing = client.get(reverse(CHANGELIST_URL)).content.decode()
    assert user.email in listing
    assert "Redeemed" in listing
    found = client.get(reverse(CHANGELIST_URL), {"q": codes[0].lower()}).content.decode()
    assert "1 result" in found  # a whole code typed into the search box finds its row
    assert codes[0] not in found


def test_minting_needs_its_own_permission(client, db):
    # Given staff who may view and add codes, but not mint them
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_redemptioncode", "add_redemptioncode"])
    )
    client.force_login(staff)

    # When they open the mint page or post to it
    form = client.get(reverse(MINT_URL))
    posted = _mint_in_admin(client)

    # Then both are refused, nothing is minted, and the list offers no mint link
    assert (form.status_code, posted.status_code) == (403, 403)
    assert not RedemptionCode.objects.exists()
    listing = client.get(reverse(CHANGELIST_URL))
    assert listing.status_code == 200
    assert "Mint a batch" not in listing.content.decode()

    # And with the permission they may
    staff.user_permissions.add(Permission.objects.get(codename="mint_redemption_code"))
    assert _mint_in_admin(client).status_code == 201
    assert "Mint a batch" in client.get(reverse(CHANGELIST_URL)).content.decode()


def test_no_plaintext_code_is_in_the_database_the_session_or_the_logs(client, user, caplog):
    # Given codes minted in the admin and one of them redeemed on the console
    client.force_login(StaffFactory())
    with caplog.at_level(logging.DEBUG):
        codes = _codes_on_page(_mint_in_admin(client, count=5).content.decode())
        user_client = Client()
        user_client.force_login(user)
        assert user_client.post(reverse("billing:redeem"), {"code": codes[0]}).status_code == 302
        assert user_client.post(reverse("billing:redeem"), {"code": codes[0]}).status_code == 400

    # Then a dump of every table (sessions and the ledger included) holds none of them
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    with connection.cursor() as cursor:
        cursor.execute("SELECT session_data FROM django_session")
        sessions = " ".join(row[0] for row in cursor.fetchall())
    for code in codes:
        for form in (code, code.replace("-", "")):
            assert form not in dump.getvalue()
            assert form not in caplog.text
        assert code not in sessions
    digest = hashlib.sha256(codes[0].replace("-", "").encode()).hexdigest()
    assert RedemptionCode.objects.filter(code_hash=digest, redeemed_by=user).exists()
    assert "code" not in {field.name for field in RedemptionCode._meta.fields}


# --- Redeeming ------------------------------------------------------------------------


def test_redeeming_looks_the_code_up_by_its_hash_however_it_is_typed(user_client, user):
    minted = _mint(count=3)
    typed = [
        minted[0].code.lower(),
        f"  {minted[1].code.replace('-', '')}  ",
        minted[2].code.replace("-", " "),
    ]

    for code in typed:
        assert user_client.post(reverse("billing:redeem"), {"code": code}).status_code == 302

    assert balance_of(user) == 15 * USD
    assert RedemptionCode.objects.filter(redeemed_by=user).count() == 3


def test_redeeming_a_code_works_once(user_client, user):
    [minted] = _mint()
    assert user_client.post(reverse("billing:redeem"), {"code": minted.code}).status_code == 302
    other = UserFactory()
    before = books_snapshot()

    again = user_client.post(reverse("billing:redeem"), {"code": minted.code})

    assert again.status_code == 400
    assert "already redeemed" in again.content.decode()
    with pytest.raises(RechargeError):
        code_redeem(user=other, code=minted.code)
    assert books_snapshot() == before
    row = RedemptionCode.objects.get()
    assert row.redeemed_by == user
    assert balance_of(user) == 5 * USD
    assert balance_of(other) == 0


def test_unknown_and_expired_codes_are_refused_and_change_nothing(user_client, user):
    [minted] = _mint(expires_at=timezone.now() - timedelta(seconds=1), batch="old")
    before = books_snapshot()

    expired = user_client.post(reverse("billing:redeem"), {"code": minted.code})
    unknown = user_client.post(reverse("billing:redeem"), {"code": "NOPE-NOPE-NOPE-NOPE"})

    assert expired.status_code == 400
    assert "expired" in expired.content.decode()
    assert unknown.status_code == 400
    assert "does not exist" in unknown.content.decode()
    assert books_snapshot() == before
    assert RedemptionCode.objects.get().redeemed_at is None


def test_redeeming_is_limited_per_user_per_hour(user_client, user, monkeypatch):
    monkeypatch.setattr("billing.views.REDEEM_ATTEMPTS_PER_HOUR", 3)
    [minted] = _mint(credit=USD, batch="b")
    for _ in range(3):
        wrong = user_client.post(reverse("billing:redeem"), {"code": "AAAA-BBBB-CCCC-DDDD"})
        assert wrong.status_code == 400
    before = books_snapshot()

    limited = user_client.post(reverse("billing:redeem"), {"code": minted.code})

    assert limited.status_code == 429
    assert "Too many codes" in limited.content.decode()
    assert books_snapshot() == before
    assert RedemptionCode.objects.get().redeemed_at is None


# --- The migrations that hashed the stored codes ---------------------------------------

BEFORE_HASHING = [("billing", "0006_stripeevent_problem")]


def _migrate(target) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


def _migrate_to_latest() -> None:
    """Migrate billing to its newest migration, whichever it is: the models have its columns."""
    executor = MigrationExecutor(connection)
    _migrate(executor.loader.graph.leaf_nodes("billing"))


def _columns() -> set[str]:
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(
            cursor, "billing_redemptioncode"
        )
    return {column.name for column in description}


@pytest.mark.django_db(transaction=True)
def test_migrations_hash_plaintext_codes_drop_them_and_go_back_without_them():
    user = UserFactory()
    try:
        # Given codes stored in plaintext, as before the migrations
        _migrate(BEFORE_HASHING)
        with connection.cursor() as cursor:
            for code, redeemed in (("K7QX-ABCD-EFGH-JKLM", False), ("ZZZZ-YYYY-XXXX-WWWW", True)):
                cursor.execute(
                    "INSERT INTO billing_redemptioncode (code, credit, batch, created_at, "
                    "redeemed_at) VALUES (%s, %s, 'legacy', now(), %s)",
                    [code, 2 * USD, timezone.now() if redeemed else None],
                )

        # When the migrations run
        _migrate_to_latest()

        # Then the plaintext column is gone, and each code has its hash and prefix
        assert "code" not in _columns()
        rows = {row.code_prefix: row for row in RedemptionCode.objects.all()}
        assert rows["K7QX"].code_hash == hashlib.sha256(b"K7QXABCDEFGHJKLM").hexdigest()
        assert str(rows["K7QX"]) == "K7QX-…"
        # And the unused code redeems with what the customer holds; the used one does not
        code_redeem(user=user, code="k7qx-abcd-efgh-jklm")
        with pytest.raises(RechargeError, match="already redeemed"):
            code_redeem(user=user, code="ZZZZ-YYYY-XXXX-WWWW")
        assert balance_of(user) == 2 * USD

        # When they are reversed, the plaintext cannot come back: no code matches any more
        _migrate(BEFORE_HASHING)
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, code FROM billing_redemptioncode ORDER BY id")
            stored = cursor.fetchall()
        assert [code for _pk, code in stored] == [f"unrecoverable:{pk}" for pk, _code in stored]
    finally:
        _migrate_to_latest()
    assert "code" not in _columns()
