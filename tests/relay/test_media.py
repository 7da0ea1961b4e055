# ruff: noqa: E501, RUF003 (a table of hostile requests, one a line; the multiplication sign)
"""Images and audio through the official `openai` SDK: each billed by its model's unit to
the micro-USD, logged without content, never sent to a second channel once it may have
reached one; hostile bodies are clear 4xx that change nothing."""

import base64
import math
import struct
from decimal import Decimal

import httpx
import openai
import pytest

from billing.models import Account
from logs.models import RequestLog
from models_catalog.models import CatalogModel, PricingGroup, Vendor
from models_catalog.services import catalog_entry_create
from relay import mock
from tests.factories import UserFactory
from tokens.services import token_create

from . import test_containers as containers
from .conftest import free_port, make_channel, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

IMAGE_MODEL = "image-test"
SPEECH_MODEL = "speech-test"
HEARING_MODEL = "hearing-test"
PER_CALL_IMAGE_MODEL = "flux-test"
IMAGE_PRICES = {"*": 40_000, "1024x1792": 80_000, "hd": 80_000, "hd 1024x1792": 120_000}
MEDIA_MODELS = [IMAGE_MODEL, SPEECH_MODEL, HEARING_MODEL, PER_CALL_IMAGE_MODEL]


def wav(seconds_times_1000: int, *, sample_rate: int = 16_000) -> bytes:
    return mock.wav_silence(seconds_times_1000, sample_rate=sample_rate)


@pytest.fixture
def media_catalog(catalog_model):
    vendor = Vendor.objects.get(name="testvendor")
    for name, kind, prices in [
        (IMAGE_MODEL, "image", {"price_per_image": IMAGE_PRICES}),
        (SPEECH_MODEL, "audio", {"price_per_million_characters": 15_000_000}),
        (HEARING_MODEL, "audio", {"price_per_minute": 6_000}),
        (PER_CALL_IMAGE_MODEL, "image", {"price_per_call": 40_000}),
    ]:
        catalog_entry_create(entry=CatalogModel(name=name, vendor=vendor, kind=kind, **prices))


@pytest.fixture
def media_channel(fake_upstream, media_catalog):
    return make_channel("media", f"{fake_upstream.url}/v1", served_models=MEDIA_MODELS)


@pytest.fixture
def mock_channel(media_catalog):
    return make_channel("mock", "", kind="mock", served_models=MEDIA_MODELS)


def _client(relay_url, key):
    return openai.OpenAI(base_url=relay_url, api_key=key, max_retries=0)


def _balance(user) -> int:
    return Account.objects.get(pk=user.pk).balance


# --- Images ---------------------------------------------------------------------------


def test_images_generate_is_billed_per_image_of_its_size_and_quality(
    relay_url, token_key, media_channel, fake_upstream, funded_user, return_grants
):
    before = _balance(funded_user)

    answer = _client(relay_url, token_key).images.generate(
        model=IMAGE_MODEL, prompt="a cat on a mat", n=2, quality="hd", size="1024x1792"
    )

    assert len(answer.data) == 2
    assert base64.b64decode(answer.data[0].b64_json) == mock.TINY_PNG
    assert fake_upstream.app.stats.last_fields["n"] == "2"
    [log] = wait_for_logs(1)
    # 2 images at the "hd 1024x1792" price, $0.12 each, group ratio 1.
    assert log.cost == 240_000
    assert (log.unit, log.unit_count, log.unit_price) == ("image", 2, 120_000)
    assert (log.prompt_tokens, log.completion_tokens) == (0, 0)
    assert log.status_code == 200
    return_grants()
    assert _balance(funded_user) == before - 240_000
    assert Account.objects.get(pk=funded_user.pk).reserved == 0


def test_images_are_charged_as_returned_with_the_group_ratio(
    relay_url, media_channel, catalog_model
):
    group = PricingGroup.objects.create(name="enterprise", display_name="E", group_ratio="0.9")
    user = UserFactory(pricing_group=group)
    from billing.services import account_credit

    account_credit(user_id=user.pk, amount=10_000_000, idempotency_key=f"t:{user.pk}")
    _token, key = token_create(user=user, name="e")

    _client(relay_url, key).images.generate(model=IMAGE_MODEL, prompt="x", size="1024x1792")

    [log] = wait_for_logs(1)
    # One 1024x1792 image at $0.08 × 0.9.
    assert log.cost == 72_000
    assert log.group_ratio == Decimal("0.9")


def test_images_through_the_mock_channel(relay_url, token_key, mock_channel):
    answer = _client(relay_url, token_key).images.generate(
        model=IMAGE_MODEL, prompt="x", n=3, response_format="url"
    )

    assert len(answer.data) == 3
    assert answer.data[0].url.startswith("data:image/png;base64,")
    [log] = wait_for_logs(1)
    assert log.cost == 120_000
    assert log.channel_id == mock_channel.pk


def test_a_per_call_image_model_costs_one_call(relay_url, token_key, media_channel):
    _client(relay_url, token_key).images.generate(model=PER_CALL_IMAGE_MODEL, prompt="x")

    [log] = wait_for_logs(1)
    assert (log.cost, log.price_per_call, log.unit) == (40_000, 40_000, "")


def test_images_edit_sends_the_file_and_bills_per_image(
    relay_url, token_key, media_channel, fake_upstream
):
    answer = _client(relay_url, token_key).images.edit(
        model=IMAGE_MODEL,
        image=("cat.png", mock.TINY_PNG, "image/png"),
        prompt="add a hat",
        n=1,
    )

    assert len(answer.data) == 1
    assert fake_upstream.app.stats.last_file_sizes == {"image": len(mock.TINY_PNG)}
    assert fake_upstream.app.stats.last_fields["prompt"] == "add a hat"
    assert fake_upstream.app.stats.last_content_type.startswith("multipart/form-data")
    [log] = wait_for_logs(1)
    assert (log.cost, log.unit_count) == (40_000, 1)


def test_images_edit_through_the_mock_channel(relay_url, token_key, mock_channel):
    answer = _client(relay_url, token_key).images.edit(
        model=IMAGE_MODEL, image=("cat.png", mock.TINY_PNG, "image/png"), prompt="x", n=2
    )

    assert len(answer.data) == 2
    [log] = wait_for_logs(1)
    assert log.cost == 80_000


# --- Speech ---------------------------------------------------------------------------


def test_speech_streams_the_audio_and_bills_per_character(
    relay_url, token_key, media_channel, fake_upstream, funded_user, return_grants
):
    before = _balance(funded_user)
    client = _client(relay_url, token_key)

    with client.audio.speech.with_streaming_response.create(
        model=SPEECH_MODEL, voice="alloy", input="Hello world"
    ) as response:
        audio = b"".join(response.iter_bytes())

    assert audio == mock.wav_silence(mock.SPEECH_MILLISECONDS)
    assert response.headers["content-type"] == "audio/wav"
    [log] = wait_for_logs(1)
    # 11 characters at $15 per 1M: 165 micro-USD.
    assert log.cost == 165
    assert (log.unit, log.unit_count, log.unit_price) == ("character", 11, 15_000_000)
    assert log.is_stream is True
    return_grants()
    assert _balance(funded_user) == before - 165


def test_speech_through_the_mock_channel(relay_url, token_key, mock_channel):
    speech = _client(relay_url, token_key).audio.speech.create(
        model=SPEECH_MODEL, voice="alloy", input="語音" * 50
    )

    assert speech.content[:4] == b"RIFF"
    [log] = wait_for_logs(1)
    # 100 characters (not bytes) at $15 per 1M: 1,500 micro-USD.
    assert (log.cost, log.unit_count) == (1_500, 100)


# --- Transcription and translation ----------------------------------------------------


def test_transcription_is_billed_by_the_seconds_measured_from_the_file(
    relay_url, token_key, media_channel, fake_upstream, funded_user, return_grants
):
    before = _balance(funded_user)
    recording = wav(2_500)

    transcript = _client(relay_url, token_key).audio.transcriptions.create(
        model=HEARING_MODEL, file=("talk.wav", recording, "audio/wav")
    )

    assert transcript.text == mock.TRANSCRIPT
    assert fake_upstream.app.stats.last_file_sizes == {"file": len(recording)}
    assert fake_upstream.app.stats.last_model == HEARING_MODEL
    [log] = wait_for_logs(1)
    # 2.5 s → 3 seconds at $0.006 a minute: 300 micro-USD.
    assert log.cost == 300
    assert (log.unit, log.unit_count, log.unit_price) == ("second", 3, 6_000)
    return_grants()
    assert _balance(funded_user) == before - 300


@pytest.mark.parametrize(
    ("filename", "content_type", "recording"),
    [
        ("talk.m4a", "audio/mp4", containers.m4a()),
        ("talk.m4a", "audio/mp4", containers.fragmented([[960] * 1_531] * 2)),
        ("talk.webm", "audio/webm", containers.webm()),
        (
            "talk.webm",
            "audio/webm",
            containers.webm(duration=None, unknown=True, clusters=[(61_230, [0])]),
        ),
    ],
)
def test_m4a_and_webm_are_billed_by_their_exact_length(
    relay_url,
    token_key,
    mock_channel,
    funded_user,
    return_grants,
    filename,
    content_type,
    recording,
):
    before = _balance(funded_user)

    _client(relay_url, token_key).audio.translations.create(
        model=HEARING_MODEL, file=(filename, recording, content_type)
    )

    [log] = wait_for_logs(1)
    # 61.23–61.25 s → 62 seconds at $0.006 a minute: 6,200 micro-USD.
    assert (log.unit, log.unit_count, log.cost) == ("second", 62, 6_200)
    return_grants()
    assert _balance(funded_user) == before - 6_200


def test_a_damaged_m4a_is_refused_and_costs_nothing(
    relay_url, token_key, mock_channel, funded_user
):
    before = _balance(funded_user)

    with pytest.raises(openai.BadRequestError) as refused:
        _client(relay_url, token_key).audio.transcriptions.create(
            model=HEARING_MODEL, file=("talk.m4a", containers.m4a()[:200], "audio/mp4")
        )

    assert refused.value.code == "unsupported_audio_format"
    assert "truncated or damaged" in refused.value.message
    assert not RequestLog.objects.exists()
    assert _balance(funded_user) == before


def test_translation_and_text_answers_through_the_mock_channel(relay_url, token_key, mock_channel):
    client = _client(relay_url, token_key)

    translation = client.audio.translations.create(
        model=HEARING_MODEL, file=("talk.wav", wav(61_000, sample_rate=8_000), "audio/wav")
    )
    text = client.audio.transcriptions.create(
        model=HEARING_MODEL, file=("talk.wav", wav(1_000), "audio/wav"), response_format="text"
    )

    assert translation.text == mock.TRANSCRIPT
    assert text == mock.TRANSCRIPT
    logs = wait_for_logs(2)
    assert sorted(log.cost for log in logs) == [100, 6_100]


# --- No second channel once the request may have been sent ----------------------------


def test_a_failure_after_sending_is_not_tried_on_another_channel(
    relay_url, token_key, media_catalog, fake_upstream, funded_user, return_grants
):
    before = _balance(funded_user)
    make_channel(
        "fails", f"{fake_upstream.url}/status-500/v1", served_models=MEDIA_MODELS, priority=10
    )
    make_channel("works", f"{fake_upstream.url}/v1", served_models=MEDIA_MODELS)

    with pytest.raises(openai.APIStatusError) as raised:
        _client(relay_url, token_key).images.generate(model=IMAGE_MODEL, prompt="x")

    assert raised.value.status_code == 502
    assert "not sent to another channel" in raised.value.message
    assert fake_upstream.app.stats.by_scenario == {"status-500": 1}
    [log] = wait_for_logs(1)
    assert (log.status_code, log.cost) == (502, 0)
    return_grants()
    assert _balance(funded_user) == before


def test_a_failure_before_sending_fails_over(relay_url, token_key, media_catalog, fake_upstream):
    make_channel(
        "down", f"http://127.0.0.1:{free_port()}/v1", served_models=MEDIA_MODELS, priority=10
    )
    make_channel(
        "refuses", f"{fake_upstream.url}/status-429/v1", served_models=MEDIA_MODELS, priority=5
    )
    works = make_channel("works", f"{fake_upstream.url}/v1", served_models=MEDIA_MODELS)

    _client(relay_url, token_key).audio.speech.create(model=SPEECH_MODEL, voice="alloy", input="hi")

    assert fake_upstream.app.stats.by_scenario == {"status-429": 1, "ok": 1}
    [log] = wait_for_logs(1)
    assert (log.channel_id, log.cost) == (works.pk, 30)


# --- Hostile bodies: a clear 4xx, nothing held or charged -----------------------------


def _post(relay_url, key, path, headers=None, **kwargs):
    headers = {"authorization": f"Bearer {key}", **(headers or {})}
    return httpx.post(f"{relay_url}/{path}", headers=headers, timeout=30, **kwargs)


def test_hostile_bodies_are_clear_4xx_and_change_nothing(
    relay_url, token_key, media_channel, fake_upstream, funded_user, return_grants
):
    before = _balance(funded_user)
    boundary = "b0undary"
    multipart = {"content-type": f"multipart/form-data; boundary={boundary}"}

    def form(*parts: bytes) -> bytes:
        return b"".join(parts) + f"--{boundary}--\r\n".encode()

    def field(name: str, value: bytes) -> bytes:
        return (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value
            + b"\r\n"
        )

    def upload(size: int) -> bytes:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        ).encode()
        return head + b"\0" * size + b"\r\n"

    cases = [
        # (path, request, status, code)
        ("images/generations", {"json": {"model": IMAGE_MODEL, "prompt": "x", "n": 10**9}}, 400, "invalid_value"),
        ("images/generations", {"json": {"model": IMAGE_MODEL, "prompt": "x", "n": 0}}, 400, "invalid_value"),
        ("images/generations", {"json": {"model": IMAGE_MODEL, "prompt": "x", "n": "2"}}, 400, "invalid_value"),
        ("images/generations", {"json": {"model": IMAGE_MODEL}}, 400, "invalid_value"),
        ("images/generations", {"json": {"model": IMAGE_MODEL, "prompt": "x", "size": "9" * 99}}, 400, "invalid_value"),
        ("images/generations", {"json": {"model": "image\x00test", "prompt": "x"}}, 400, "invalid_model"),
        ("images/generations", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
        ("images/generations", {"json": {"model": SPEECH_MODEL, "prompt": "x"}}, 400, "wrong_endpoint"),
        ("audio/speech", {"json": {"model": SPEECH_MODEL, "voice": "alloy"}}, 400, "invalid_value"),
        ("audio/speech", {"json": {"model": SPEECH_MODEL, "input": "x" * 4097}}, 400, "invalid_value"),
        ("audio/speech", {"json": {"model": HEARING_MODEL, "input": "x"}}, 400, "wrong_endpoint"),
        ("audio/transcriptions", {"json": {"model": HEARING_MODEL}}, 415, "unsupported_media_type"),
        ("audio/transcriptions", {"content": b"x", "headers": {"content-type": "multipart/form-data"}}, 400, "invalid_multipart"),
        ("audio/transcriptions", {"content": b"garbage", "headers": multipart}, 400, "invalid_multipart"),
        ("audio/transcriptions", {"content": form(field("model", HEARING_MODEL.encode())), "headers": multipart}, 400, "invalid_value"),
        ("audio/transcriptions", {"content": form(upload(10)), "headers": multipart}, 400, "missing_model"),
        ("audio/transcriptions", {"content": form(field("model", b"hearing\x00test"), upload(10)), "headers": multipart}, 400, "invalid_value"),
        ("audio/transcriptions", {"content": form(field("model", HEARING_MODEL.encode()), upload(10)), "headers": multipart}, 400, "unsupported_audio_format"),
        ("audio/transcriptions", {"content": form(field("model", HEARING_MODEL.encode()), upload(25 * 1024 * 1024 + 1)), "headers": multipart}, 413, "file_too_large"),
        ("audio/transcriptions", {"content": form(field("model", HEARING_MODEL.encode()), upload(26 * 1024 * 1024 + 1)), "headers": multipart}, 413, "request_too_large"),
        ("images/edits", {"content": form(field("model", IMAGE_MODEL.encode()), field("prompt", b"x"), field("n", b"99999999999")), "headers": multipart}, 400, "invalid_value"),
    ]  # fmt: skip
    for path, request, status, code in cases:
        response = _post(relay_url, token_key, path, **request)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), (
            path,
            response.text,
        )
        assert response.json()["error"]["message"]

    assert fake_upstream.app.stats.requests == 0
    return_grants()
    assert _balance(funded_user) == before
    assert RequestLog.objects.count() == 0


def test_a_chat_model_is_refused_at_the_media_endpoints_and_a_unit_priced_one_at_chat(
    relay_url, token_key, media_channel, fake_upstream
):
    from .conftest import MODEL

    chat_at_images = _post(
        relay_url, token_key, "images/generations", json={"model": MODEL, "prompt": "x"}
    )
    image_at_chat = _post(
        relay_url,
        token_key,
        "chat/completions",
        json={"model": IMAGE_MODEL, "messages": [{"role": "user", "content": "x"}]},
    )

    assert chat_at_images.status_code == image_at_chat.status_code == 400
    assert chat_at_images.json()["error"]["code"] == "wrong_endpoint"
    assert "/v1/images/generations" in image_at_chat.json()["error"]["message"]
    assert fake_upstream.app.stats.requests == 0


def test_content_is_never_logged(relay_url, token_key, media_channel):
    secret = "the-canary-of-a-private-prompt"
    _client(relay_url, token_key).images.generate(model=IMAGE_MODEL, prompt=secret)

    [log] = wait_for_logs(1)
    assert not any(
        secret in str(getattr(log, field.attname)) for field in RequestLog._meta.concrete_fields
    )


# --- The length of a recording --------------------------------------------------------


def _mp3(frames: int) -> bytes:
    # MPEG 1 layer III, 128 kbit/s, 44.1 kHz, no padding: 417 bytes and 1152 samples a frame.
    header = struct.pack(">I", 0xFFFB9000)
    return b"ID3\x03\x00\x00\x00\x00\x00\x00" + (header + b"\0" * 413) * frames


def _flac(samples: int, rate: int) -> bytes:
    streaminfo = b"\0" * 10 + ((rate << 44) | (1 << 41) | (15 << 36) | samples).to_bytes(8, "big")
    return b"fLaC" + b"\x80\x00\x00\x22" + streaminfo + b"\0" * 16


def _ogg_opus(granule: int) -> bytes:
    page = b"OggS\x00\x02" + struct.pack("<q", 0) + b"\0" * 14 + b"OpusHead" + b"\0" * 11
    last = b"OggS\x00\x04" + struct.pack("<q", granule) + b"\0" * 14
    return page + b"\0" * 100 + last


@pytest.mark.parametrize(
    ("data", "seconds"),
    [
        (wav(2_500), 3),
        (wav(60_000, sample_rate=8_000), 60),
        (wav(1), 1),
        (_mp3(100), math.ceil(100 * 1152 / 44_100)),
        (_flac(44_100 * 90 + 1, 44_100), 91),
        (_ogg_opus(48_000 * 5), 5),
    ],
)
def test_audio_length_is_read_from_the_file(data, seconds):
    from relay.media import audio_seconds

    assert audio_seconds(data) == seconds


@pytest.mark.parametrize("data", [b"", b"\0" * 100, b"RIFF\0\0\0\0WAVE", b"\xff\xfb" + b"\0" * 10])
def test_audio_that_cannot_be_measured_is_refused(data):
    from relay.http import RelayError
    from relay.media import audio_seconds

    with pytest.raises(RelayError) as raised:
        audio_seconds(data)
    assert raised.value.code == "unsupported_audio_format"


def test_every_demo_image_and_audio_model_is_answered_by_the_mock_channel_and_billed_by_its_unit(
    relay_url, token_key, funded_user, return_grants
):
    from models_catalog.demo_catalog import load_demo_catalog
    from relay.routing import routing_table_expire
    from relay.services import channel_ensure_mock

    load_demo_catalog()
    channel_ensure_mock()
    routing_table_expire()
    client = _client(relay_url, token_key)
    before = _balance(funded_user)

    client.images.generate(model="dall-e-3", prompt="x", quality="hd", size="1024x1792")
    client.images.generate(model="gpt-image-1", prompt="x", quality="high", n=2)
    client.images.edit(model="gpt-image-1", image=("a.png", mock.TINY_PNG), prompt="x")
    client.images.generate(model="flux-1.1-pro", prompt="x")
    client.audio.speech.create(model="tts-1", voice="alloy", input="Hello, world!")
    client.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav(90_500)))

    costs = {(log.model, log.unit_count): log.cost for log in wait_for_logs(6)}
    assert costs == {
        ("dall-e-3", 1): 120_000,  # hd 1024x1792
        ("gpt-image-1", 2): 334_000,  # 2 × high
        ("gpt-image-1", 1): 42_000,  # "*"
        ("flux-1.1-pro", 0): 40_000,  # per call
        ("tts-1", 13): 195,  # 13 characters at $15 / 1M
        ("whisper-1", 91): 9_100,  # 90.5 s → 91 s at $0.006 a minute
    }
    return_grants()
    assert _balance(funded_user) == before - sum(costs.values())
