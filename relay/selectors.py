"""Reads of channels: the relay's routing table, and each channel's error rate."""

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from django.db.models import Sum
from django.utils import timezone

from logs.models import ChannelHour
from logs.rollups import bucket_start
from models_catalog.models import PricingGroup

from .crypto import decrypt_secret
from .models import Channel
from .overrides import headers_to_send, parameters_to_merge

logger = logging.getLogger(__name__)

# (channel id, stored ciphertext) of the keys found unreadable in this process: the
# routing table is reloaded every second, and each is worth one log line, not one
# a second. A key entered again is a new ciphertext, logged again if unreadable.
_unreadable_logged: set[tuple[int, str]] = set()


@dataclass(frozen=True, slots=True)
class ChannelRoute:
    """What routing needs of one enabled channel (its API keys decrypted, in memory only).

    `api_key` is the key an attempt sends: the channel's first, or the one
    `relay.keys` gives the attempt (`with_key`); None when no configured key opens
    the stored keys.
    """

    channel_id: int
    name: str
    kind: str
    base_url: str
    api_key: str | None
    served_models: frozenset[str]
    model_mapping: tuple[tuple[str, str], ...]
    pricing_group_ids: frozenset[int]
    priority: int
    weight: int
    connect_timeout_seconds: float
    read_timeout_seconds: float
    consecutive_failures: int
    # Every key of the channel, in the admin's order (empty: none, or unreadable).
    api_keys: tuple[str, ...] = ()
    # Changes whenever the channel is saved: keys set aside are remembered against it.
    keys_version: str = ""
    header_overrides: tuple[tuple[str, str], ...] = ()
    # Values may be lists or objects: left out of the route's equality and hash.
    parameter_overrides: tuple[tuple[str, object], ...] = field(default=(), compare=False)
    # Azure OpenAI's `api-version` query parameter (empty for the other kinds).
    api_version: str = ""

    def with_key(self, api_key: str) -> "ChannelRoute":
        """Return this route sending `api_key` (another of the channel's keys)."""
        return replace(self, api_key=api_key)

    def upstream_model(self, model_name: str) -> str:
        """Return the name the upstream knows `model_name` by."""
        for public, upstream in self.model_mapping:
            if public == model_name:
                return upstream
        return model_name


def channel_api_keys(channel: Channel) -> tuple[str, ...] | None:
    """Return the channel's API keys, or None (logged once) when no configured key opens them.

    The relay then counts each attempt on the channel as a failure and moves on
    to the next channel, so a rotated SECRET_KEY without its fallback disables
    such channels instead of failing requests.
    """
    secret = decrypt_secret(channel.encrypted_api_key)
    if secret is None and (channel.pk, channel.encrypted_api_key) not in _unreadable_logged:
        _unreadable_logged.add((channel.pk, channel.encrypted_api_key))
        logger.error(
            "Channel %s (%s): its API key opens with neither SECRET_KEY nor "
            "SECRET_KEY_FALLBACKS; requests skip it as failing. Put the old key back in "
            "SECRET_KEY_FALLBACKS, or enter the channel's API key again in the admin.",
            channel.pk,
            channel.name,
        )
    if secret is None:
        return None
    return tuple(line for line in secret.split("\n") if line)


def _route(channel: Channel) -> ChannelRoute:
    mapping = channel.model_mapping if isinstance(channel.model_mapping, dict) else {}
    api_keys = channel_api_keys(channel)
    return ChannelRoute(
        channel_id=channel.pk,
        name=channel.name,
        kind=channel.kind,
        base_url=channel.base_url.rstrip("/"),
        api_key=None if api_keys is None else (api_keys[0] if api_keys else ""),
        served_models=frozenset(str(name) for name in channel.served_models or []),
        model_mapping=tuple((str(k), str(v)) for k, v in mapping.items()),
        pricing_group_ids=frozenset(group.pk for group in channel.pricing_groups.all()),
        priority=channel.priority,
        weight=channel.weight,
        connect_timeout_seconds=float(channel.connect_timeout_seconds),
        read_timeout_seconds=float(channel.read_timeout_seconds),
        consecutive_failures=channel.consecutive_failures,
        api_keys=api_keys or (),
        keys_version=channel.updated_at.isoformat() if channel.updated_at else "",
        header_overrides=headers_to_send(channel.header_overrides),
        parameter_overrides=parameters_to_merge(channel.parameter_overrides),
        api_version=channel.api_version,
    )


def channel_route(channel: Channel) -> ChannelRoute:
    """Return one channel as a route, whatever its status (the admin's test call)."""
    return _route(channel)


def channel_routes_enabled() -> list[ChannelRoute]:
    """Return every enabled channel as a route (two queries)."""
    channels = Channel.objects.filter(status=Channel.Status.ENABLED).prefetch_related(
        "pricing_groups"
    )
    return [_route(channel) for channel in channels]


def channels_auto_disabled() -> list[Channel]:
    """Return the channels waiting for a successful probe (with their pricing groups)."""
    return list(
        Channel.objects.filter(status=Channel.Status.AUTO_DISABLED)
        .prefetch_related("pricing_groups")
        .order_by("pk")
    )


def default_pricing_group_id() -> int | None:
    """Return the id of the default pricing group."""
    return PricingGroup.objects.filter(is_default=True).values_list("pk", flat=True).first()


@dataclass(frozen=True)
class ChannelErrorRate:
    channel_id: int
    name: str
    requests: int
    failures: int

    @property
    def rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def channel_error_rates(*, hours: int = 24, now: datetime | None = None) -> list[ChannelErrorRate]:
    """Return each channel's attempts, failed attempts and error rate over the last hours.

    The counts are `logs`' ChannelHour rollup (written as requests settle); names are
    the channels'. Worst rate first.
    """
    since = bucket_start((now or timezone.now()).astimezone(UTC), "hour") - timedelta(
        hours=hours - 1
    )
    rows = list(
        ChannelHour.objects.filter(bucket__gte=since)
        .values("channel_id")
        .annotate(requests=Sum("requests"), failures=Sum("failures"))
        .order_by("channel_id")
    )
    names = dict(
        Channel.objects.filter(pk__in=[row["channel_id"] for row in rows]).values_list("id", "name")
    )
    rates = [
        ChannelErrorRate(
            row["channel_id"],
            names.get(row["channel_id"], f"Deleted channel #{row['channel_id']}"),
            row["requests"],
            row["failures"],
        )
        for row in rows
    ]
    return sorted(rates, key=lambda rate: -rate.rate)


def channel_names(*, channel_ids: list[int]) -> dict[int, str]:
    """Map each of these channels that exists to its name: one query."""
    return dict(Channel.objects.filter(pk__in=channel_ids).values_list("id", "name"))
