# ruff: noqa: RUF001, RUF003 (the multiplication sign is what the breakdown shows)
"""The per-row cost breakdown shows the formula with that request's numbers."""

from decimal import Decimal

from logs.breakdown import cost_breakdown
from logs.models import RequestLog


def _row(**fields) -> RequestLog:
    defaults = {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "model_ratio": Decimal("0.075"),
        "completion_ratio": Decimal("4"),
        "group_ratio": Decimal("1"),
        "cost": 450,
        "status_code": 200,
    }
    return RequestLog(**{**defaults, **fields})


def test_a_token_priced_row_shows_its_numbers_and_the_result():
    breakdown = cost_breakdown(_row())
    # ceil((1000 + 500 × 4) × 0.075 × 1 × 2) = ceil(450) = 450
    assert breakdown.computed == 450
    assert breakdown.worked == "ceil((1,000 + 500 × 4) × 0.075 × 1 × 2) = ceil(450) = 450 micro-USD"
    assert breakdown.note == ""
    assert "completion ratio" in breakdown.formula


def test_rounding_up_is_shown():
    breakdown = cost_breakdown(
        _row(prompt_tokens=7, completion_tokens=3, model_ratio=Decimal("0.0375"), cost=2)
    )
    # (7 + 12) × 0.0375 × 2 = 1.425 → 2
    assert breakdown.computed == 2
    assert "ceil(1.425) = 2 micro-USD" in breakdown.worked


def test_a_group_ratio_and_a_per_call_price():
    per_call = cost_breakdown(_row(price_per_call=40_000, group_ratio=Decimal("0.8"), cost=32_000))
    assert per_call.computed == 32_000
    assert per_call.worked == "ceil(40,000 × 0.8) = 32,000 micro-USD"


def test_a_discrepancy_is_explained():
    cached = cost_breakdown(_row(cached_tokens=800, cost=300))
    assert "cached" in cached.note
    # A row from before every answered request was charged in full.
    undercharged = cost_breakdown(_row(cost=100))
    assert "until 2026-12-05" in undercharged.note
    failed = cost_breakdown(_row(status_code=502, prompt_tokens=0, completion_tokens=0, cost=0))
    assert failed.computed is None
    assert "nothing to bill" in failed.worked
