"""Failover between channels, auto-disable after repeated failures, and the probe."""

import logging
import time

import httpx
import pytest

from relay.models import Channel
from relay.tasks import channel_probe_disabled_task

from .conftest import MODEL, free_port, make_channel, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def _post(relay_url, key, body=CHAT, **kwargs):
    return httpx.post(
        f"{relay_url}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
        **kwargs,
    )


@pytest.mark.parametrize(
    "first_base",
    ["refused", "status-500", "status-429", "hang"],
)
def test_a_failing_first_channel_is_answered_by_the_second(
    first_base, relay_url, token_key, catalog_model, fake_upstream
):
    # Given a preferred channel that refuses, errs, rate-limits or hangs, and a fallback
    first_url = (
        f"http://127.0.0.1:{free_port()}/v1"
        if first_base == "refused"
        else f"{fake_upstream.url}/{first_base}/v1"
    )
    first = make_channel("first", first_url, priority=10, read_timeout_seconds=1)
    second = make_channel("second", f"{fake_upstream.url}/v1", priority=0)

    # When a request comes
    response = _post(relay_url, token_key)

    # Then the second channel answers it, and only its answer is billed
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"]
    assert fake_upstream.app.stats.by_scenario.get("ok") == 1
    [log] = wait_for_logs(1)
    assert log.channel_id == second.pk
    assert log.cost > 0
    deadline = time.monotonic() + 5
    while (
        Channel.objects.get(pk=first.pk).consecutive_failures != 1 and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert Channel.objects.get(pk=first.pk).consecutive_failures == 1
    assert Channel.objects.get(pk=second.pk).consecutive_failures == 0


def test_every_channel_failing_is_a_502_without_charge(
    relay_url, token_key, catalog_model, fake_upstream, funded_user, return_grants
):
    from billing.models import Account

    make_channel("bad-1", f"{fake_upstream.url}/status-500/v1", priority=1)
    make_channel("bad-2", f"{fake_upstream.url}/status-503/v1")
    balance = Account.objects.get(pk=funded_user.pk).balance

    response = _post(relay_url, token_key)

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    [log] = wait_for_logs(1)
    assert (log.status_code, log.cost, log.error_code) == (502, 0, "upstream_error")
    return_grants()
    account = Account.objects.get(pk=funded_user.pk)
    assert (account.balance, account.reserved) == (balance, 0)


def test_a_stream_that_already_sent_bytes_is_not_retried(
    relay_url, token_key, catalog_model, fake_upstream
):
    # Given a preferred channel that breaks its stream after the first chunks
    first = make_channel("breaks", f"{fake_upstream.url}/break-stream/v1", priority=10)
    make_channel("fallback", f"{fake_upstream.url}/v1")

    # When a client streams
    with httpx.stream(
        "POST",
        f"{relay_url}/chat/completions",
        json={**CHAT, "stream": True},
        headers={"authorization": f"Bearer {token_key}"},
        timeout=30,
    ) as response:
        received = b"".join(response.iter_raw())

    # Then it got what the first channel produced, and no second answer was spliced in
    assert response.status_code == 200
    assert received.count(b"data: ") == 2
    assert "ok" not in fake_upstream.app.stats.by_scenario
    [log] = wait_for_logs(1)
    assert log.channel_id == first.pk
    assert log.error_code == "upstream_stream_interrupted"
    assert log.usage_estimated is True
    assert log.completion_tokens == 1  # the role event, then one token of text
    assert log.cost > 0


def test_a_dead_channel_is_disabled_and_comes_back_after_a_probe(
    relay_url, token_key, catalog_model, fake_upstream, monkeypatch
):
    monkeypatch.setattr("relay.services.CHANNEL_FAILURE_THRESHOLD", 3)
    fake_upstream.app.switched_off.add("a")
    dead = make_channel("a", f"{fake_upstream.url}/switch-a/v1", priority=10)
    make_channel("b", f"{fake_upstream.url}/v1")

    # While "a" is down every request is still answered (by "b")…
    for _ in range(3):
        assert _post(relay_url, token_key).status_code == 200
    deadline = time.monotonic() + 5
    while Channel.objects.get(pk=dead.pk).status != Channel.Status.AUTO_DISABLED:
        assert time.monotonic() < deadline, "the channel was not disabled"
        time.sleep(0.02)
    # …and once disabled, "a" gets no more traffic.
    time.sleep(1.1)  # Other processes would see the change within the routing table's refresh.
    assert _post(relay_url, token_key).status_code == 200
    assert fake_upstream.app.stats.by_scenario["switch-a"] == 3

    # A probe while it is still down leaves it disabled
    assert channel_probe_disabled_task.delay().get() == 0
    assert Channel.objects.get(pk=dead.pk).status == Channel.Status.AUTO_DISABLED

    # When it recovers, the next probe puts it back in rotation
    fake_upstream.app.switched_off.clear()
    assert channel_probe_disabled_task.delay().get() == 1
    channel = Channel.objects.get(pk=dead.pk)
    assert (channel.status, channel.consecutive_failures) == (Channel.Status.ENABLED, 0)
    time.sleep(1.1)
    assert _post(relay_url, token_key).status_code == 200
    # Three refused requests, two probes, and this answer.
    assert fake_upstream.app.stats.by_scenario["switch-a"] == 6


def test_a_channel_whose_key_no_configured_key_opens_is_skipped_as_failing_and_logged_once(
    relay_url, token_key, catalog_model, fake_upstream, settings, caplog
):
    from relay.routing import routing_table_expire

    from .conftest import UPSTREAM_KEY

    # Given a preferred channel stored under a SECRET_KEY since rotated away (no
    # fallback), and a second channel stored under the current one
    settings.SECRET_KEY = "the-secret-key-before-rotation-0123456789-0123456789"
    locked = make_channel("locked", f"{fake_upstream.url}/v1", priority=10)
    settings.SECRET_KEY = "the-secret-key-after-rotation-0123456789-0123456789-0"
    settings.SECRET_KEY_FALLBACKS = []
    second = make_channel("second", f"{fake_upstream.url}/v1", priority=0)
    routing_table_expire()

    # When two requests come
    with caplog.at_level(logging.ERROR, logger="relay.selectors"):
        first_response = _post(relay_url, token_key)
        routing_table_expire()
        second_response = _post(relay_url, token_key)

    # Then the second channel answers both, the locked one counts as failing, and one
    # log line names the channel without its key
    assert (first_response.status_code, second_response.status_code) == (200, 200)
    logs = wait_for_logs(2)
    assert {log.channel_id for log in logs} == {second.pk}
    deadline = time.monotonic() + 5
    while Channel.objects.get(pk=locked.pk).consecutive_failures < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert Channel.objects.get(pk=locked.pk).last_error == "channel key unreadable"
    lines = [record.getMessage() for record in caplog.records if record.name == "relay.selectors"]
    assert len(lines) == 1
    assert f"Channel {locked.pk} (locked)" in lines[0]
    assert UPSTREAM_KEY not in caplog.text
    assert Channel.objects.get(pk=locked.pk).encrypted_api_key not in caplog.text
