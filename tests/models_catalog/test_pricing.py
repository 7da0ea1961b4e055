from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models_catalog.pricing import MAX_COST_MICRO, call_cost, request_cost

tokens = st.integers(min_value=0, max_value=10**8)
# Ratios as stored: up to 6 decimals, above 0; up to 1000 covers every real price
# (model_ratio 1000 = $2,000 per 1M tokens).
ratios = st.decimals(
    min_value=Decimal("0.000001"), max_value=Decimal(1000), places=6, allow_nan=False
)


def cost(
    prompt, completion, model_ratio, completion_ratio=Decimal(1), group_ratio=Decimal(1), **kw
):
    return request_cost(
        prompt_tokens=prompt,
        completion_tokens=completion,
        model_ratio=model_ratio,
        completion_ratio=completion_ratio,
        group_ratio=group_ratio,
        **kw,
    )


def test_ratio_one_costs_two_micro_usd_per_token():
    # Given model_ratio 1 = $2 per 1M tokens, when 1M tokens are priced, then $2 exactly.
    assert cost(1_000_000, 0, Decimal(1)) == 2_000_000
    assert cost(500_000, 500_000, Decimal(1)) == 2_000_000


def test_the_formula_with_every_ratio():
    # gpt-4o: ratio 1.25, completion 4, a 0.9 group: (1000 + 500 * 4) * 1.25 * 0.9 * 2
    assert cost(1000, 500, Decimal("1.25"), Decimal(4), Decimal("0.9")) == 6750


def test_rounds_up_to_a_whole_micro_usd_and_never_to_zero():
    # 1 token at ratio 0.01 = 0.02 micro-USD → 1, not 0.
    assert cost(1, 0, Decimal("0.01")) == 1
    # 3 tokens at 0.25 = 1.5 micro-USD → 2.
    assert cost(3, 0, Decimal("0.25")) == 2
    assert cost(0, 0, Decimal("0.01")) == 1


def test_cached_tokens_are_part_of_the_prompt_and_billed_at_the_cached_ratio():
    # 1000 prompt tokens of which 800 cached at 0.1: (200 + 80) * 1.5 * 2 = 840
    assert cost(1000, 0, Decimal("1.5"), cached_tokens=800, cached_ratio=Decimal("0.1")) == 840
    # Without a cached ratio, cached tokens cost like any input token.
    assert cost(1000, 0, Decimal("1.5"), cached_tokens=800) == 3000


def test_refuses_impossible_inputs():
    with pytest.raises(ValueError, match="cannot exceed"):
        cost(10, 0, Decimal(1), cached_tokens=11, cached_ratio=Decimal("0.5"))
    with pytest.raises(ValueError, match="negative"):
        cost(-1, 0, Decimal(1))
    with pytest.raises(ValueError, match="greater than 0"):
        cost(1, 0, Decimal(0))
    with pytest.raises(TypeError):
        cost(1, 0, 1.5)  # a float is never a price


def test_per_call_price_times_the_group_ratio_rounded_up():
    assert call_cost(price_per_call=40_000, group_ratio=Decimal("0.9")) == 36_000
    assert call_cost(price_per_call=3, group_ratio=Decimal("0.5")) == 2
    with pytest.raises(ValueError, match="greater than 0"):
        call_cost(price_per_call=0, group_ratio=Decimal(1))


@given(
    prompt=tokens,
    completion=tokens,
    model_ratio=ratios,
    completion_ratio=ratios,
    group_ratio=ratios,
)
def test_cost_is_a_positive_integer_that_fits_in_bigint(
    prompt, completion, model_ratio, completion_ratio, group_ratio
):
    result = cost(prompt, completion, model_ratio, completion_ratio, group_ratio)

    assert isinstance(result, int)
    assert 1 <= result <= MAX_COST_MICRO
    exact = (prompt + completion * completion_ratio) * model_ratio * group_ratio * 2
    assert result - 1 < exact <= result or (exact == 0 and result == 1)


@given(
    prompt=tokens,
    completion=tokens,
    extra=st.integers(min_value=0, max_value=10**6),
    model_ratio=ratios,
    completion_ratio=ratios,
    group_ratio=ratios,
)
def test_cost_is_monotonic_in_tokens(
    prompt, completion, extra, model_ratio, completion_ratio, group_ratio
):
    base = cost(prompt, completion, model_ratio, completion_ratio, group_ratio)

    assert cost(prompt + extra, completion, model_ratio, completion_ratio, group_ratio) >= base
    assert cost(prompt, completion + extra, model_ratio, completion_ratio, group_ratio) >= base


@given(
    prompt=tokens,
    cached_share=st.floats(min_value=0, max_value=1),
    model_ratio=ratios,
    cached_ratio=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(1), places=6),
)
def test_cached_tokens_never_cost_more_than_uncached_ones(
    prompt, cached_share, model_ratio, cached_ratio
):
    cached = int(prompt * cached_share)

    with_cache = cost(prompt, 0, model_ratio, cached_tokens=cached, cached_ratio=cached_ratio)

    assert 1 <= with_cache <= cost(prompt, 0, model_ratio)


@given(
    price_per_call=st.integers(min_value=1, max_value=10**9),  # up to $1,000 a call
    group_ratio=ratios,
)
def test_call_cost_is_the_price_times_the_group_ratio_rounded_up(price_per_call, group_ratio):
    result = call_cost(price_per_call=price_per_call, group_ratio=group_ratio)

    exact = price_per_call * group_ratio
    assert isinstance(result, int)
    assert 1 <= result <= MAX_COST_MICRO
    assert result - 1 < exact <= result or (exact < 1 and result == 1)
