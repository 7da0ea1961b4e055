"""The one place a request's price is computed (DESIGN.md, "Pricing formula").

    cost_micro = ceil((prompt + completion * completion_ratio) * model_ratio * group_ratio * 2)

`model_ratio` 1.0 is $2 per 1M tokens, i.e. 2 micro-USD per token, hence the * 2.

Cached input tokens are a part of `prompt_tokens` (as OpenAI reports them in
`prompt_tokens_details.cached_tokens`). When the model has a `cached_ratio`, each of them
is billed at `model_ratio * cached_ratio` instead of `model_ratio`:

    weighted = (prompt - cached) + cached * cached_ratio + completion * completion_ratio
    cost_micro = ceil(weighted * model_ratio * group_ratio * 2)

Without a `cached_ratio`, cached tokens cost what other input tokens cost.

Rounding: exact decimal arithmetic, one rounding at the end, up to a whole micro-USD,
and at least 1 micro-USD: a priced request is never free.
"""

from decimal import ROUND_CEILING, Decimal, localcontext

MICRO_USD_PER_TOKEN_AT_RATIO_ONE = 2
# Costs are stored in BIGINT columns.
MAX_COST_MICRO = 2**63 - 1
# Enough digits that no product of tokens (≤ 10^12) and 12-digit ratios is ever rounded.
_EXACT_PRECISION = 80


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


def request_cost(
    *,
    prompt_tokens: int,
    completion_tokens: int,
    model_ratio: Decimal,
    completion_ratio: Decimal,
    group_ratio: Decimal,
    cached_tokens: int = 0,
    cached_ratio: Decimal | None = None,
) -> int:
    """Return the cost in micro-USD of a per-token request, rounded up, at least 1."""
    if prompt_tokens < 0 or completion_tokens < 0 or cached_tokens < 0:
        raise ValueError("Token counts cannot be negative.")
    if cached_tokens > prompt_tokens:
        raise ValueError("Cached tokens are a part of the prompt tokens, so cannot exceed them.")
    _require_positive(
        model_ratio=model_ratio, completion_ratio=completion_ratio, group_ratio=group_ratio
    )
    with localcontext(prec=_EXACT_PRECISION):
        if cached_ratio is None:
            input_weight = Decimal(prompt_tokens)
        else:
            _require_positive(cached_ratio=cached_ratio)
            input_weight = Decimal(prompt_tokens - cached_tokens) + cached_tokens * cached_ratio
        weighted_tokens = input_weight + completion_tokens * completion_ratio
        amount = weighted_tokens * model_ratio * group_ratio * MICRO_USD_PER_TOKEN_AT_RATIO_ONE
        return _round_up_to_micro(amount)


def call_cost(*, price_per_call: int, group_ratio: Decimal) -> int:
    """Return the cost in micro-USD of a per-call request (image, video, music)."""
    if price_per_call <= 0:
        raise ValueError("price_per_call must be greater than 0.")
    _require_positive(group_ratio=group_ratio)
    with localcontext(prec=_EXACT_PRECISION):
        return _round_up_to_micro(price_per_call * group_ratio)


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
