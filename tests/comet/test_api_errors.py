import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.comet.api_urls")]


def test_validation_error_names_the_field_and_says_what_is_wrong(client):
    response = client.post("/validate/", {"amount": 0}, content_type="application/json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "amount"
    assert error["code"] == "min_value"
    assert error["message"] == "amount: Ensure this value is greater than or equal to 1."
    assert error["details"] == {"amount": ["Ensure this value is greater than or equal to 1."]}


def test_malformed_json_is_a_clear_400(client):
    response = client.post("/validate/", "{not json", content_type="application/json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert "JSON parse error" in error["message"]


@pytest.mark.parametrize(
    "body", ["[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"amount": ' * 100_000]
)
def test_json_nested_too_deep_is_a_clear_400(client, body):
    response = client.post("/validate/", body, content_type="application/json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("parse_error", "invalid_request_error")
    assert "nested too deeply" in error["message"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"amount": 1, "note": "\xff"}', "parse_error"),
        (b'{"amount": 1, "note": "\xed\xa0\x80"}', "parse_error"),
        ('{"amount": 1, "note": "\\ud800"}', "surrogate_characters_not_allowed"),
        ('{"amount": 1, "note": "a\\u0000"}', "null_characters_not_allowed"),
        ('{"amount": "²"}', "invalid"),
        ('{"amount": 1e400}', "invalid"),
        ('{"amount": NaN}', "parse_error"),
    ],
)
def test_bad_text_and_numbers_in_json_are_clear_400s(client, body, code):
    response = client.post("/validate/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_unauthenticated_request_is_refused_in_the_same_shape(client):
    response = client.get("/private/")

    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "message": "Authentication credentials were not provided.",
            "type": "permission_error",
            "param": None,
            "code": "not_authenticated",
        }
    }


def test_not_found_and_throttled_keep_their_status_and_message(client):
    missing = client.get("/missing/")
    throttled = client.get("/throttled/")

    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No token with that id."
    assert missing.json()["error"]["type"] == "not_found_error"
    assert throttled.status_code == 429
    assert throttled.json()["error"]["type"] == "rate_limit_error"
    assert throttled.json()["error"]["code"] == "throttled"
