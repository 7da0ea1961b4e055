"""The log generator: realistic rows, closed books, rollups that match."""

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User
from billing.log_generator import MODELS
from billing.selectors import books_drift
from logs.breakdown import cost_breakdown
from logs.models import RequestLog
from models_catalog.pricing import request_cost
from tests.logs.helpers import raw_aggregates, raw_ip_hours, rollup_aggregates, rollup_ip_hours

pytestmark = pytest.mark.django_db


def test_generate_writes_rows_the_books_and_rollups_agree_with():
    call_command(
        "generate_request_logs",
        "3000",
        "--user",
        "busy@example.com",
        "--other-users",
        "2",
        "--other-share",
        "0.2",
        "--days",
        "3",
        "--seed",
        "5",
        stdout=open("/dev/null", "w"),  # noqa: SIM115
    )
    busy = User.objects.get(email="busy@example.com")
    assert RequestLog.objects.count() == 3000
    assert 2200 < RequestLog.objects.filter(user=busy).count() < 2600
    assert RequestLog.objects.values("user_id").distinct().count() == 3
    assert RequestLog.objects.values("model").distinct().count() >= 6
    assert RequestLog.objects.filter(status_code__gte=400).exists()
    assert books_drift() == []
    for unit in ("minute", "hour", "day"):
        assert rollup_aggregates(unit) == raw_aggregates(unit)
    assert rollup_ip_hours() == raw_ip_hours()
    # Every answered row's cost is what its breakdown computes, exactly, cached ones too.
    answered = RequestLog.objects.filter(status_code=200)
    assert answered.filter(cached_tokens__gt=0).count() > 50
    assert answered.filter(price_per_call__isnull=False).exists()
    for row in answered:
        breakdown = cost_breakdown(row)
        assert breakdown.computed == row.cost, row
        assert breakdown.is_exact
        assert breakdown.note == ""


def test_generated_rows_are_priced_by_the_pricing_formula():
    mini = next(model for model in MODELS if model.name == "gpt-4o-mini")
    # (234 + 1000 * 0.5 + 567 * 4) * 0.075 * 2 = 450.3 → 451
    assert request_cost(mini, prompt_tokens=1234, completion_tokens=567, cached_tokens=1000) == 451
    dall_e = next(model for model in MODELS if model.price_per_call is not None)
    assert request_cost(dall_e, prompt_tokens=10) == dall_e.price_per_call


def test_generate_refuses_bad_arguments():
    with pytest.raises(CommandError, match="positive"):
        call_command("generate_request_logs", "0", "--user", "x@example.com")
    with pytest.raises(CommandError, match="LOG_RETENTION_DAYS"):
        call_command("generate_request_logs", "10", "--user", "x@example.com", "--days", "400")
