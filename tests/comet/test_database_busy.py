"""No database connection free in time: 503 "busy, retry" on every path, never 500.

tests/comet/test_connections.py exhausts a real server's pool; these check each
place that turns the pool's timeout into a 503, in-process.
"""

import json

import pytest
from django.db import OperationalError
from django.db.utils import DatabaseErrorWrapper
from django.http import HttpResponse
from django.test import Client, RequestFactory
from psycopg_pool import PoolTimeout

from comet.middleware import DatabaseBusyMiddleware
from comet.views import server_error
from core.db import BUSY_CODE, database_busy


def pool_timeout() -> OperationalError:
    """Return the error Django raises when the pool lends no connection in time."""
    from django.db import connection

    try:
        with DatabaseErrorWrapper(connection):
            raise PoolTimeout("couldn't get a connection after 5.00 sec")
    except OperationalError as error:
        return error
    raise AssertionError("not wrapped")


def test_the_pool_timeout_is_recognised_through_django_and_only_it():
    assert database_busy(pool_timeout())
    assert database_busy(PoolTimeout("timeout"))
    assert not database_busy(OperationalError("server closed the connection unexpectedly"))
    assert not database_busy(None)


@pytest.mark.parametrize(
    ("path", "json_answer"),
    [
        ("/logs/", False),
        ("/api/v1/logs", True),
        ("/user/quota", True),
        ("/logs/charts/by-model.json", True),
    ],
)
def test_a_view_that_finds_the_pool_exhausted_answers_503(path, json_answer):
    request = RequestFactory().get(path)

    response = DatabaseBusyMiddleware(lambda request: HttpResponse()).process_exception(
        request, pool_timeout()
    )

    assert response is not None
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    if json_answer:
        assert json.loads(response.content)["error"]["code"] == BUSY_CODE
    else:
        assert "Busy, retry in a few seconds" in response.content.decode()


def test_other_errors_are_left_to_django():
    request = RequestFactory().get("/logs/")

    response = DatabaseBusyMiddleware(lambda request: HttpResponse()).process_exception(
        request, ValueError("a bug")
    )

    assert response is None


def test_an_error_outside_a_view_answers_503_when_the_pool_was_exhausted():
    # (A middleware or the session save: Django's handler500 sees those.)
    request = RequestFactory().get("/")
    try:
        raise pool_timeout()
    except OperationalError:
        busy = server_error(request)
    try:
        raise ValueError("a bug")
    except ValueError:
        failed = server_error(request)

    assert busy.status_code == 503
    assert "Busy, retry in a few seconds" in busy.content.decode()
    assert failed.status_code == 500


@pytest.mark.django_db
def test_the_json_api_answers_503_in_its_error_format(user, monkeypatch):
    client = Client()
    client.force_login(user)

    def exhausted(*args, **kwargs):
        raise pool_timeout()

    monkeypatch.setattr("logs.api.LogListView.get", exhausted)
    response = client.get("/api/v1/logs")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"] == {
        "message": "Comet is busy right now. Retry in a few seconds.",
        "type": "api_error",
        "param": None,
        "code": "service_unavailable",
    }
