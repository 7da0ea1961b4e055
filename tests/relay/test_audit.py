"""A channel's status changes each leave one audit row: by an admin (the actor), by the
relay after repeated failures and by a successful probe (the system, with a reason)."""

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from relay.models import Channel
from relay.services import channel_create, channel_record_failure, channel_reenable_after_probe
from tests.accounts.helpers import audit_rows_then_roll_back
from tests.factories import StaffFactory

from .test_admin_channels import form_data

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action


def _rows() -> list[tuple]:
    return list(
        AuditEvent.objects.order_by("pk").values_list(
            "action", "actor_id", "user_id", "target_type", "target_id", "target_label", "detail"
        )
    )


@pytest.fixture
def channel(db):
    return channel_create(
        name="upstream-a",
        kind="openai",
        base_url="https://up.example/v1",
        api_key="sk-upstream-secret-0001",
        served_models=["m"],
    )


def test_repeated_failures_disable_once_and_a_probe_enables_once_by_the_system(
    channel, monkeypatch
):
    monkeypatch.setattr("relay.services.CHANNEL_FAILURE_THRESHOLD", 3)

    disabled = [channel_record_failure(channel_id=channel.pk, error="HTTP 503") for _ in range(5)]
    enabled = [channel_reenable_after_probe(channel_id=channel.pk) for _ in range(2)]

    assert (disabled, enabled) == ([False, False, True, False, False], [True, False])
    target = ("relay.channel", channel.pk, "upstream-a")
    assert _rows() == [
        (
            Action.CHANNEL_DISABLED,
            None,
            None,
            *target,
            {
                "status": "auto_disabled",
                "previous": "enabled",
                "reason": "3 failed attempts in a row; the last: HTTP 503",
            },
        ),
        (
            Action.CHANNEL_ENABLED,
            None,
            None,
            *target,
            {
                "status": "enabled",
                "previous": "auto_disabled",
                "reason": "A health probe was answered",
            },
        ),
    ]
    assert "sk-upstream-secret-0001" not in str(_rows())


def test_an_admin_changing_the_status_is_the_actor_and_other_edits_write_nothing(client, channel):
    staff = StaffFactory()
    client.force_login(staff)
    change = reverse("admin:relay_channel_change", args=[channel.pk])
    data = form_data(name="upstream-a", served_models="m")

    client.post(change, data | {"priority": 5})  # no status change
    client.post(change, data | {"weight": 0, "status": "disabled"})  # refused: no change
    assert Channel.objects.get(pk=channel.pk).status == "enabled"
    client.post(change, data | {"status": "disabled"})
    client.post(change, data | {"status": "enabled"})

    target = ("relay.channel", channel.pk, "upstream-a")
    reason = "Changed in the admin"
    assert _rows() == [
        (
            Action.CHANNEL_DISABLED,
            staff.pk,
            None,
            *target,
            {"status": "disabled", "previous": "enabled", "reason": reason},
        ),
        (
            Action.CHANNEL_ENABLED,
            staff.pk,
            None,
            *target,
            {"status": "enabled", "previous": "disabled", "reason": reason},
        ),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_disable_rolled_back_leaves_no_row(channel, monkeypatch):
    monkeypatch.setattr("relay.services.CHANNEL_FAILURE_THRESHOLD", 1)

    def disable():
        assert channel_record_failure(channel_id=channel.pk, error="HTTP 500")

    assert audit_rows_then_roll_back(disable) == 1

    assert Channel.objects.get(pk=channel.pk).status == "enabled"
    assert not AuditEvent.objects.exists()
