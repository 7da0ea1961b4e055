"""Refused requests in the console: listed on their own, counted beside the log, charted."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.services import log_retention_run
from logs.data import RefusalData
from logs.models import Refusal
from logs.services import refusals_record
from tests.factories import UserFactory
from tests.logs.helpers import funded_user_with_token, settle

pytestmark = pytest.mark.django_db


def _refuse(token, *, seconds_ago: int, code="rate_limit_exceeded", status=429, count=1):
    second = (timezone.now() - timedelta(seconds=seconds_ago)).replace(microsecond=0)
    refusals_record(
        [
            RefusalData(
                second=second,
                user_id=token.user_id,
                token_id=token.pk,
                token_name=token.name,
                status_code=status,
                error_code=code,
                model="gpt-4o",
                client_ip="203.0.113.7",
                count=count,
            )
        ]
    )


@pytest.fixture
def refused(user):
    """The user's 2 answered requests and 12 refusals in 3 rows; a stranger's 50 refusals."""
    token = funded_user_with_token(user, name="main")
    settle(token, cost=1000, created_at=timezone.now() - timedelta(minutes=1))
    settle(token, cost=1000, created_at=timezone.now() - timedelta(minutes=2))
    _refuse(token, seconds_ago=30, count=10)
    _refuse(token, seconds_ago=40, code="model_not_found", status=404)
    _refuse(token, seconds_ago=50, code="insufficient_quota", status=402)
    stranger = funded_user_with_token(UserFactory(), name="stranger")
    _refuse(stranger, seconds_ago=30, count=50)
    return token


def test_the_log_says_how_many_were_refused_and_links_to_them(user_client, refused):
    html = user_client.get(reverse("console:logs")).content.decode()

    assert "12 requests were refused in this range" in html
    assert "status=refused" in html


def test_status_refused_lists_the_users_refusals_with_their_counts(user_client, refused):
    response = user_client.get(reverse("console:logs"), {"status": "refused"})

    assert response.status_code == 200
    html = response.content.decode()
    assert "rate_limit_exceeded" in html
    assert "10 times" in html
    assert "model_not_found" in html
    assert "insufficient_quota" in html
    assert "stranger" not in html


def test_refusals_filter_by_status_code_and_token(user_client, refused):
    response = user_client.get(reverse("console:logs"), {"status": "404"})
    # A status code lists requests; the note counts the refusals with that code
    assert "1 request was refused in this range" in response.content.decode()

    response = user_client.get(reverse("console:logs"), {"status": "ok"})
    assert "refused in this range" not in response.content.decode()


def test_htmx_gets_the_refusals_fragment(user_client, refused):
    response = user_client.get(
        reverse("console:logs"), {"status": "refused"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    assert 'id="refusal-table"' in response.content.decode()
    assert "<html" not in response.content.decode()


def test_the_errors_chart_counts_failed_and_refused_requests_per_hour(user_client, refused):
    settle(refused, cost=0, status_code=502, error_code="upstream_error")

    data = user_client.get(reverse("logs:chart-errors")).json()

    failed, refused_counts = (dataset["data"] for dataset in data["datasets"])
    assert len(data["labels"]) == 24
    assert sum(failed) == 1
    assert sum(refused_counts) == 12
    assert user_client.get(reverse("logs:chart-errors"), {"window": "1y"}).status_code == 400


def test_retention_deletes_old_refusals(refused):
    _refuse(refused, seconds_ago=400 * 86_400)

    log_retention_run()

    assert sum(Refusal.objects.values_list("count", flat=True)) == 12 + 50
