"""The log generator: realistic rows, closed books, rollups that match."""

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User
from billing.log_generator import MODELS, cost_of
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
    # Every answered row's cost is what its breakdown computes
    for row in RequestLog.objects.filter(status_code=200)[:300]:
        assert cost_breakdown(row).computed == row.cost


def test_generated_costs_follow_the_pricing_formula():
    chat = MODELS[0]
    for prompt, completion in ((1, 0), (1234, 567), (100_000, 20_000)):
        assert cost_of(chat, prompt, completion) == request_cost(
            prompt_tokens=prompt,
            completion_tokens=completion,
            model_ratio=chat.model_ratio,
            completion_ratio=chat.completion_ratio,
            group_ratio=chat.model_ratio / chat.model_ratio,
        )


def test_generate_refuses_bad_arguments():
    with pytest.raises(CommandError, match="positive"):
        call_command("generate_request_logs", "0", "--user", "x@example.com")
    with pytest.raises(CommandError, match="LOG_RETENTION_DAYS"):
        call_command("generate_request_logs", "10", "--user", "x@example.com", "--days", "400")
