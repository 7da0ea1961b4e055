"""Schemathesis over every operation of the console API's OpenAPI schema.

The schema is the one the app serves at /api/schema/ (drf-spectacular); requests go
to the Django WSGI app in this process, on the test database, signed in as a user
with tokens, ledger entries and log rows. Any 5xx, and any documented response
whose body breaks its schema, fails the test. Bounded: a few examples per operation.
"""

import time

import pytest
import schemathesis
from allauth.account.internal.flows.login import (
    _AUTHENTICATION_METHODS_USER_SESSION_KEY,
    AUTHENTICATION_METHODS_SESSION_KEY,
)
from django.conf import settings as django_settings
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils.crypto import get_random_string
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from accounts.models import Token
from tests.logs.helpers import funded_user_with_token, settle
from tokens.services import token_create

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def wsgi_app(db):
    """Django's WSGI app, serving inside the test's transaction.

    Like Django's test client, keep the end of a request from closing the database
    connection: it holds the test's transaction.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(wsgi_app):
    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)


@pytest.fixture
def signed_in(client, user):
    """Session and CSRF cookies and header of a user who signed in just now and has data to read."""
    token = funded_user_with_token(user)
    for _ in range(3):
        settle(token)
    for number in range(5):
        token_create(user=user, name=f"more {number}")
    client.force_login(user)
    session = client.session
    # A recent sign-in: creating a token asks for one.
    session[AUTHENTICATION_METHODS_SESSION_KEY] = [{"method": "password", "at": time.time()}]
    session[_AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(user.pk)
    session.save()
    csrf = get_random_string(32)
    return {
        "headers": {"X-CSRFToken": csrf},
        # As cookies, not a Cookie header: the WSGI transport sets the header from these.
        "cookies": {django_settings.SESSION_COOKIE_NAME: session.session_key, "csrftoken": csrf},
    }


def _aim_at_an_own_token(case, user) -> None:
    """Point a well-formed token id at one of the user's tokens: random ids are all 404s."""
    token_id = case.path_parameters.get("id") if case.path_parameters else None
    if isinstance(token_id, int) and not isinstance(token_id, bool):
        ids = sorted(Token.objects.filter(user=user).values_list("pk", flat=True))
        if ids:
            case.path_parameters["id"] = ids[token_id % len(ids)]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_api_operation_answers_5xx_or_breaks_its_schema(api_schema, signed_in, user, mode):
    # Each operation gets its own Hypothesis run (schemathesis' pytest plugin cannot be
    # used with pytest 9: it reads the removed `Function._nodeid`); all are reported.
    failures = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 11  # every console API operation the schema lists

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case):
            _aim_at_an_own_token(case, user)
            case.call_and_validate(
                **signed_in,
                checks=[not_a_server_error, response_schema_conformance],
            )

        try:
            check()
        except Exception as error:
            failures.append(f"{operation.label}: {error}")

    assert not failures, "\n\n".join(failures)
