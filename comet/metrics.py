"""`/metrics`: the platform's figures for Prometheus, in its text format.

Request rates, latency and upstream errors come from the relay (`relay/metrics.py`),
the writer's lag and grants from the credit meter (`billing/metrics.py`); what is a
state rather than an event is read when the endpoint is scraped: open grants (one
query) and the Celery queue's length (one Redis round trip). With
PROMETHEUS_MULTIPROC_DIR set, every web process writes its counters to files there and
one scrape of any of them answers for all (prometheus-client's multiprocess mode).

Access: METRICS_TOKEN (`Authorization: Bearer <token>`) and/or
METRICS_ALLOWED_ADDRESSES (the client's address as `core.clientaddress` decided it,
so a proxy in TRUSTED_PROXIES is seen through as everywhere else). Neither set, the
endpoint does not exist (404); from an address not allowed, 404; a missing or wrong
token, 401.
"""

import functools
import hmac
import ipaddress
import logging
from collections.abc import Iterator

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from billing.selectors import open_grants_summary
from core.clientaddress import Network, address_clean

logger = logging.getLogger(__name__)

# Kombu's Redis transport keeps a queue's messages of priority p > 0 under
# "<queue>\x06\x16<p>", for its default priority steps.
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)
# A scrape waits this long for Redis at most.
_REDIS_TIMEOUT_SECONDS = 1.0


@functools.cache
def _allowed_networks(configured: tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for entry in (entry.strip() for entry in configured):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"METRICS_ALLOWED_ADDRESSES: {entry!r} is not an IP address or network."
            ) from None
    return tuple(networks)


def _address_allowed(request: HttpRequest, networks: tuple[Network, ...]) -> bool:
    # REMOTE_ADDR is the client's address as the entry step decided it (comet/asgi.py).
    address = address_clean(str(request.META.get("REMOTE_ADDR", "")))
    if address is None:
        return False
    parsed = ipaddress.ip_address(address)
    return any(parsed.version == network.version and parsed in network for network in networks)


def _token_given(request: HttpRequest, token: str) -> bool:
    scheme, _, given = str(request.META.get("HTTP_AUTHORIZATION", "")).partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), token.encode("utf-8", "replace")
    )


class _ThisProcess(Collector):
    """The default registry's metrics, when every process is scraped on its own."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class _State(Collector):
    """What is read when `/metrics` is scraped: open grants, the Celery queue."""

    def collect(self) -> Iterator[Metric]:
        try:
            count, amount = open_grants_summary()
        except DatabaseError:
            logger.warning("/metrics: the open grants could not be read", exc_info=True)
        else:
            yield GaugeMetricFamily(
                "comet_billing_open_grants", "Credit grants open now, in every process.", count
            )
            yield GaugeMetricFamily(
                "comet_billing_open_grants_micro_usd",
                "Micro-USD the open credit grants hold now.",
                amount,
            )
        lengths = _queue_lengths()
        if lengths is not None:
            family = GaugeMetricFamily(
                "comet_celery_queue_length",
                "Tasks waiting in each Celery queue (the broker's Redis lists).",
                labels=["queue"],
            )
            for queue, length in lengths.items():
                family.add_metric([queue], length)
            yield family


@functools.cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=_REDIS_TIMEOUT_SECONDS, socket_connect_timeout=_REDIS_TIMEOUT_SECONDS
    )


def _queue_lengths() -> dict[str, int] | None:
    """Return each Celery queue's waiting tasks; None without a Redis broker or when it is away."""
    if not settings.REDIS_URL or settings.CELERY_TASK_ALWAYS_EAGER:
        return None
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    keys = [
        queue if step == 0 else f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS
    ]
    try:
        pipeline = _redis(settings.REDIS_URL).pipeline(transaction=False)
        for key in keys:
            pipeline.llen(key)
        return {queue: sum(pipeline.execute())}
    except redis.RedisError:
        logger.warning("/metrics: the Celery queue could not be read", exc_info=True)
        return None


def metrics_registry() -> CollectorRegistry:
    """Return what one scrape reports: every process's metrics, and the state read now."""
    registry = CollectorRegistry(auto_describe=False)
    if settings.PROMETHEUS_MULTIPROC_DIR:
        MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
    else:
        registry.register(_ThisProcess())
    registry.register(_State())
    return registry


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Answer Prometheus's scrape, to whom the settings allow (module docstring)."""
    token = settings.METRICS_TOKEN
    networks = _allowed_networks(tuple(settings.METRICS_ALLOWED_ADDRESSES))
    if not token and not networks:
        raise Http404
    if networks and not _address_allowed(request, networks):
        raise Http404
    if token and not _token_given(request, token):
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)
