"""`GET /v1/models/{id}` and the kinds of models through the official `openai` SDK: video
and music models are neither listed nor callable; image, audio and embedding models called
at a text endpoint are told where they are called; hostile ids are clear 4xx."""

from decimal import Decimal
from urllib.parse import quote

import httpx
import openai
import pytest

from accounts.services import user_line_set
from billing.models import Account
from logs.models import RequestLog
from models_catalog.models import CatalogModel, PricingGroup, Vendor
from models_catalog.services import catalog_entry_create
from tokens.services import token_create

from .conftest import MODEL, make_channel

pytestmark = pytest.mark.django_db(transaction=True)

# name, kind, per call (micro-USD) or None for per token
KINDED_MODELS = [
    ("sora-2", "video", 400_000),
    ("veo-3.0-generate-preview", "video", 1_200_000),
    ("suno-v4", "music", 50_000),
    ("dall-e-3", "image", 40_000),
    ("gpt-image-1", "image", 42_000),
    ("tts-1", "audio", None),
    ("whisper-1", "audio", 6_000),
    ("text-embedding-3-small", "embedding", None),
]
COMING_SOON = {"sora-2", "veo-3.0-generate-preview", "suno-v4"}


@pytest.fixture
def kinded_catalog(catalog_model, fake_upstream):
    """The demo catalog's models of every kind beside MODEL (chat), all served by one
    OpenAI-compatible channel, so that only the relay's own rules refuse them."""
    vendor = Vendor.objects.get(name="testvendor")
    for name, kind, per_call in KINDED_MODELS:
        catalog_entry_create(
            entry=CatalogModel(
                name=name,
                vendor=vendor,
                kind=kind,
                model_ratio=None if per_call else Decimal("0.5"),
                price_per_call=per_call,
            )
        )
    make_channel(
        "every-kind",
        f"{fake_upstream.url}/v1",
        served_models=[MODEL, *(name for name, _kind, _price in KINDED_MODELS)],
    )
    return KINDED_MODELS


def _client(relay_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=relay_url, api_key=key, max_retries=0)


def test_models_list_leaves_out_what_has_no_endpoint_and_retrieve_answers_each(
    relay_url, token_key, kinded_catalog
):
    client = _client(relay_url, token_key)

    listed = sorted(model.id for model in client.models.list())
    retrieved = client.models.retrieve(MODEL)
    image = client.models.retrieve("dall-e-3")

    assert listed == sorted(
        [MODEL, *(name for name, _kind, _price in kinded_catalog if name not in COMING_SOON)]
    )
    assert (retrieved.id, retrieved.object, retrieved.owned_by) == (MODEL, "model", "comet")
    assert image.id == "dall-e-3"
    for name in COMING_SOON:
        with pytest.raises(openai.NotFoundError) as raised:
            client.models.retrieve(name)
        assert raised.value.code == "model_not_found"
        assert "coming soon" in raised.value.message


def test_retrieve_of_an_unknown_model_is_not_found_in_openais_shape(relay_url, token_key):
    with pytest.raises(openai.NotFoundError) as raised:
        _client(relay_url, token_key).models.retrieve("no-such-model")

    assert raised.value.status_code == 404
    assert raised.value.code == "model_not_found"
    assert raised.value.param == "model"
    assert "no-such-model" in raised.value.message


def test_retrieve_needs_the_same_key_as_the_list(relay_url, catalog_model):
    with pytest.raises(openai.AuthenticationError):
        _client(relay_url, "sk-not-a-real-key").models.retrieve(MODEL)
    no_key = httpx.get(f"{relay_url}/models/{MODEL}")

    assert no_key.status_code == 401
    assert no_key.json()["error"]["code"] == "invalid_api_key"


def test_retrieve_answers_what_the_token_and_the_line_allow(
    relay_url, funded_user, catalog_model, fake_upstream
):
    # Given a line that may call only MODEL, another enabled model outside it, and a token
    # that may use only the other one
    vendor = Vendor.objects.get(name="testvendor")
    catalog_entry_create(entry=CatalogModel(name="gpt-outside", vendor=vendor, model_ratio=1))
    line = PricingGroup(name="training", display_name="Training", allows_all_models=False)
    catalog_entry_create(entry=line)
    line.catalog_models.set([catalog_model])
    user_line_set(
        user=funded_user,
        pricing_group_id=line.pk,
        concurrency_limit=None,
        rpm_limit=None,
        tpm_limit=None,
        actor=None,
    )
    _token, key = token_create(user=funded_user, name="line")
    _token, narrow_key = token_create(user=funded_user, name="narrow", allowed_models=[MODEL])

    # When the SDK retrieves both models
    inside = _client(relay_url, key).models.retrieve(MODEL)
    with pytest.raises(openai.NotFoundError) as outside:
        _client(relay_url, key).models.retrieve("gpt-outside")
    with pytest.raises(openai.PermissionDeniedError) as not_allowed:
        _client(relay_url, narrow_key).models.retrieve("gpt-outside")

    # Then the line's model is answered, the other 404 saying how to get it; the token's
    # own list answers 403 as a call would
    assert inside.id == MODEL
    assert outside.value.code == "model_not_found"
    assert "Training" in outside.value.message
    assert "Contact support" in outside.value.message
    assert not_allowed.value.code == "model_not_allowed"


@pytest.mark.parametrize(
    ("model", "endpoint"),
    [
        ("dall-e-3", "/v1/images/generations"),
        ("gpt-image-1", "/v1/images/generations"),
        ("tts-1", "/v1/audio/speech"),
        ("whisper-1", "/v1/audio/transcriptions"),
        ("text-embedding-3-small", "/v1/embeddings"),
    ],
)
def test_a_model_of_another_kind_at_chat_completions_is_told_its_endpoint(
    relay_url, token_key, kinded_catalog, fake_upstream, funded_user, return_grants, model, endpoint
):
    balance = Account.objects.get(pk=funded_user.pk).balance

    with pytest.raises(openai.BadRequestError) as raised:
        _client(relay_url, token_key).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "a cat on a mat"}]
        )

    assert raised.value.status_code == 400
    assert raised.value.code == "wrong_endpoint"
    assert raised.value.param == "model"
    assert endpoint in raised.value.message
    assert "/v1/chat/completions" in raised.value.message
    assert fake_upstream.app.stats.requests == 0
    return_grants()
    assert Account.objects.get(pk=funded_user.pk).balance == balance
    assert RequestLog.objects.count() == 0


@pytest.mark.parametrize("model", sorted(COMING_SOON))
def test_video_and_music_models_cannot_be_called_anywhere(
    relay_url, token_key, kinded_catalog, fake_upstream, model
):
    client = _client(relay_url, token_key)

    with pytest.raises(openai.NotFoundError) as chat:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError) as completions:
        client.completions.create(model=model, prompt="x")
    with pytest.raises(openai.NotFoundError) as embeddings:
        client.embeddings.create(model=model, input="x")

    for raised in (chat, completions, embeddings):
        assert raised.value.code == "model_not_found"
        assert "coming soon" in raised.value.message
    assert fake_upstream.app.stats.requests == 0


def test_an_image_model_at_embeddings_is_refused_and_a_chat_model_still_embeds(
    relay_url, token_key, kinded_catalog
):
    client = _client(relay_url, token_key)

    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="dall-e-3", input="x")
    embedded = client.embeddings.create(model=MODEL, input="x")

    assert raised.value.code == "wrong_endpoint"
    assert "/v1/images/generations" in raised.value.message
    assert embedded.data


def test_the_image_and_audio_endpoints_take_only_post_and_variations_is_unknown(
    relay_url, token_key
):
    headers = {"authorization": f"Bearer {token_key}"}
    for path in ("images/generations", "images/edits", "audio/speech", "audio/transcriptions"):
        response = httpx.get(f"{relay_url}/{path}", headers=headers)
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"
    unknown = httpx.post(f"{relay_url}/images/variations", headers=headers, json={})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"


def test_the_wrong_endpoint_message_in_chinese(relay_url, token_key, kinded_catalog):
    response = httpx.post(
        f"{relay_url}/chat/completions",
        headers={"authorization": f"Bearer {token_key}", "accept-language": "zh-CN,zh;q=0.9"},
        json={"model": "dall-e-3", "messages": [{"role": "user", "content": "x"}]},
    )
    coming_soon = httpx.get(
        f"{relay_url}/models/sora-2",
        headers={"authorization": f"Bearer {token_key}", "accept-language": "zh-CN"},
    )

    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (400, "wrong_endpoint")
    assert "/v1/images/generations" in error["message"]
    assert "图" in error["message"]
    assert "即将推出" in coming_soon.json()["error"]["message"]


# --- Hostile ids: a clear 4xx, never a 5xx --------------------------------------------------


@pytest.mark.parametrize(
    ("raw_id", "status"),
    [
        ("org/some-model", 404),
        ("a/b/c/d", 404),
        ("模型/名字", 404),
        ("emoji-🦄", 404),
        ("x" * 4000, 404),
        ("%00", 400),
        ("gpt%00test", 400),
        ("%ED%A0%80", 404),  # a lone surrogate in UTF-8: decoded as U+FFFD
        ("%FF%FE", 404),
        ("..%2F..%2Fchat%2Fcompletions", 404),
        ("'; DROP TABLE models_catalog_catalogmodel; --", 404),
        ("%2e%2e", 404),
    ],
)
def test_hostile_model_ids_are_clear_refusals(relay_url, token_key, raw_id, status):
    quoted = raw_id if "%" in raw_id else quote(raw_id, safe="/")
    response = httpx.get(
        f"{relay_url}/models/{quoted}", headers={"authorization": f"Bearer {token_key}"}
    )

    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == ("invalid_model" if status == 400 else "model_not_found")
    assert error["message"]


def test_other_methods_on_a_model_are_refused(relay_url, token_key):
    response = httpx.delete(
        f"{relay_url}/models/{MODEL}", headers={"authorization": f"Bearer {token_key}"}
    )

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
