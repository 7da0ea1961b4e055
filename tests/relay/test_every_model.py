"""Issue #18: every model `GET /v1/models` lists after `make run`'s setup is answered by
the mock channel at the endpoint of its kind, through the official SDKs, and charged
exactly what the catalog's price says for what the answer reports.

The catalog is loaded as `bin/run` loads it (`load_demo_catalog`, `ensure_mock_channel`).
Each call's expected charge is worked out here, with fractions, from the formulas written
in ARCHITECTURE.md and the docstring of `models_catalog/pricing.py` — never by the code
that charges — and compared with the account's balance and the request log row.
"""

import functools
import math
import re
import struct
import wave
import zlib
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from io import BytesIO
from typing import Any

import anthropic
import openai
import pytest
from django.core.management import call_command

from billing.models import Account
from billing.services import account_credit
from logs.models import RequestLog
from models_catalog.demo_catalog import MODELS
from models_catalog.models import CatalogModel, PricingGroup
from relay.routing import routing_table_expire
from tests.factories import UserFactory
from tokens.services import token_create

from .conftest import wait_for_logs

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # The SDK marks audio.translations deprecated; the endpoint is still OpenAI's and ours.
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
]

DEMO_MODEL_NAMES = [name for name, *_rest in MODELS]
# Kinds whose vendors' task APIs the relay does not offer yet: never listed.
UNLISTED_KINDS = {"video", "music"}
# Image models whose vendors offer edits (OpenAI: gpt-image-1 and dall-e-2, not dall-e-3).
EDIT_MODELS = {"gpt-image-1"}
# Characters to speak: not ASCII, so characters and bytes differ.
SPEECH_INPUT = "Bonjour, où est la gare ? 駅はどこですか。"
# A recording of 61.25 s: billed as 62 s.
RECORDING_FRAMES, RECORDING_RATE = 490_000, 8_000
PROMPT = [{"role": "user", "content": "Say hello to every model of the catalog."}]


# --- The expected charge, from the documented formulas ----------------------------------


def _exact(value: Any) -> Fraction:
    return Fraction(str(value))


def _round_up(amount: Fraction) -> int:
    """One rounding, up to a whole micro-USD, and at least 1: a priced call is never free."""
    return max(1, math.ceil(amount))


def expected_token_cost(
    model: CatalogModel, group_ratio: Fraction, *, prompt: int, completion: int, cached: int = 0
) -> int:
    """ceil(((prompt - cached) + cached * cached_ratio + completion * completion_ratio)
    * model_ratio * group_ratio * 2), cached tokens billed as input without a cached ratio."""
    cached_ratio = Fraction(1) if model.cached_ratio is None else _exact(model.cached_ratio)
    cached = min(cached, prompt)
    weighted = (
        (prompt - cached) + cached * cached_ratio + completion * _exact(model.completion_ratio)
    )
    return _round_up(weighted * _exact(model.model_ratio) * group_ratio * 2)


def expected_image_price(table: dict[str, int], *, size: str | None, quality: str | None) -> int:
    """The most specific entry: "quality size", else the size's, else the quality's, else "*"."""
    for key in (
        f"{quality} {size}" if quality and size else None,
        size,
        quality,
    ):
        if key and key in table:
            return table[key]
    return table["*"]


def _image_key_request(key: str) -> tuple[str | None, str | None]:
    """Return the (size, quality) of a request that an image price table's `key` names."""
    if key == "*":
        return None, None
    quality, _space, size = key.rpartition(" ")
    if quality:
        return size, quality
    return (key, None) if re.fullmatch(r"\d+x\d+|auto", key) else (None, key)


# --- Files a client would upload ---------------------------------------------------------


def recording_wav() -> bytes:
    """A real 16-bit mono WAV of silence, written by the standard library."""
    buffer = BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(RECORDING_RATE)
        writer.writeframes(b"\x00\x00" * RECORDING_FRAMES)
    return buffer.getvalue()


def recording_seconds() -> int:
    return math.ceil(Fraction(RECORDING_FRAMES, RECORDING_RATE))


def png(width: int = 2, height: int = 2) -> bytes:
    """A real RGBA PNG of transparent pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x00\x00\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# --- The setup of `make run`, and one funded customer -------------------------------------


class Customer:
    """A funded account on a line, its token, and the SDK clients `make run` users hold."""

    def __init__(self, relay_url: str, group: PricingGroup, return_grants: Callable[[], None]):
        self.user = UserFactory(pricing_group=group)
        account_credit(
            user_id=self.user.pk, amount=500_000_000, idempotency_key=f"t:{self.user.pk}"
        )
        _token, key = token_create(user=self.user, name="every model")
        self.openai = openai.OpenAI(base_url=relay_url, api_key=key, max_retries=0)
        self.anthropic = anthropic.Anthropic(
            base_url=relay_url.removesuffix("/v1"), api_key=key, max_retries=0
        )
        self.group_ratio = _exact(group.group_ratio)
        self._return_grants = return_grants

    def balance(self) -> int:
        return Account.objects.get(pk=self.user.pk).balance

    def charge_of(self, call: Callable[[], Any]) -> tuple[Any, RequestLog, int]:
        """Make one call; return its answer, its log row and what the balance lost."""
        self._return_grants()
        before, rows = self.balance(), RequestLog.objects.count()
        answer = call()
        logs = wait_for_logs(rows + 1)
        assert len(logs) == rows + 1, "the call was not logged"
        self._return_grants()
        return answer, logs[-1], before - self.balance()


@pytest.fixture(params=["default", "enterprise"])
def customer(request, relay_url, return_grants):
    """After `make run`'s setup: a customer on the default line or on the enterprise line
    (group ratio 0.9, so that rounding up shows)."""
    call_command("load_demo_catalog", verbosity=0)
    call_command("ensure_mock_channel", verbosity=0)
    routing_table_expire()
    return Customer(relay_url, PricingGroup.objects.get(name=request.param), return_grants)


def _assert_charged(log: RequestLog, lost: int, expected: int, *, model: str) -> None:
    assert log.model == model
    assert log.status_code == 200
    assert log.cost == expected
    assert lost == expected


# --- What is listed ----------------------------------------------------------------------


def test_the_models_listed_are_the_demo_catalog_but_video_and_music(customer):
    listed = {model.id for model in customer.openai.models.list()}

    kinds = dict(CatalogModel.objects.values_list("name", "kind"))
    assert set(kinds) == set(DEMO_MODEL_NAMES)
    assert listed == {name for name, kind in kinds.items() if kind not in UNLISTED_KINDS}
    # Every listed model is tested below by name: a new one without a test fails here.
    assert listed <= set(DEMO_MODEL_NAMES)


# --- Every model, by the endpoint of its kind --------------------------------------------


def _chat(customer: Customer, model: CatalogModel) -> None:
    client = customer.openai
    answer, log, lost = customer.charge_of(
        lambda: client.chat.completions.create(model=model.name, messages=PROMPT)
    )
    assert answer.choices[0].message.content
    usage = answer.usage
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    expected = expected_token_cost(
        model,
        customer.group_ratio,
        prompt=usage.prompt_tokens,
        completion=usage.completion_tokens,
    )
    _assert_charged(log, lost, expected, model=model.name)
    assert (log.prompt_tokens, log.completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )

    def stream() -> tuple[str, Any]:
        chunks = list(
            client.chat.completions.create(
                model=model.name,
                messages=PROMPT,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        return text, chunks[-1].usage

    (text, usage), log, lost = customer.charge_of(stream)
    assert text
    assert usage is not None
    assert usage.completion_tokens > 0
    expected = expected_token_cost(
        model,
        customer.group_ratio,
        prompt=usage.prompt_tokens,
        completion=usage.completion_tokens,
    )
    _assert_charged(log, lost, expected, model=model.name)
    assert log.is_stream is True
    assert log.usage_estimated is False

    message, log, lost = customer.charge_of(
        lambda: customer.anthropic.messages.create(model=model.name, max_tokens=64, messages=PROMPT)
    )
    assert message.content[0].text
    cached = message.usage.cache_read_input_tokens or 0
    expected = expected_token_cost(
        model,
        customer.group_ratio,
        prompt=message.usage.input_tokens + cached,
        completion=message.usage.output_tokens,
        cached=cached,
    )
    _assert_charged(log, lost, expected, model=model.name)


def _embedding(customer: Customer, model: CatalogModel) -> None:
    answer, log, lost = customer.charge_of(
        lambda: customer.openai.embeddings.create(
            model=model.name, input=["the first text", "and a second one"]
        )
    )
    assert len(answer.data) == 2
    assert answer.usage.prompt_tokens > 0
    expected = expected_token_cost(
        model, customer.group_ratio, prompt=answer.usage.prompt_tokens, completion=0
    )
    _assert_charged(log, lost, expected, model=model.name)


def _image(customer: Customer, model: CatalogModel) -> None:
    client = customer.openai
    if model.price_per_call is not None:
        # One call, whatever it makes.
        answer, log, lost = customer.charge_of(
            lambda: client.images.generate(model=model.name, prompt="a lighthouse", n=2)
        )
        assert len(answer.data) == 2
        expected = _round_up(model.price_per_call * customer.group_ratio)
        _assert_charged(log, lost, expected, model=model.name)
        return
    table = model.price_per_image
    assert table, f"{model.name} is an image model with no price per call or per image"
    for key in sorted(table):
        size, quality = _image_key_request(key)
        options = {name: value for name, value in [("size", size), ("quality", quality)] if value}
        count = 2 if key == "*" else 1
        answer, log, lost = customer.charge_of(
            lambda options=options, count=count: client.images.generate(
                model=model.name, prompt="a lighthouse", n=count, **options
            )
        )
        assert len(answer.data) == count
        price = expected_image_price(table, size=size, quality=quality)
        expected = _round_up(count * price * customer.group_ratio)
        _assert_charged(log, lost, expected, model=model.name)
        assert (log.unit, log.unit_count, log.unit_price) == ("image", count, price)
    if model.name in EDIT_MODELS:
        qualities = sorted(key for key in table if key.isalpha())
        quality = qualities[0] if qualities else None
        answer, log, lost = customer.charge_of(
            lambda: client.images.edit(
                model=model.name,
                image=("lighthouse.png", png(), "image/png"),
                prompt="add a boat",
                n=1,
                **({"quality": quality} if quality else {}),
            )
        )
        assert len(answer.data) == 1
        price = expected_image_price(table, size=None, quality=quality)
        _assert_charged(log, lost, _round_up(price * customer.group_ratio), model=model.name)


def _audio(customer: Customer, model: CatalogModel) -> None:
    client = customer.openai
    if model.price_per_million_characters is not None:
        speech, log, lost = customer.charge_of(
            lambda: client.audio.speech.create(model=model.name, voice="alloy", input=SPEECH_INPUT)
        )
        assert speech.content[:4] == b"RIFF"
        characters = len(SPEECH_INPUT)
        expected = _round_up(
            Fraction(model.price_per_million_characters * characters, 1_000_000)
            * customer.group_ratio
        )
        _assert_charged(log, lost, expected, model=model.name)
        assert (log.unit, log.unit_count) == ("character", characters)
        return
    assert model.price_per_minute is not None, f"{model.name}: an audio model of no unit"
    recording = recording_wav()
    seconds = recording_seconds()
    expected = _round_up(Fraction(model.price_per_minute * seconds, 60) * customer.group_ratio)
    for endpoint in (client.audio.transcriptions, client.audio.translations):
        answer, log, lost = customer.charge_of(
            lambda endpoint=endpoint: endpoint.create(
                model=model.name, file=("speech.wav", recording, "audio/wav")
            )
        )
        assert answer.text
        _assert_charged(log, lost, expected, model=model.name)
        assert (log.unit, log.unit_count) == ("second", seconds)


CALLS_BY_KIND = {"chat": _chat, "embedding": _embedding, "image": _image, "audio": _audio}


@pytest.mark.parametrize("name", DEMO_MODEL_NAMES)
def test_every_listed_model_is_answered_and_charged_to_the_micro_usd(name, customer):
    listed = {model.id for model in customer.openai.models.list()}
    model = CatalogModel.objects.get(name=name)

    if model.kind in UNLISTED_KINDS:
        assert name not in listed
        with pytest.raises(openai.NotFoundError):
            customer.openai.models.retrieve(name)
        return
    assert name in listed
    CALLS_BY_KIND[model.kind](customer, model)


def test_make_run_on_a_database_of_the_earlier_catalog_prices_tts_1_per_character(
    relay_server, relay_url, return_grants
):
    # Given a database made by the earlier demo catalog, which priced tts-1 per token
    call_command("load_demo_catalog", verbosity=0)
    call_command("ensure_mock_channel", verbosity=0)
    CatalogModel.objects.filter(name="tts-1").update(
        model_ratio=Decimal("7.5"), price_per_million_characters=None
    )
    routing_table_expire()
    customer = Customer(relay_url, PricingGroup.objects.get(is_default=True), return_grants)
    speak = functools.partial(
        customer.openai.audio.speech.create, model="tts-1", voice="alloy", input=SPEECH_INPUT
    )
    # nothing at /v1/audio/speech counts tokens: the model cannot be answered
    with pytest.raises(openai.BadRequestError) as refused:
        speak()
    assert refused.value.code == "unit_not_billable"

    # When `make run` starts again
    call_command("load_demo_catalog", verbosity=0)
    relay_server.relay.prices.clear()

    # Then tts-1 is answered and charged per character
    tts = CatalogModel.objects.get(name="tts-1")
    assert tts.price_per_million_characters is not None
    _speech, log, lost = customer.charge_of(speak)
    expected = _round_up(Fraction(tts.price_per_million_characters * len(SPEECH_INPUT), 10**6))
    _assert_charged(log, lost, expected, model="tts-1")
    assert (log.unit, log.unit_count) == ("character", len(SPEECH_INPUT))
