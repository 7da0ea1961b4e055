import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Token
from accounts.tokens import (
    KEY_LENGTH,
    atoken_authenticate,
    key_generate,
    key_hash,
    key_is_well_formed,
    token_authenticate,
)
from tests.factories import UserFactory
from tokens.services import token_create, token_delete, token_set_enabled, token_update

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def _edit(token: Token, **changes) -> Token:
    arguments = {
        "name": token.name,
        "quota_remaining": token.quota_remaining,
        "expires_at": token.expires_at,
        "allowed_models": token.allowed_models,
        "allowed_networks": token.allowed_networks,
        "concurrency_limit": token.concurrency_limit,
        "rpm_limit": token.rpm_limit,
    } | changes
    return token_update(token=token, **arguments)


def test_keys_are_long_random_and_checksummed():
    keys = {key_generate() for _ in range(200)}

    assert len(keys) == 200
    for key in keys:
        assert key.startswith("sk-")
        assert len(key) == KEY_LENGTH
        assert key_is_well_formed(key)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),
        lambda key: key[:10] + ("x" if key[10] != "x" else "y") + key[11:],
        lambda key: key[:-1],
        lambda key: "sk_" + key[3:],
        lambda key: key[:5] + "-" + key[6:],
        lambda key: "",
    ],
)
def test_a_key_with_a_bad_checksum_is_refused_without_any_query(user, mangle):
    _token, key = token_create(user=user, name="ci")
    bad = mangle(key)

    with CaptureQueriesContext(connection) as queries:
        assert token_authenticate(bad) is None

    assert len(queries) == 0
    assert not key_is_well_formed(bad)


def test_only_a_hash_prefix_and_last_four_are_stored(user):
    token, key = token_create(user=user, name="ci")

    stored = Token.objects.filter(pk=token.pk).values().get()

    assert stored["key_hash"] == key_hash(key)
    assert stored["key_prefix"] == key[:7]
    assert stored["key_last4"] == key[-4:]
    assert key not in repr(stored)
    assert token.masked_key == f"sk-…{key[-4:]}"


@pytest.mark.django_db(transaction=True)
def test_a_database_dump_holds_no_plaintext_key():
    user = UserFactory()
    keys = [token_create(user=user, name=f"t{number}")[1] for number in range(3)]
    database = settings.DATABASES["default"]

    dump = subprocess.run(
        [
            "pg_dump",
            "-h",
            database["HOST"] or "127.0.0.1",
            "-p",
            str(database["PORT"] or 5432),
            "-U",
            database["USER"],
            "--data-only",
            database["NAME"],
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout

    assert key_hash(keys[0]) in dump
    for key in keys:
        assert key not in dump
        assert key[3:-6] not in dump


def test_authenticate_returns_what_the_relay_needs(user):
    token, key = token_create(
        user=user,
        name="ci",
        quota_remaining=5_000_000,
        allowed_models=["gpt-4o", "gpt-4o-mini"],
        allowed_networks=["203.0.113.0/24", "2001:db8::1"],
        concurrency_limit=7,
        rpm_limit=60,
    )

    info = token_authenticate(key)

    assert info is not None
    assert (info.id, info.user_id, info.name) == (token.pk, user.pk, "ci")
    assert info.quota_remaining == 5_000_000
    assert info.allowed_models == frozenset({"gpt-4o", "gpt-4o-mini"})
    assert info.allows_ip("203.0.113.9")
    assert not info.allows_ip("198.51.100.1")
    assert info.allows_ip("2001:db8::1")
    assert not info.allows_model("o1")
    assert (info.concurrency_limit, info.rpm_limit, info.pricing_group_id) == (7, 60, None)


def test_authenticate_uses_the_cache_after_the_first_lookup(user):
    _token, key = token_create(user=user, name="ci")
    token_authenticate(key)

    with CaptureQueriesContext(connection) as queries:
        info = token_authenticate(key)

    assert info is not None
    assert len(queries) == 0


def test_unknown_disabled_and_deleted_keys_are_refused(user, django_capture_on_commit_callbacks):
    token, key = token_create(user=user, name="ci")
    assert token_authenticate(key_generate()) is None
    assert token_authenticate(key) is not None

    with django_capture_on_commit_callbacks(execute=True):
        token_set_enabled(token=token, is_enabled=False)
    assert token_authenticate(key) is None

    with django_capture_on_commit_callbacks(execute=True):
        token_set_enabled(token=token, is_enabled=True)
    assert token_authenticate(key) is not None

    with django_capture_on_commit_callbacks(execute=True):
        token_delete(token=token)
    assert token_authenticate(key) is None


def test_an_edit_is_seen_by_the_next_lookup(user, django_capture_on_commit_callbacks):
    token, key = token_create(user=user, name="ci")
    assert token_authenticate(key).allowed_models == frozenset()

    with django_capture_on_commit_callbacks(execute=True):
        _edit(token, allowed_models=["gpt-4o"], quota_remaining=0)

    info = token_authenticate(key)
    assert info.allowed_models == frozenset({"gpt-4o"})
    assert info.quota_remaining == 0


def test_a_user_who_is_deactivated_has_no_working_tokens(user):
    _token, key = token_create(user=user, name="ci")
    user.is_active = False
    user.save()

    assert token_authenticate(key) is None


@pytest.mark.django_db(transaction=True)
def test_the_async_twin_agrees():
    from asgiref.sync import async_to_sync

    user = UserFactory()
    _token, key = token_create(user=user, name="ci")
    bad = key[:-1] + ("A" if key[-1] != "A" else "B")

    info = async_to_sync(atoken_authenticate)(key)

    assert info is not None
    assert info.user_id == user.pk
    assert async_to_sync(atoken_authenticate)(bad) is None


def test_the_per_user_token_limit_is_enforced(user, monkeypatch):
    monkeypatch.setattr("tokens.services.TOKENS_PER_USER", 2)
    token_create(user=user, name="one")
    token_create(user=user, name="two")

    with pytest.raises(ValidationError, match="already have 2 tokens"):
        token_create(user=user, name="three")

    assert Token.objects.filter(user=user).count() == 2
    other = UserFactory()
    token_create(user=other, name="one")


def test_bad_networks_and_negative_quotas_are_refused(user):
    with pytest.raises(ValidationError, match="not an IP address"):
        token_create(user=user, name="ci", allowed_networks=["10.0.0.0/33"])
    with pytest.raises(ValidationError, match="negative"):
        token_create(user=user, name="ci", quota_remaining=-1)
    assert not Token.objects.exists()


SUBPROCESS_WATCHER = """
import sys, time
import django
django.setup()
from accounts.tokens import token_authenticate
key = sys.stdin.readline().strip()
assert token_authenticate(key) is not None
print("ready", flush=True)
deadline = time.time() + 20
while time.time() < deadline:
    if token_authenticate(key) is None:
        print(f"refused {time.time()}", flush=True)
        break
    time.sleep(0.01)
"""


@pytest.mark.django_db(transaction=True)
def test_a_disabled_token_is_refused_by_another_process_within_a_second():
    # Given another process that has the token cached and keeps authenticating with it
    user = UserFactory()
    token, key = token_create(user=user, name="ci")
    database = settings.DATABASES["default"]
    environment = os.environ | {
        "DJANGO_SETTINGS_MODULE": "comet.settings.test",
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
    }
    watcher = subprocess.Popen(
        [sys.executable, "-c", SUBPROCESS_WATCHER],
        cwd=ROOT,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        watcher.stdin.write(key + "\n")
        watcher.stdin.flush()
        assert watcher.stdout.readline().strip() == "ready"

        # When the owner disables it here
        token_set_enabled(token=token, is_enabled=False)
        disabled_at = time.time()

        # Then the other process refuses it within one second
        line = watcher.stdout.readline().strip()
    finally:
        watcher.kill()
        watcher.wait()
    assert line.startswith("refused"), line
    assert float(line.split()[1]) - disabled_at < 1.0


def test_a_changed_pricing_group_or_deactivation_reaches_cached_tokens(
    user, django_capture_on_commit_callbacks
):
    from models_catalog.models import PricingGroup

    _token, key = token_create(user=user, name="ci")
    assert token_authenticate(key).pricing_group_id is None
    group = PricingGroup.objects.create(name="vip", display_name="VIP", group_ratio="0.8")

    with django_capture_on_commit_callbacks(execute=True):
        user.pricing_group = group
        user.save()
    assert token_authenticate(key).pricing_group_id == group.pk

    with django_capture_on_commit_callbacks(execute=True):
        user.is_active = False
        user.save(update_fields=["is_active"])
    assert token_authenticate(key) is None


def test_a_quota_below_what_requests_in_flight_hold_is_refused_and_changes_nothing(user):
    from tests.billing.helpers import books_snapshot, fund, hold

    fund(user, 1_000_000)
    token, _ = token_create(user=user, name="ci", quota_remaining=500_000)
    hold(token, 300_000)
    before = books_snapshot()

    with pytest.raises(ValidationError, match="in flight"):
        _edit(token, quota_remaining=200_000, name="renamed")

    assert books_snapshot() == before
    assert Token.objects.get(pk=token.pk).name == "ci"
