"""Where an Azure OpenAI channel sends a request, and how it is keyed.

Azure OpenAI speaks OpenAI's API (`relay.upstream.azure_outbound` reuses the
OpenAI-compatible channel's request and its Messages translation), but serves each model
at a deployment of a resource: `{base_url}/deployments/{deployment}{path}?api-version=…`,
with `base_url` like https://RESOURCE.openai.azure.com/openai. The deployment is the
channel's name for the model (its model mapping maps public names to deployment names),
and the key goes in an `api-key` header, not `Authorization`.
"""

from urllib.parse import quote, urlencode

from .selectors import ChannelRoute


def deployment_url(route: ChannelRoute, path: str, deployment: str) -> str:
    """Return the URL of `path` (e.g. /chat/completions) at the model's deployment."""
    query = urlencode({"api-version": route.api_version})
    return f"{route.base_url}/deployments/{quote(deployment, safe='')}{path}?{query}"


def key_headers(route: ChannelRoute) -> dict[str, str]:
    """Return the JSON request's headers: the operator's, then the channel's key."""
    assert route.api_key is not None
    return {
        "content-type": "application/json",
        **dict(route.header_overrides),
        "api-key": route.api_key,
    }
