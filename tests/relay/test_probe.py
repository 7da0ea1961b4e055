"""The probe of auto-disabled channels: a real minimal completion through the relay's
upstream client, not a list of models, so a channel whose completions fail stays
disabled; nobody is charged and nothing is logged."""

import time

import pytest

from accounts.models import AuditEvent
from billing.models import Account, LedgerEntry, Reservation
from billing.services import account_credit
from logs.models import RequestLog
from relay.models import Channel
from relay.probe import channels_probe_disabled
from relay.tasks import channel_probe_disabled_task
from tests.factories import UserFactory

from .conftest import MODEL, make_channel

pytestmark = pytest.mark.django_db(transaction=True)


def _disable(channel):
    Channel.objects.filter(pk=channel.pk).update(
        status=Channel.Status.AUTO_DISABLED, consecutive_failures=5
    )


def books():
    return (
        list(Account.objects.values_list("pk", "balance", "reserved", "used", "request_count")),
        LedgerEntry.objects.count(),
        Reservation.objects.count(),
        RequestLog.objects.count(),
    )


@pytest.fixture
def funded_account(transactional_db):
    user = UserFactory()
    account_credit(user_id=user.pk, amount=10_000_000, idempotency_key=f"test:{user.pk}")
    return Account.objects.get(pk=user.pk)


def test_a_channel_whose_models_list_but_completions_fail_stays_disabled(
    catalog_model, fake_upstream, funded_account
):
    # Given an auto-disabled channel that lists its models but fails every completion
    channel = make_channel("half", f"{fake_upstream.url}/models-only/v1")
    _disable(channel)
    before = books()

    # When beat probes the disabled channels
    came_back = channel_probe_disabled_task.delay().get()

    # Then the probe asked for a one-token completion, and the channel stays disabled
    assert came_back == 0
    assert fake_upstream.app.stats.by_scenario == {"models-only": 1}
    assert fake_upstream.app.stats.last_parameters == {"model": MODEL, "max_tokens": 1}
    channel.refresh_from_db()
    assert (channel.status, channel.consecutive_failures) == (Channel.Status.AUTO_DISABLED, 5)
    assert not AuditEvent.objects.filter(target_type="relay.channel").exists()
    assert books() == before


def test_a_channel_whose_completion_is_answered_comes_back_charging_nobody(
    catalog_model, fake_upstream, funded_account
):
    # Given an auto-disabled channel that answers completions again, with a model mapping
    channel = make_channel("back", f"{fake_upstream.url}/v1", model_mapping={MODEL: "up-name"})
    _disable(channel)
    before = books()

    # When it is probed
    came_back = channels_probe_disabled()

    # Then one completion re-enabled it, recorded as before, and the books did not move
    assert came_back == 1
    assert fake_upstream.app.stats.requests == 1
    assert fake_upstream.app.stats.last_model == "up-name"
    channel.refresh_from_db()
    assert (channel.status, channel.consecutive_failures) == (Channel.Status.ENABLED, 0)
    [event] = AuditEvent.objects.filter(target_type="relay.channel", target_id=channel.pk)
    assert (event.action, event.actor_id) == (AuditEvent.Action.CHANNEL_ENABLED, None)
    assert event.detail["reason"] == "A health probe was answered"
    assert books() == before


def test_the_probe_tries_the_next_key_when_the_first_is_refused(catalog_model, fake_upstream):
    fake_upstream.app.key_answers["sk-revoked-0001"] = (401, {})
    channel = make_channel(
        "keys", f"{fake_upstream.url}/v1", api_key="", api_keys=["sk-revoked-0001", "sk-good-0002"]
    )
    _disable(channel)

    assert channels_probe_disabled() == 1

    assert fake_upstream.app.stats.authorizations == {
        "Bearer sk-revoked-0001": 1,
        "Bearer sk-good-0002": 1,
    }
    assert Channel.objects.get(pk=channel.pk).status == Channel.Status.ENABLED


def test_a_channel_whose_every_key_is_refused_stays_disabled(catalog_model, fake_upstream):
    fake_upstream.app.key_answers["sk-revoked-0001"] = (401, {})
    fake_upstream.app.key_answers["sk-limited-0002"] = (429, {"retry-after": "3"})
    channel = make_channel(
        "keys",
        f"{fake_upstream.url}/v1",
        api_key="",
        api_keys=["sk-revoked-0001", "sk-limited-0002"],
    )
    _disable(channel)

    assert channels_probe_disabled() == 0

    assert Channel.objects.get(pk=channel.pk).status == Channel.Status.AUTO_DISABLED


def test_the_probe_sends_the_channels_overrides(catalog_model, fake_upstream):
    channel = make_channel(
        "overridden",
        f"{fake_upstream.url}/v1",
        header_overrides={"X-Team": "a"},
        parameter_overrides={"temperature": 0},
    )
    _disable(channel)

    assert channels_probe_disabled() == 1

    assert fake_upstream.app.stats.last_headers["x-team"] == "a"
    assert fake_upstream.app.stats.last_parameters["temperature"] == 0


def test_disabled_channels_are_probed_together_and_only_auto_disabled_ones(
    catalog_model, fake_upstream
):
    # Given two slow auto-disabled channels, and one an admin disabled
    slow = [make_channel(f"slow-{n}", f"{fake_upstream.url}/delay-300/v1") for n in range(2)]
    for channel in slow:
        _disable(channel)
    by_hand = make_channel("by-hand", f"{fake_upstream.url}/v1")
    Channel.objects.filter(pk=by_hand.pk).update(status=Channel.Status.DISABLED)
    empty = make_channel("serves-nothing", f"{fake_upstream.url}/v1", served_models=[])
    _disable(empty)

    # When they are probed
    started = time.monotonic()
    came_back = channels_probe_disabled()
    elapsed = time.monotonic() - started

    # Then both slow ones came back in about one delay, the others were left alone
    assert came_back == 2
    assert elapsed < 0.6
    assert fake_upstream.app.stats.requests == 2
    assert fake_upstream.app.stats.max_in_flight == 2
    assert Channel.objects.get(pk=by_hand.pk).status == Channel.Status.DISABLED
    assert Channel.objects.get(pk=empty.pk).status == Channel.Status.AUTO_DISABLED
