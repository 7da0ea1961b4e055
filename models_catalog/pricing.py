"""The one place a request's price is computed: the relay's charge, a log row's breakdown
and the demo logs all come from `request_cost_parts`.

A per-token price:

    cost_micro = ceil((prompt + completion * completion_ratio) * model_ratio * group_ratio * 2)

`model_ratio` 1.0 is $2 per 1M tokens, i.e. 2 micro-USD per token, hence the * 2.

Cached input tokens are a part of `prompt_tokens` (as OpenAI reports them in
`prompt_tokens_details.cached_tokens`). When the price has a `cached_ratio`, each of them
is billed at `model_ratio * cached_ratio` instead of `model_ratio`:

    weighted = (prompt - cached) + cached * cached_ratio + completion * completion_ratio
    cost_micro = ceil(weighted * model_ratio * group_ratio * 2)

Without a `cached_ratio`, cached tokens cost what other input tokens cost. A count of
cached tokens above the prompt's (an upstream's mistake) counts as the whole prompt.

A per-call price (images, video, music) ignores tokens:

    cost_micro = ceil(price_per_call * group_ratio)

Rounding: exact decimal arithmetic, one rounding at the end, up to a whole micro-USD,
and at least 1 micro-USD: a priced request is never free.
"""

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Protocol

MICRO_USD_PER_TOKEN_AT_RATIO_ONE = 2
# Costs are stored in BIGINT columns.
MAX_COST_MICRO = 2**63 - 1
# Enough digits that no product of tokens (≤ 10^12) and 12-digit ratios is ever rounded.
_EXACT_PRECISION = 80
_ZERO = Decimal(0)


class Price(Protocol):
    """What a request is priced with: the ratios of a per-token price, or a per-call price.

    `models_catalog.selectors.ModelPrice` (the relay's) is one, and so is `Rates`
    (built from a log row, or written down). A price per call wins over the ratios.
    """

    @property
    def model_ratio(self) -> Decimal | None: ...

    @property
    def completion_ratio(self) -> Decimal: ...

    @property
    def cached_ratio(self) -> Decimal | None: ...

    @property
    def group_ratio(self) -> Decimal: ...

    @property
    def price_per_call(self) -> int | None: ...


@dataclass(frozen=True, kw_only=True)
class Rates:
    """A price written down: per token (`model_ratio` and friends) or per call."""

    model_ratio: Decimal | None = None
    completion_ratio: Decimal = Decimal(1)
    cached_ratio: Decimal | None = None
    group_ratio: Decimal = Decimal(1)
    price_per_call: int | None = None


@dataclass(frozen=True)
class CostParts:
    """A request's cost in the parts the formula adds up, and the sum rounded up once.

    Amounts are exact micro-USD (Decimal) before the rounding; `cost` is what is charged.
    For a per-call price only `call` is not zero; for a per-token price `call` is zero.
    """

    is_per_call: bool
    # The tokens of each part (per-token prices): the prompt's tokens billed as input,
    # those billed at the cached ratio (0 without one) and the completion's.
    input_tokens: int
    cached_tokens: int
    completion_tokens: int
    input: Decimal  # input_tokens * model_ratio * group_ratio * 2
    cached_input: Decimal  # cached_tokens * cached_ratio * model_ratio * group_ratio * 2
    output: Decimal  # completion_tokens * completion_ratio * model_ratio * group_ratio * 2
    call: Decimal  # price_per_call * group_ratio
    exact: Decimal  # the sum of the parts
    cost: int  # `exact` rounded up to a whole micro-USD, at least 1


def _round_up_to_micro(amount: Decimal) -> int:
    cost = int(amount.to_integral_value(rounding=ROUND_CEILING))
    if cost > MAX_COST_MICRO:
        raise OverflowError("The cost does not fit in a 64-bit micro-USD amount.")
    return max(cost, 1)


def _require_positive(**ratios: Decimal) -> None:
    for name, ratio in ratios.items():
        if not isinstance(ratio, Decimal):
            raise TypeError(f"{name} must be a Decimal, not {type(ratio).__name__}.")
        if not ratio > 0:
            raise ValueError(f"{name} must be greater than 0.")


def request_cost_parts(
    price: Price, *, prompt_tokens: int = 0, completion_tokens: int = 0, cached_tokens: int = 0
) -> CostParts:
    """Return the parts of what a request with this usage costs at `price`, and the cost."""
    if prompt_tokens < 0 or completion_tokens < 0 or cached_tokens < 0:
        raise ValueError("Token counts cannot be negative.")
    group_ratio = price.group_ratio
    _require_positive(group_ratio=group_ratio)
    with localcontext(prec=_EXACT_PRECISION):
        if price.price_per_call is not None:
            if price.price_per_call <= 0:
                raise ValueError("price_per_call must be greater than 0.")
            call = price.price_per_call * group_ratio
            return CostParts(
                True, 0, 0, 0, _ZERO, _ZERO, _ZERO, call, call, _round_up_to_micro(call)
            )
        model_ratio, completion_ratio = price.model_ratio, price.completion_ratio
        if model_ratio is None:
            raise ValueError("The price has neither a model ratio nor a price per call.")
        _require_positive(model_ratio=model_ratio, completion_ratio=completion_ratio)
        cached_ratio = price.cached_ratio
        if cached_ratio is None:
            cached_tokens = 0  # billed as input
        else:
            _require_positive(cached_ratio=cached_ratio)
            cached_tokens = min(cached_tokens, prompt_tokens)
        per_token = model_ratio * group_ratio * MICRO_USD_PER_TOKEN_AT_RATIO_ONE
        input_tokens = prompt_tokens - cached_tokens
        input_part = input_tokens * per_token
        cached_part = cached_tokens * (cached_ratio or _ZERO) * per_token
        output_part = completion_tokens * completion_ratio * per_token
        exact = input_part + cached_part + output_part
        return CostParts(
            False,
            input_tokens,
            cached_tokens,
            completion_tokens,
            input_part,
            cached_part,
            output_part,
            _ZERO,
            exact,
            _round_up_to_micro(exact),
        )


def request_cost(
    price: Price, *, prompt_tokens: int = 0, completion_tokens: int = 0, cached_tokens: int = 0
) -> int:
    """Return what a request with this usage costs at `price`: micro-USD, rounded up, ≥ 1."""
    return request_cost_parts(
        price,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cached_tokens=cached_tokens,
    ).cost


def billed_cached_ratio(price: Price) -> Decimal | None:
    """Return the ratio a per-token price bills cached input tokens at (1 without one).

    What a log row records, so that its breakdown repeats the charge exactly. None for
    a per-call price, which bills no tokens.
    """
    if price.price_per_call is not None:
        return None
    return Decimal(1) if price.cached_ratio is None else price.cached_ratio


def input_usd_per_million(*, model_ratio: Decimal, group_ratio: Decimal = Decimal(1)) -> Decimal:
    """Return the input price in USD per 1M tokens that a model ratio means."""
    return model_ratio * group_ratio * MICRO_USD_PER_TOKEN_AT_RATIO_ONE


def output_usd_per_million(
    *, model_ratio: Decimal, completion_ratio: Decimal, group_ratio: Decimal = Decimal(1)
) -> Decimal:
    """Return the output price in USD per 1M tokens."""
    return input_usd_per_million(model_ratio=model_ratio, group_ratio=group_ratio) * (
        completion_ratio
    )
