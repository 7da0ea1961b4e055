"""Channel API keys survive a SECRET_KEY rotation: fallbacks read, the command re-encrypts."""

import io
import logging

import pytest
from django.core.management import CommandError, call_command

from relay.crypto import decrypt_secret, encrypt_secret, is_encrypted_with_current_key
from relay.models import Channel
from relay.selectors import channel_routes_enabled
from relay.services import channel_create

OLD_KEY = "old-secret-key-for-rotation-tests-0123456789-abcdefghijklmnop"
NEW_KEY = "new-secret-key-for-rotation-tests-9876543210-qrstuvwxyzabcdef"
UPSTREAM = "sk-upstream-rotation-secret-0042"


def _channel(name: str, api_key: str = UPSTREAM, **options) -> Channel:
    options.setdefault("kind", "openai")
    options.setdefault("base_url", "https://up.example/v1")
    return channel_create(name=name, api_key=api_key, served_models=["m"], **options)


def _stored(channel: Channel) -> str:
    return Channel.objects.values_list("encrypted_api_key", flat=True).get(pk=channel.pk)


def _rotate(settings, *, keep_old_as_fallback: bool) -> None:
    settings.SECRET_KEY = NEW_KEY
    settings.SECRET_KEY_FALLBACKS = [OLD_KEY] if keep_old_as_fallback else []


@pytest.mark.django_db
def test_a_key_encrypted_under_the_old_secret_key_reads_after_rotation_with_a_fallback(settings):
    # Given a channel whose key was stored under the old SECRET_KEY
    settings.SECRET_KEY = OLD_KEY
    channel = _channel("c")

    # When SECRET_KEY is rotated and the old one kept as a fallback
    _rotate(settings, keep_old_as_fallback=True)

    # Then the key still reads, for routing too, and new keys use the new SECRET_KEY
    assert decrypt_secret(_stored(channel)) == UPSTREAM
    [route] = channel_routes_enabled()
    assert route.api_key == UPSTREAM
    assert not is_encrypted_with_current_key(_stored(channel))
    assert is_encrypted_with_current_key(encrypt_secret("new"))


@pytest.mark.django_db
def test_without_the_fallback_an_old_key_is_unreadable_none_not_an_error(settings):
    settings.SECRET_KEY = OLD_KEY
    channel = _channel("c")

    _rotate(settings, keep_old_as_fallback=False)

    assert decrypt_secret(_stored(channel)) is None
    [route] = channel_routes_enabled()
    assert route.api_key is None


@pytest.mark.django_db
def test_a_fallback_only_decrypts_new_secrets_are_encrypted_with_the_current_key(settings):
    _rotate(settings, keep_old_as_fallback=True)
    ciphertext = encrypt_secret(UPSTREAM)

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []

    assert decrypt_secret(ciphertext) is None


@pytest.mark.django_db
def test_the_reencrypt_command_moves_every_key_to_the_current_secret_key_once(settings):
    # Given two channels stored under the old key, one under the new, one without a key
    settings.SECRET_KEY = OLD_KEY
    old_channels = [_channel("old-1"), _channel("old-2", api_key="sk-second-upstream-7777")]
    _rotate(settings, keep_old_as_fallback=True)
    current = _channel("current")
    _channel("mock", api_key="", kind="mock", base_url="")
    current_before = _stored(current)

    # When the command runs
    out = io.StringIO()
    call_command("channel_keys_reencrypt", stdout=out)

    # Then it reports counts, never a key, and the old key is no longer needed
    report = out.getvalue()
    assert "2 re-encrypted" in report
    assert "1 already current" in report
    assert "1 without a key" in report
    assert "0 unreadable" in report
    assert UPSTREAM not in report
    assert "7777" not in report
    settings.SECRET_KEY_FALLBACKS = []
    assert decrypt_secret(_stored(old_channels[0])) == UPSTREAM
    assert decrypt_secret(_stored(old_channels[1])) == "sk-second-upstream-7777"
    assert _stored(current) == current_before  # a current key is not rewritten

    # And running it again changes nothing
    stored = {channel.pk: channel.encrypted_api_key for channel in Channel.objects.all()}
    again = io.StringIO()
    call_command("channel_keys_reencrypt", stdout=again)
    assert "0 re-encrypted" in again.getvalue()
    assert "3 already current" in again.getvalue()
    assert {channel.pk: channel.encrypted_api_key for channel in Channel.objects.all()} == stored


@pytest.mark.django_db
def test_the_reencrypt_command_names_a_channel_no_key_opens_and_fails_without_printing_it(
    settings, caplog
):
    # Given a channel stored under a key that is gone, and one under the old key
    settings.SECRET_KEY = "a-key-nobody-kept-0123456789-0123456789-0123456789"
    lost = _channel("lost")
    lost_before = _stored(lost)
    settings.SECRET_KEY = OLD_KEY
    readable = _channel("readable")
    _rotate(settings, keep_old_as_fallback=True)

    # When the command runs
    out = io.StringIO()
    with caplog.at_level(logging.ERROR), pytest.raises(CommandError) as failed:
        call_command("channel_keys_reencrypt", stdout=out)

    # Then it re-encrypts what it can, names what it cannot, and shows no key anywhere
    assert "1 re-encrypted" in out.getvalue()
    assert "1 unreadable" in out.getvalue()
    assert "lost" in str(failed.value)
    assert "SECRET_KEY_FALLBACKS" in str(failed.value)
    assert _stored(lost) == lost_before
    assert is_encrypted_with_current_key(_stored(readable))
    everything = out.getvalue() + str(failed.value) + caplog.text
    assert UPSTREAM not in everything
    assert lost_before not in everything
