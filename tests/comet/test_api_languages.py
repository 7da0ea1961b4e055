# ruff: noqa: RUF001 (Chinese text is written with its full-width punctuation)
"""The APIs answer programs like the relay does: English unless Accept-Language prefers
Chinese, whatever the cookie or a saved language say; `code` never changes."""

import pytest

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CHINESE = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9,en;q=0.8"}


def error_of(response):
    return response.json()["error"]


def test_the_balance_query_without_a_key_is_told_in_the_language_asked_for(client):
    english = client.get("/user/quota")
    chinese = client.get("/user/quota", **CHINESE)
    assert english.status_code == chinese.status_code == 401
    assert error_of(english)["message"] == (
        "Pass your API key as `Authorization: Bearer sk-...` or `?key=sk-...`."
    )
    assert error_of(chinese)["message"] == (
        "请以 `Authorization: Bearer sk-...` 或 `?key=sk-...` 传入你的 API 密钥。"
    )
    assert error_of(english)["code"] == error_of(chinese)["code"] == "invalid_api_key"
    bad_key = client.get("/user/quota", HTTP_AUTHORIZATION="Bearer sk-nope", **CHINESE)
    assert error_of(bad_key)["message"] == "此 API 密钥无效：格式错误、不存在、已禁用或已过期。"


def test_a_bad_filter_and_an_unknown_route_are_told_in_chinese(client):
    kind = client.get("/api/v1/pricing", {"kind": "bogus"}, **CHINESE)
    assert kind.status_code == 400
    assert error_of(kind)["param"] == "kind"
    assert error_of(kind)["message"].startswith("kind: 未知的类型。可选值：chat")
    route = client.get("/api/nowhere/", **CHINESE)
    assert route.status_code == 404
    assert error_of(route) == {
        "message": "未知的 API 路径。",
        "type": "not_found_error",
        "param": None,
        "code": "not_found",
    }


def test_django_rest_frameworks_own_messages_follow_too(client):
    english = client.get("/api/account/")
    chinese = client.get("/api/account/", **CHINESE)
    assert english.status_code == chinese.status_code
    assert error_of(english)["code"] == error_of(chinese)["code"]
    assert error_of(english)["message"] == "Authentication credentials were not provided."
    assert error_of(chinese)["message"] != error_of(english)["message"]
    assert any("\u4e00" <= character <= "\u9fff" for character in error_of(chinese)["message"])


def test_a_chinese_user_calling_the_api_without_accept_language_reads_english(client):
    user = UserFactory(language="zh-hans")
    client.force_login(user)
    client.cookies["django_language"] = "zh-hans"
    response = client.get("/api/v1/pricing", {"kind": "bogus"})
    assert error_of(response)["message"].startswith("kind: Unknown kind. One of: chat")
    # The console's pages stay in the user's language.
    assert '<html lang="zh-hans">' in client.get("/pricing").content.decode()


@pytest.mark.parametrize(
    "header", ["zh;q=abc", "zh-CN," + "x" * 10_000, "zh\x00CN", ";;;,,,", "zh;q=" + "9" * 5000]
)
def test_a_hostile_accept_language_never_fails_an_api_request(client, header):
    response = client.get("/user/quota", HTTP_ACCEPT_LANGUAGE=header)
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"
