"""Reads of channels: the relay's routing table, and each channel's error rate."""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Sum
from django.utils import timezone

from logs.models import ChannelHour
from logs.rollups import bucket_start
from models_catalog.models import PricingGroup

from .crypto import decrypt_secret
from .models import Channel

logger = logging.getLogger(__name__)

# (channel id, stored ciphertext) of the keys found unreadable in this process: the
# routing table is reloaded every second, and each is worth one log line, not one
# a second. A key entered again is a new ciphertext, logged again if unreadable.
_unreadable_logged: set[tuple[int, str]] = set()


@dataclass(frozen=True, slots=True)
class ChannelRoute:
    """What routing needs of one enabled channel (the API key decrypted, in memory only)."""

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

    def upstream_model(self, model_name: str) -> str:
        """Return the name the upstream knows `model_name` by."""
        for public, upstream in self.model_mapping:
            if public == model_name:
                return upstream
        return model_name


def _api_key(channel: Channel) -> str | None:
    """Return the channel's API key, or None (logged once) when no configured key opens it.

    The relay then counts each attempt on the channel as a failure and moves on
    to the next channel, so a rotated SECRET_KEY without its fallback disables
    such channels instead of failing requests.
    """
    api_key = decrypt_secret(channel.encrypted_api_key)
    if api_key is None and (channel.pk, channel.encrypted_api_key) not in _unreadable_logged:
        _unreadable_logged.add((channel.pk, channel.encrypted_api_key))
        logger.error(
            "Channel %s (%s): its API key opens with neither SECRET_KEY nor "
            "SECRET_KEY_FALLBACKS; requests skip it as failing. Put the old key back in "
            "SECRET_KEY_FALLBACKS, or enter the channel's API key again in the admin.",
            channel.pk,
            channel.name,
        )
    return api_key


def _route(channel: Channel) -> ChannelRoute:
    mapping = channel.model_mapping if isinstance(channel.model_mapping, dict) else {}
    return ChannelRoute(
        channel_id=channel.pk,
        name=channel.name,
        kind=channel.kind,
        base_url=channel.base_url.rstrip("/"),
        api_key=_api_key(channel),
        served_models=frozenset(str(name) for name in channel.served_models or []),
        model_mapping=tuple((str(k), str(v)) for k, v in mapping.items()),
        pricing_group_ids=frozenset(group.pk for group in channel.pricing_groups.all()),
        priority=channel.priority,
        weight=channel.weight,
        connect_timeout_seconds=float(channel.connect_timeout_seconds),
        read_timeout_seconds=float(channel.read_timeout_seconds),
        consecutive_failures=channel.consecutive_failures,
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


def channel_routes_auto_disabled() -> list[ChannelRoute]:
    """Return the channels waiting for a successful probe."""
    channels = Channel.objects.filter(status=Channel.Status.AUTO_DISABLED).prefetch_related(
        "pricing_groups"
    )
    return [_route(channel) for channel in channels]


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
