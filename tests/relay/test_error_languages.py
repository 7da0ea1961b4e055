# ruff: noqa: RUF001 (Chinese text is written with its full-width punctuation)
"""The relay's error messages are English unless the request's Accept-Language prefers
Chinese; `code` and `type` never change, and the official SDK still reads the error."""

import httpx
import openai
import pytest

from accounts.locale import program_language
from tests.factories import UserFactory
from tokens.services import token_create

from .conftest import MODEL

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
CHINESE = {"accept-language": "zh-CN,zh;q=0.9,en;q=0.8"}


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en"),
        ("", "en"),
        ("zh", "zh-hans"),
        ("zh-CN", "zh-hans"),
        ("zh-Hans", "zh-hans"),
        ("zh-SG", "zh-hans"),
        ("zh-Hans-CN;q=0.5", "zh-hans"),
        ("ZH-cn", "zh-hans"),
        # No Traditional catalog: Simplified, as the console's pages choose too.
        ("zh-TW", "zh-hans"),
        ("zh-Hant", "zh-hans"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        ("zh-CN;q=0.8,en;q=0.9", "en"),
        ("zh-CN,en", "zh-hans"),
        ("en,zh-CN", "en"),
        ("fr-FR,fr;q=0.9", "en"),
        ("fr,zh;q=0.5", "zh-hans"),
        ("*", "en"),
        ("zh;q=0", "en"),
        # Hostile or broken: ignored, never an error.
        ("zh;q=abc", "en"),
        ("zh;q=nan", "en"),
        ("zh;q=1e0", "en"),
        ("zh;q=١", "en"),
        ("zh;q=2", "en"),
        ("zh-CN!", "en"),
        ("zh;foo=1", "en"),
        ("zh\x00", "en"),
        ("\x00zh-CN", "en"),
        (b"zh-CN\xff", "en"),
        (b"zh-CN", "zh-hans"),
        (";;;,,,;q=", "en"),
        ("zh-CN," + "x" * 10_000, "zh-hans"),
        ("x" * 10_000 + ",zh-CN", "en"),
    ],
)
def test_program_language(header, language):
    assert program_language(header) == language


relay_db = pytest.mark.django_db(transaction=True)


def post(relay_url, key, *, headers=None, json=CHAT, path="/chat/completions"):
    return httpx.post(
        f"{relay_url}{path}",
        json=json,
        headers={"authorization": f"Bearer {key}", **(headers or {})},
        timeout=10,
    )


@relay_db
def test_an_invalid_key_is_told_in_chinese_when_asked_with_the_same_code(relay_url):
    english = post(relay_url, "sk-not-a-real-key")
    chinese = post(relay_url, "sk-not-a-real-key", headers=CHINESE)
    assert english.status_code == chinese.status_code == 401
    en, zh = english.json()["error"], chinese.json()["error"]
    assert en["message"] == "Invalid API key, or the token is disabled or deleted."
    assert zh["message"] == "API 密钥无效，或该令牌已禁用或已删除。"
    assert (
        (zh["code"], zh["type"])
        == (en["code"], en["type"])
        == (
            "invalid_api_key",
            "authentication_error",
        )
    )


@relay_db
def test_an_unknown_model_is_told_in_chinese_with_its_name(
    relay_url, token_key, openai_channel, fake_upstream
):
    body = {**CHAT, "model": "no-such-model"}
    english = post(relay_url, token_key, json=body, headers={"accept-language": "en-US"})
    chinese = post(relay_url, token_key, json=body, headers={"accept-language": "zh-Hans"})
    assert english.status_code == chinese.status_code == 404
    assert english.json()["error"]["message"] == (
        "The model 'no-such-model' does not exist or is not available."
    )
    assert chinese.json()["error"]["message"] == "模型“no-such-model”不存在或不可用。"
    assert chinese.json()["error"]["code"] == "model_not_found"
    assert chinese.json()["error"]["param"] == "model"
    assert fake_upstream.app.stats.requests == 0


@relay_db
def test_a_bad_body_and_a_bad_route_are_told_in_chinese(relay_url, token_key, catalog_model):
    bad_json = httpx.post(
        f"{relay_url}/chat/completions",
        content=b"{not json",
        headers={
            "authorization": f"Bearer {token_key}",
            "content-type": "application/json",
            **CHINESE,
        },
        timeout=10,
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["error"] == {
        "message": "请求体不是有效的 JSON。",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_json",
    }
    too_many = post(relay_url, token_key, json={**CHAT, "max_tokens": 0}, headers=CHINESE)
    assert too_many.json()["error"]["message"] == "'max_tokens' 必须是 1 到 1000000 之间的整数。"
    assert too_many.json()["error"]["param"] == "max_tokens"
    route = post(relay_url, token_key, path="/nowhere", headers=CHINESE)
    assert route.status_code == 404
    assert route.json()["error"]["message"] == "未知的 API 路径：POST /v1/nowhere。"
    assert route.json()["error"]["code"] == "not_found"


@relay_db
def test_insufficient_balance_402_is_told_in_chinese(relay_url, catalog_model, openai_channel):
    _token, key = token_create(user=UserFactory(), name="empty")
    english = post(relay_url, key)
    chinese = post(relay_url, key, headers=CHINESE)
    assert english.status_code == chinese.status_code == 402
    assert english.json()["error"]["message"] == (
        "Your balance is too low for this request. Top up your account to continue."
    )
    assert chinese.json()["error"]["message"] == "余额不足以支付本次请求。请充值后继续。"
    assert (
        english.json()["error"]["code"] == chinese.json()["error"]["code"] == ("insufficient_quota")
    )


@relay_db
def test_a_rate_limit_429_is_told_in_chinese(relay_url, funded_user, catalog_model, openai_channel):
    _token, key = token_create(user=funded_user, name="slow", rpm_limit=1)
    assert post(relay_url, key).status_code == 200
    english = post(relay_url, key)
    chinese = post(relay_url, key, headers=CHINESE)
    assert english.status_code == chinese.status_code == 429
    assert english.json()["error"]["message"] == (
        "Too many requests per minute on this token (limit 1). Retry after the time in "
        "Retry-After, or contact support for a higher limit."
    )
    assert chinese.json()["error"]["message"] == (
        "此令牌每分钟请求过多（上限 1）。请在 Retry-After 给出的时间后重试，或联系客服提高限额。"
    )
    assert chinese.json()["error"]["code"] == "rate_limit_exceeded"
    assert chinese.json()["error"]["type"] == "rate_limit_error"


@relay_db
def test_the_anthropic_shape_is_told_in_chinese_too(relay_url):
    response = httpx.post(
        f"{relay_url}/messages",
        json={"model": MODEL, "max_tokens": 5, "messages": []},
        headers={"x-api-key": "sk-not-a-real-key", **CHINESE},
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["type"] == "error"
    assert response.json()["error"]["message"] == "API 密钥无效，或该令牌已禁用或已删除。"


@relay_db
@pytest.mark.parametrize(
    "header",
    [
        "zh;q=abc",
        "zh-CN," + "x" * 10_000,
        "zh;q=" + "9" * 5000,
        ",".join(["zh-CN;q=0.5"] * 2000),
        "zh\tCN;q=0.5, \u00e9\u00e8;q=1".encode("latin-1"),
    ],
)
def test_a_hostile_accept_language_never_fails_the_request(relay_url, header):
    response = post(relay_url, "sk-not-a-real-key", headers={"accept-language": header})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@relay_db
def test_a_nul_in_accept_language_never_fails_the_request(relay_url):
    # httpx refuses to send a NUL in a header: a raw request says it.
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(relay_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(
            b"GET /v1/models HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer sk-nope\r\n"
            b"Accept-Language: zh\x00-CN\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 401), answer


@relay_db
def test_the_openai_sdk_reads_a_chinese_error(relay_url, catalog_model, openai_channel):
    _token, key = token_create(user=UserFactory(), name="empty")
    client = openai.OpenAI(
        base_url=relay_url,
        api_key=key,
        max_retries=0,
        default_headers={"Accept-Language": "zh-CN"},
    )
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    error = raised.value
    assert error.status_code == 402
    assert error.code == "insufficient_quota"
    assert error.type == "api_error"
    assert error.message.startswith("Error code: 402")
    assert "余额不足以支付本次请求" in error.message
    assert error.body["message"] == "余额不足以支付本次请求。请充值后继续。"

    bad_key = openai.OpenAI(
        base_url=relay_url,
        api_key="sk-nope",
        max_retries=0,
        default_headers={"Accept-Language": "zh-CN"},
    )
    with pytest.raises(openai.AuthenticationError) as raised_auth:
        bad_key.models.list()
    assert raised_auth.value.code == "invalid_api_key"
    assert raised_auth.value.body["message"] == "API 密钥无效，或该令牌已禁用或已删除。"
