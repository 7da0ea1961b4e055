"""Health probes of auto-disabled channels: one small request each, re-enabled on success.

Beat runs the probe every minute, so a channel that recovers is back in rotation
within two minutes (the help pages promise five).
"""

import httpx

from .selectors import ChannelRoute, channel_routes_auto_disabled
from .services import channel_reenable_after_probe


def channel_probe(route: ChannelRoute) -> bool:
    """Return True when the channel answers a request for its model list (or is the mock)."""
    if route.kind == "mock":
        return True
    if route.api_key is None:
        return False
    if route.kind == "anthropic":
        headers = {"x-api-key": route.api_key, "anthropic-version": "2023-06-01"}
    else:
        headers = {"authorization": f"Bearer {route.api_key}"}
    timeout = httpx.Timeout(route.connect_timeout_seconds, read=10.0)
    try:
        response = httpx.get(
            f"{route.base_url}/models", headers=headers, timeout=timeout, trust_env=False
        )
    except httpx.HTTPError:
        return False
    # Any answer but an error of the server, its rate limit or a refused key means the
    # channel is back (some compatible servers have no /models and answer 404).
    return response.status_code < 500 and response.status_code not in (401, 403, 429)


def channels_probe_disabled() -> int:
    """Probe every auto-disabled channel; return how many were re-enabled."""
    return sum(
        1
        for route in channel_routes_auto_disabled()
        if channel_probe(route) and channel_reenable_after_probe(channel_id=route.channel_id)
    )
