"""Channels: keys encrypted at rest and never shown again; the demo's mock channel."""

import asyncio

import httpx
import openai
import pytest
from django.core.management import call_command
from django.urls import reverse

from relay import routing
from relay.crypto import decrypt_secret
from relay.models import Channel
from relay.routing import routing_table_expire
from relay.selectors import channel_routes_enabled
from relay.services import MOCK_CHANNEL_NAME, channel_create
from tests.clock import FakeClock
from tests.factories import StaffFactory

from .conftest import MODEL, wait_for_logs

SECRET = "sk-upstream-very-secret-value-9876"


@pytest.mark.django_db
def test_the_api_key_is_stored_encrypted_and_decrypts_for_routing():
    channel = channel_create(
        name="c",
        kind="openai",
        base_url="https://up.example/v1",
        api_key=SECRET,
        served_models=["m"],
    )

    stored = Channel.objects.values_list("encrypted_api_key", flat=True).get(pk=channel.pk)
    assert SECRET not in stored
    assert decrypt_secret(stored) == SECRET
    assert channel.api_key_endings == ["9876"]
    [route] = channel_routes_enabled()
    assert route.api_key == SECRET


@pytest.mark.django_db
def test_an_unreadable_key_is_none_not_an_error():
    assert decrypt_secret("not-a-fernet-token") is None


@pytest.mark.django_db
def test_the_admin_never_shows_the_key_and_keeps_it_when_left_empty(client):
    client.force_login(StaffFactory())
    channel = channel_create(
        name="c",
        kind="openai",
        base_url="https://up.example/v1",
        api_key=SECRET,
        served_models=["m"],
    )
    url = reverse("admin:relay_channel_change", args=[channel.pk])

    page = client.get(url).content.decode()
    listing = client.get(reverse("admin:relay_channel_changelist")).content.decode()

    assert SECRET not in page
    assert SECRET not in listing
    assert "…9876" in listing
    response = client.post(
        url,
        {
            "name": "c",
            "kind": "openai",
            "base_url": "https://up.example/v1",
            "api_keys": "",
            "served_models": "m\nn",
            "priority": 0,
            "weight": 1,
            "connect_timeout_seconds": 5,
            "read_timeout_seconds": 300,
            "status": "enabled",
        },
    )
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.served_models == ["m", "n"]
    assert decrypt_secret(channel.encrypted_api_key) == SECRET


@pytest.mark.django_db
def test_a_channel_other_than_mock_needs_a_base_url():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        channel_create(name="c", kind="openai", served_models=["m"])


@pytest.mark.django_db(transaction=True)
def test_ensure_mock_channel_is_idempotent_and_answers_offline(
    relay_url, token_key, catalog_model, fake_upstream
):
    # Given the catalog, when `make run` ensures the mock channel twice
    call_command("ensure_mock_channel")
    call_command("ensure_mock_channel")

    # Then there is one, serving every enabled model, and a first request just works
    channel = Channel.objects.get(name=MOCK_CHANNEL_NAME)
    assert channel.served_models == [MODEL]
    assert Channel.objects.count() == 1
    client = openai.OpenAI(base_url=relay_url, api_key=token_key, max_retries=0)
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    streamed = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)
    embedding = client.embeddings.create(model=MODEL, input="hi")

    assert answer.choices[0].message.content == text
    assert answer.usage.completion_tokens > 0
    assert len(embedding.data[0].embedding) == 16
    assert fake_upstream.app.stats.requests == 0
    logs = wait_for_logs(3)
    assert all(log.channel_id == channel.pk and log.cost > 0 for log in logs)
    assert not any(log.usage_estimated for log in logs)


@pytest.mark.django_db(transaction=True)
def test_model_name_mapping_sends_the_upstream_name(
    relay_url, token_key, catalog_model, fake_upstream
):
    from .conftest import make_channel

    make_channel("mapped", f"{fake_upstream.url}/v1", model_mapping={MODEL: "upstream-name"})

    response = httpx.post(
        f"{relay_url}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {token_key}"},
        timeout=10,
    )

    assert response.status_code == 200
    assert fake_upstream.app.stats.last_model == "upstream-name"


@pytest.mark.django_db
def test_enabling_an_auto_disabled_channel_in_the_admin_resets_its_failures(client):
    client.force_login(StaffFactory())
    channel = channel_create(
        name="c",
        kind="openai",
        base_url="https://up.example/v1",
        api_key=SECRET,
        served_models=["m"],
    )
    Channel.objects.filter(pk=channel.pk).update(
        status=Channel.Status.AUTO_DISABLED, consecutive_failures=7, total_failures=9
    )

    response = client.post(
        reverse("admin:relay_channel_change", args=[channel.pk]),
        {
            "name": "c",
            "kind": "openai",
            "base_url": "https://up.example/v1",
            "served_models": "m",
            "priority": 0,
            "weight": 1,
            "connect_timeout_seconds": 5,
            "read_timeout_seconds": 300,
            "status": "enabled",
        },
    )

    assert response.status_code == 302
    channel.refresh_from_db()
    assert (channel.status, channel.consecutive_failures) == (Channel.Status.ENABLED, 0)
    assert channel.total_failures == 9  # the history stays


@pytest.mark.django_db(transaction=True)
def test_a_status_change_reaches_the_routing_table_within_its_refresh(monkeypatch):
    # Given a process whose routing table, read on a clock the test moves, has a channel
    clock = FakeClock()
    monkeypatch.setattr(routing, "clock", clock)
    routing_table_expire()
    channel = channel_create(name="a", kind="mock", served_models=["m"])

    def routed() -> list[int]:
        return [route.channel_id for route in asyncio.run(routing.routing_table()).routes]

    try:
        assert routed() == [channel.pk]

        # When the channel is disabled elsewhere (another process, the admin)
        Channel.objects.filter(pk=channel.pk).update(status=Channel.Status.DISABLED)

        # Then this process routes to it until its table is REFRESH_SECONDS old, not after
        clock.advance(routing.REFRESH_SECONDS - 0.001)
        assert routed() == [channel.pk]
        clock.advance(0.001)
        assert routed() == []
    finally:
        routing_table_expire()
