"""Reads of channels, shaped for the relay's routing table."""

from dataclasses import dataclass

from models_catalog.models import PricingGroup

from .crypto import decrypt_secret
from .models import Channel


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


def _route(channel: Channel) -> ChannelRoute:
    mapping = channel.model_mapping if isinstance(channel.model_mapping, dict) else {}
    return ChannelRoute(
        channel_id=channel.pk,
        name=channel.name,
        kind=channel.kind,
        base_url=channel.base_url.rstrip("/"),
        api_key=decrypt_secret(channel.encrypted_api_key),
        served_models=frozenset(str(name) for name in channel.served_models or []),
        model_mapping=tuple((str(k), str(v)) for k, v in mapping.items()),
        pricing_group_ids=frozenset(group.pk for group in channel.pricing_groups.all()),
        priority=channel.priority,
        weight=channel.weight,
        connect_timeout_seconds=float(channel.connect_timeout_seconds),
        read_timeout_seconds=float(channel.read_timeout_seconds),
        consecutive_failures=channel.consecutive_failures,
    )


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
