"""The relay counts each request, its duration and each failed upstream attempt."""

import httpx
import pytest
from prometheus_client import REGISTRY

from relay.metrics import model_family

from .conftest import MODEL, make_channel

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_requests_failovers_and_refusals_are_counted(
    relay_url, token_key, catalog_model, fake_upstream
):
    # Given a failing preferred channel and a working one
    make_channel("metrics-first", f"{fake_upstream.url}/status-500/v1", priority=10)
    make_channel("metrics-second", f"{fake_upstream.url}/v1", priority=0)
    family = model_family(MODEL)
    answered = value("comet_relay_requests_total", status="200", family=family)
    timed = value("comet_relay_request_duration_seconds_count", family=family)
    failed = value("comet_relay_upstream_errors_total", channel="metrics-first")
    refused = value("comet_relay_requests_total", status="401", family="none")

    # When one request is answered after a failover, and one comes with a bad key
    good = httpx.post(
        f"{relay_url}/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {token_key}"},
        timeout=30,
    )
    bad = httpx.post(
        f"{relay_url}/chat/completions",
        json=CHAT,
        headers={"authorization": "Bearer sk-nope"},
        timeout=30,
    )

    # Then each is counted by its status and model family, and the failed attempt by channel
    assert (good.status_code, bad.status_code) == (200, 401)
    assert value("comet_relay_requests_total", status="200", family=family) == answered + 1
    assert value("comet_relay_request_duration_seconds_count", family=family) == timed + 1
    assert value("comet_relay_upstream_errors_total", channel="metrics-first") == failed + 1
    assert value("comet_relay_requests_total", status="401", family="none") == refused + 1
