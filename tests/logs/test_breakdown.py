# ruff: noqa: RUF001, RUF003 (the multiplication sign is what the breakdown shows)
"""The per-row cost breakdown shows the formula with that request's numbers."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from logs.breakdown import cost_breakdown
from logs.models import RequestLog
from models_catalog.pricing import billed_cached_ratio, request_cost
from tests.models_catalog.test_pricing import prices, tokens


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
    assert per_call.worked == "ceil(40,000 × 0.8) = ceil(32000) = 32,000 micro-USD"
    rounded = cost_breakdown(_row(price_per_call=3, group_ratio=Decimal("0.5"), cost=2))
    assert rounded.worked == "ceil(3 × 0.5) = ceil(1.5) = 2 micro-USD"
    assert rounded.note == ""


def test_a_cached_request_is_exact_from_the_ratio_its_row_keeps():
    # 1000 prompt tokens, 800 of them cached at 0.5: (200 + 800 × 0.5 + 500 × 4) × 0.075 × 2
    row = _row(cached_tokens=800, cached_ratio=Decimal("0.5"), cost=390)
    breakdown = cost_breakdown(row)
    assert breakdown.computed == breakdown.charged == 390
    assert breakdown.is_exact
    assert breakdown.note == ""
    assert "cached ratio" in breakdown.formula
    assert breakdown.worked == (
        "ceil((200 + 800 × 0.5 + 500 × 4) × 0.075 × 1 × 2) = ceil(390) = 390 micro-USD"
    )


def test_cached_tokens_of_a_model_without_a_cached_price_are_billed_as_input():
    # The relay records ratio 1 then: the breakdown is the plain formula, and exact.
    breakdown = cost_breakdown(_row(cached_tokens=800, cached_ratio=Decimal(1), cost=450))
    assert breakdown.computed == 450
    assert breakdown.is_exact
    assert breakdown.note == ""


def test_an_old_cached_row_without_its_ratio_says_the_breakdown_is_approximate():
    # Written before cached_ratio was kept: charged 390, the ratio unknown.
    breakdown = cost_breakdown(_row(cached_tokens=800, cached_ratio=None, cost=390))
    assert breakdown.computed == 450  # the cached tokens counted as input
    assert not breakdown.is_exact
    assert "approximation" in breakdown.note
    assert "800 cached prompt tokens" in breakdown.note
    # Without cached tokens the missing ratio changes nothing.
    plain = cost_breakdown(_row(cached_ratio=None))
    assert plain.computed == 450
    assert plain.is_exact
    assert plain.note == ""


def test_an_answer_without_tokens_costs_the_least_there_is():
    breakdown = cost_breakdown(_row(prompt_tokens=0, completion_tokens=0, cost=1))
    assert breakdown.computed == 1
    assert "the least a request costs is 1 micro-USD" in breakdown.worked
    assert breakdown.note == ""


def test_a_discrepancy_is_explained():
    # A row from before every answered request was charged in full.
    undercharged = cost_breakdown(_row(cost=100))
    assert "until 2026-12-05" in undercharged.note
    assert undercharged.is_exact
    overcharged = cost_breakdown(_row(cost=500))
    assert "contact support" in overcharged.note
    failed = cost_breakdown(_row(status_code=502, prompt_tokens=0, completion_tokens=0, cost=0))
    assert failed.computed is None
    assert "nothing to bill" in failed.worked
    assert failed.note == ""


@given(
    price=prices,
    prompt=tokens,
    completion=tokens,
    cached_share=st.floats(min_value=0, max_value=1.2),
)
def test_every_row_the_relay_writes_breaks_down_to_its_charge(
    price, prompt, completion, cached_share
):
    # A row as the relay writes it: its usage, its price, the charge.
    usage = {
        "prompt_tokens": 0 if price.price_per_call else prompt,
        "completion_tokens": 0 if price.price_per_call else completion,
        "cached_tokens": 0 if price.price_per_call else int(prompt * cached_share),
    }
    row = _row(
        **usage,
        model_ratio=price.model_ratio or Decimal(0),
        completion_ratio=price.completion_ratio,
        group_ratio=price.group_ratio,
        cached_ratio=billed_cached_ratio(price),
        price_per_call=price.price_per_call,
        cost=request_cost(price, **usage),
    )

    breakdown = cost_breakdown(row)

    assert breakdown.computed == row.cost
    assert breakdown.is_exact
    assert breakdown.note == ""
    assert breakdown.worked.endswith(f"{row.cost:,} micro-USD")
