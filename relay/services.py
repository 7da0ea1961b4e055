"""Every change to a channel: creation, its API key, its health."""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import AuditEvent, User
from accounts.services import audit_record
from logs.rollups import channel_attempt_record
from models_catalog.models import PricingGroup
from models_catalog.selectors import enabled_model_names

from .crypto import (
    UnreadableSecret,
    encrypt_secret,
    is_encrypted_with_current_key,
    reencrypt_secret,
)
from .models import Channel

logger = logging.getLogger(__name__)

# Consecutive failures after which a channel is disabled until a probe succeeds: one
# or two errors are an upstream's hiccup, five in a row an outage worth routing around.
CHANNEL_FAILURE_THRESHOLD = 5


def channel_create(
    *,
    name: str,
    kind: str,
    base_url: str = "",
    api_key: str = "",
    api_keys: Sequence[str] = (),
    served_models: list[str],
    model_mapping: dict[str, str] | None = None,
    pricing_groups: list[PricingGroup] | None = None,
    priority: int = 0,
    weight: int = 1,
    connect_timeout_seconds: int = 5,
    read_timeout_seconds: int = 300,
    header_overrides: Mapping[str, Any] | None = None,
    parameter_overrides: Mapping[str, Any] | None = None,
    api_version: str = "",
) -> Channel:
    """Create a channel; its API keys are stored encrypted only.

    `api_key` is one key, the shorthand of `api_keys=[api_key]`.
    """
    channel = Channel(
        name=name,
        kind=kind,
        base_url=base_url,
        served_models=list(served_models),
        model_mapping=dict(model_mapping or {}),
        priority=priority,
        weight=weight,
        connect_timeout_seconds=connect_timeout_seconds,
        read_timeout_seconds=read_timeout_seconds,
        header_overrides=dict(header_overrides or {}),
        parameter_overrides=dict(parameter_overrides or {}),
        api_version=api_version,
    )
    keys = [api_key] if api_key else []
    channel_set_api_keys(channel=channel, api_keys=[*keys, *api_keys], save=False)
    with transaction.atomic():
        channel.full_clean()
        channel.save()
        if pricing_groups:
            channel.pricing_groups.set(pricing_groups)
    return channel


def channel_set_api_keys(*, channel: Channel, api_keys: Sequence[str], save: bool = True) -> None:
    """Replace a channel's API keys (used in turn); only each one's last four characters
    stay readable.

    The keys are one secret, one per line (a key has no line break: the admin's form
    takes one per line). Saving the channel also gives back any key the relay set aside
    (`relay.keys`).
    """
    if any(not key or "\n" in key or "\r" in key for key in api_keys):
        raise ValueError("An API key is empty or has a line break.")
    channel.encrypted_api_key = encrypt_secret("\n".join(api_keys)) if api_keys else ""
    channel.api_key_endings = [key[-4:] for key in api_keys]
    if save:
        channel.save(update_fields=["encrypted_api_key", "api_key_endings", "updated_at"])


@dataclass
class ReencryptReport:
    """What `channel_keys_reencrypt` did, by channel count (and the names it could not read)."""

    reencrypted: int = 0
    already_current: int = 0
    without_key: int = 0
    unreadable: list[str] = field(default_factory=list)


def channel_keys_reencrypt() -> ReencryptReport:
    """Encrypt every channel's stored API keys with the current SECRET_KEY; safe to run again.

    A key already readable with SECRET_KEY alone is left as it is; one only a
    fallback opens is rewritten; one nothing opens is counted and named, never
    changed (the admin enters it again). Each channel is its own transaction, its
    row locked, so an admin replacing a key meanwhile is not overwritten.
    """
    report = ReencryptReport()
    for channel_id in Channel.objects.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            channel = (
                Channel.objects.select_for_update()
                .only("pk", "name", "encrypted_api_key")
                .filter(pk=channel_id)
                .first()
            )
            if channel is None:
                continue
            if not channel.encrypted_api_key:
                report.without_key += 1
                continue
            if is_encrypted_with_current_key(channel.encrypted_api_key):
                report.already_current += 1
                continue
            try:
                channel.encrypted_api_key = reencrypt_secret(channel.encrypted_api_key)
            except UnreadableSecret:
                report.unreadable.append(channel.name)
                logger.error(
                    "Channel %s (%s): its API key opens with neither SECRET_KEY nor a "
                    "fallback; enter it again in the admin",
                    channel.pk,
                    channel.name,
                )
                continue
            channel.save(update_fields=["encrypted_api_key", "updated_at"])
            report.reencrypted += 1
    return report


def channel_status_audit(
    *,
    channel: Channel,
    status: str,
    previous: str,
    reason: str,
    actor: User | None = None,
) -> None:
    """Write the audit row of a channel's status change (in the change's transaction).

    `actor` None is the system: the relay after repeated failures, or a probe.
    """
    audit_record(
        action=(
            AuditEvent.Action.CHANNEL_ENABLED
            if status == Channel.Status.ENABLED
            else AuditEvent.Action.CHANNEL_DISABLED
        ),
        target=channel,
        label=channel.name,
        actor=actor,
        detail={"status": status, "previous": previous, "reason": reason},
    )


def channel_record_failure(*, channel_id: int, error: str) -> bool:
    """Count a failed attempt; return True when it disabled the channel.

    The threshold check is one conditional UPDATE, so two processes failing at once
    disable a channel once (and write one audit row).
    """
    now = timezone.now()
    channel_attempt_record(channel_id=channel_id, failed=True, at=now)
    Channel.objects.filter(pk=channel_id).update(
        consecutive_failures=F("consecutive_failures") + 1,
        total_failures=F("total_failures") + 1,
        last_error=error[:200],
        last_failure_at=now,
    )
    threshold = CHANNEL_FAILURE_THRESHOLD
    with transaction.atomic():
        disabled = Channel.objects.filter(
            pk=channel_id, status=Channel.Status.ENABLED, consecutive_failures__gte=threshold
        ).update(status=Channel.Status.AUTO_DISABLED, disabled_at=now, updated_at=now)
        if disabled:
            channel_status_audit(
                channel=Channel.objects.only("pk", "name").get(pk=channel_id),
                status=Channel.Status.AUTO_DISABLED,
                previous=Channel.Status.ENABLED,
                reason=f"{threshold} failed attempts in a row; the last: {error[:200]}",
            )
    return disabled > 0


def channel_record_success(*, channel_id: int) -> None:
    """Reset the consecutive failure count after an answer."""
    Channel.objects.filter(pk=channel_id, consecutive_failures__gt=0).update(consecutive_failures=0)


def channel_reenable_after_probe(*, channel_id: int) -> bool:
    """Re-enable an auto-disabled channel whose probe succeeded; return True if it was."""
    with transaction.atomic():
        enabled = Channel.objects.filter(pk=channel_id, status=Channel.Status.AUTO_DISABLED).update(
            status=Channel.Status.ENABLED,
            consecutive_failures=0,
            disabled_at=None,
            updated_at=timezone.now(),
        )
        if enabled:
            channel_status_audit(
                channel=Channel.objects.only("pk", "name").get(pk=channel_id),
                status=Channel.Status.ENABLED,
                previous=Channel.Status.AUTO_DISABLED,
                reason="A health probe was answered",
            )
    return enabled > 0


MOCK_CHANNEL_NAME = "Built-in mock"


def channel_ensure_mock() -> tuple[Channel, int]:
    """Create or update the mock channel so it serves every enabled catalog model.

    It gets the lowest priority, so any real channel an admin adds for a model wins.
    """
    names = sorted(enabled_model_names())
    channel, created = Channel.objects.get_or_create(
        name=MOCK_CHANNEL_NAME,
        defaults={"kind": Channel.Kind.MOCK, "served_models": names, "priority": -1000},
    )
    if not created and channel.served_models != names:
        channel.served_models = names
        channel.save(update_fields=["served_models", "updated_at"])
    return channel, len(names)
