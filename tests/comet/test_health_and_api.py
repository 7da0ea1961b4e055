import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_healthz_reports_every_part_reachable(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "broker"}
    assert all(check["ok"] for check in body["checks"].values())


def test_healthz_answers_503_when_the_cache_is_unreachable(client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            # Nothing listens on port 1.
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    # Changing CACHES makes Django rebuild its cache handlers.
    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["cache"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_openapi_schema_and_docs_are_served(client):
    schema = client.get(reverse("api-schema"), HTTP_ACCEPT="application/json")
    docs = client.get(reverse("api-docs"))

    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Comet console API"
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    assert b"cdn" not in docs.content.lower()


def test_healthz_does_one_database_query(client):
    with CaptureQueriesContext(connection) as queries:
        client.get("/healthz")

    assert len(queries) == 1


def test_an_unknown_api_address_is_a_404_in_the_api_format(user_client):
    for path in ("/api/nothing-here/", "/api/tokens/1.0/", "/user/nothing"):
        response = user_client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"


def test_an_unknown_console_address_is_the_404_page(user_client):
    response = user_client.get("/nothing-here/")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()
