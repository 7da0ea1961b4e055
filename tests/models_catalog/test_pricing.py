from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models_catalog.pricing import (
    MAX_COST_MICRO,
    Rates,
    billed_cached_ratio,
    request_cost,
    request_cost_parts,
)
from models_catalog.selectors import ModelPrice

tokens = st.integers(min_value=0, max_value=10**8)
# Ratios as stored: up to 6 decimals, above 0; up to 1000 covers every real price
# (model_ratio 1000 = $2,000 per 1M tokens).
ratios = st.decimals(
    min_value=Decimal("0.000001"), max_value=Decimal(1000), places=6, allow_nan=False
)
# Any price there is: per token with or without a cached ratio, or per call.
per_token_prices = st.builds(
    Rates,
    model_ratio=ratios,
    completion_ratio=ratios,
    cached_ratio=st.none() | ratios,
    group_ratio=ratios,
)
per_call_prices = st.builds(
    Rates,
    price_per_call=st.integers(min_value=1, max_value=10**9),  # up to $1,000 a call
    group_ratio=ratios,
)
prices = per_token_prices | per_call_prices


def cost(
    prompt, completion, model_ratio, completion_ratio=Decimal(1), group_ratio=Decimal(1), **kw
):
    cached = kw.pop("cached_tokens", 0)
    price = Rates(
        model_ratio=model_ratio, completion_ratio=completion_ratio, group_ratio=group_ratio, **kw
    )
    return request_cost(
        price, prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached
    )


def call_cost(price_per_call, group_ratio):
    return request_cost(Rates(price_per_call=price_per_call, group_ratio=group_ratio))


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


def test_rounds_once_not_part_by_part():
    # Each part is 0.5 micro-USD: rounded one by one they would make 2, the sum is 1.
    price = Rates(model_ratio=Decimal("0.25"), cached_ratio=Decimal("1"))
    parts = request_cost_parts(price, prompt_tokens=2, completion_tokens=0, cached_tokens=1)
    assert parts.input == parts.cached_input == Decimal("0.5")
    assert parts.cost == 1


def test_cached_tokens_are_part_of_the_prompt_and_billed_at_the_cached_ratio():
    # 1000 prompt tokens of which 800 cached at 0.1: (200 + 80) * 1.5 * 2 = 840
    assert cost(1000, 0, Decimal("1.5"), cached_tokens=800, cached_ratio=Decimal("0.1")) == 840
    # Without a cached ratio, cached tokens cost like any input token.
    assert cost(1000, 0, Decimal("1.5"), cached_tokens=800) == 3000


def test_more_cached_tokens_than_prompt_tokens_count_as_the_whole_prompt():
    # An upstream reporting 11 cached tokens of a 10-token prompt: 10 are cached.
    assert cost(10, 0, Decimal(1), cached_tokens=11, cached_ratio=Decimal("0.5")) == 10
    parts = request_cost_parts(
        Rates(model_ratio=Decimal(1), cached_ratio=Decimal("0.5")),
        prompt_tokens=10,
        cached_tokens=11,
    )
    assert (parts.input_tokens, parts.cached_tokens) == (0, 10)


def test_refuses_impossible_inputs():
    with pytest.raises(ValueError, match="negative"):
        cost(-1, 0, Decimal(1))
    with pytest.raises(ValueError, match="greater than 0"):
        cost(1, 0, Decimal(0))
    with pytest.raises(ValueError, match="greater than 0"):
        cost(1, 0, Decimal(1), cached_tokens=1, cached_ratio=Decimal(0))
    with pytest.raises(TypeError):
        cost(1, 0, 1.5)  # a float is never a price
    with pytest.raises(ValueError, match="neither"):
        request_cost(Rates(), prompt_tokens=1)


def test_per_call_price_times_the_group_ratio_rounded_up():
    assert call_cost(40_000, Decimal("0.9")) == 36_000
    assert call_cost(3, Decimal("0.5")) == 2
    with pytest.raises(ValueError, match="greater than 0"):
        call_cost(0, Decimal(1))


def test_a_per_call_price_ignores_tokens_and_wins_over_ratios():
    price = Rates(model_ratio=Decimal(1), price_per_call=40_000, group_ratio=Decimal("0.8"))
    parts = request_cost_parts(price, prompt_tokens=10**6, completion_tokens=10**6)
    assert parts.is_per_call
    assert parts.cost == 32_000
    assert parts.input == parts.output == 0


def test_the_relays_model_price_is_a_price():
    price = ModelPrice(
        model_name="gpt-4o",
        kind="chat",
        model_ratio=Decimal("1.25"),
        completion_ratio=Decimal(4),
        cached_ratio=Decimal("0.5"),
        price_per_call=None,
        group_ratio=Decimal("0.9"),
        context_window=None,
    )
    # (200 + 800 * 0.5 + 500 * 4) * 1.25 * 0.9 * 2 = 5850
    assert request_cost(price, prompt_tokens=1000, completion_tokens=500, cached_tokens=800) == 5850


def test_the_cached_ratio_a_row_records():
    assert billed_cached_ratio(Rates(model_ratio=Decimal(1), cached_ratio=Decimal("0.1"))) == (
        Decimal("0.1")
    )
    # No cached price: cached tokens were billed as input, i.e. at ratio 1.
    assert billed_cached_ratio(Rates(model_ratio=Decimal(1))) == 1
    assert billed_cached_ratio(Rates(price_per_call=5)) is None


@given(
    price=prices,
    prompt=tokens,
    completion=tokens,
    cached_share=st.floats(min_value=0, max_value=1.2),
)
def test_the_parts_add_up_to_the_cost_rounded_up_once(price, prompt, completion, cached_share):
    cached = int(prompt * cached_share)

    parts = request_cost_parts(
        price, prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached
    )

    assert parts.cost == request_cost(
        price, prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached
    )
    # Rounded up once, to a whole micro-USD, never to 0.
    assert isinstance(parts.cost, int)
    assert 1 <= parts.cost <= MAX_COST_MICRO
    assert parts.cost - 1 < parts.exact <= parts.cost or (parts.exact < 1 and parts.cost == 1)
    with localcontext(prec=100):  # exact, as the formula is
        _assert_the_formula(parts, price, prompt, completion, cached)


def _assert_the_formula(parts, price, prompt, completion, cached):
    """The formula, written out independently of `pricing`."""
    assert parts.exact == parts.input + parts.cached_input + parts.output + parts.call
    if price.price_per_call is not None:
        assert parts.is_per_call
        assert parts.exact == price.price_per_call * price.group_ratio
    else:
        billed_cached = 0 if price.cached_ratio is None else min(cached, prompt)
        weighted = (
            (prompt - billed_cached)
            + billed_cached * (price.cached_ratio or 0)
            + completion * price.completion_ratio
        )
        assert parts.exact == weighted * price.model_ratio * price.group_ratio * 2
        assert parts.input_tokens + parts.cached_tokens == prompt
        assert parts.call == 0


@given(price=prices, prompt=tokens, completion=tokens)
def test_a_priced_request_never_costs_nothing(price, prompt, completion):
    assert request_cost(price, prompt_tokens=prompt, completion_tokens=completion) >= 1


@given(
    price=per_token_prices,
    prompt=tokens,
    completion=tokens,
    extra=st.integers(min_value=0, max_value=10**6),
)
def test_cost_is_monotonic_in_tokens(price, prompt, completion, extra):
    base = request_cost(price, prompt_tokens=prompt, completion_tokens=completion)

    assert request_cost(price, prompt_tokens=prompt + extra, completion_tokens=completion) >= base
    assert request_cost(price, prompt_tokens=prompt, completion_tokens=completion + extra) >= base


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
