"""A customer debugging a 429 finds the refused requests from the Logs page."""

import pytest
from django.utils import timezone

from logs.data import RefusalData
from logs.services import refusals_record
from tests.factories import UserFactory
from tests.logs.helpers import funded_user_with_token, settle

from .conftest import SIZES, look, resize, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_refused_requests_are_found_from_the_logs_page_at_both_sizes(page):
    user = UserFactory()
    token = funded_user_with_token(user, name="production")
    settle(token, cost=1234)
    refusals_record(
        [
            RefusalData(
                second=timezone.now().replace(microsecond=0),
                user_id=user.pk,
                token_id=token.pk,
                token_name=token.name,
                status_code=429,
                error_code="rate_limit_exceeded",
                model="gpt-4o-mini",
                client_ip="2001:db8:85a3::8a2e:370:7334",
                count=38,
            )
        ]
    )
    sign_in(page, user)

    for size in SIZES:
        resize(page, size)
        page.goto("/logs/")
        note = page.locator("#refused-note")
        assert "38 requests were refused" in note.inner_text()
        note.get_by_role("link", name="Show refused requests").click()
        table = page.locator("#refusal-table")
        table.wait_for()
        assert "rate_limit_exceeded" in table.inner_text()
        assert "38 times" in table.inner_text()
        look(page, f"logs-refused-{size}")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), size
