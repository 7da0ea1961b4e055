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

A price per unit (images, speech, transcription) bills what the request made or sent,
counted by the relay, at a price in micro-USD quoted per `UNIT_BASIS` of that unit:

    image:      cost_micro = ceil(price_per_image * images * group_ratio)
    character:  cost_micro = ceil(price_per_million_characters * characters / 1,000,000
                                  * group_ratio)
    second:     cost_micro = ceil(price_per_minute * seconds / 60 * group_ratio)

The price of an image depends on its size and quality (`image_price`): a table of
micro-USD per image whose most specific entry matching the request applies.

Rounding: exact decimal arithmetic, one rounding at the end, up to a whole micro-USD,
and at least 1 micro-USD: a priced request is never free.
"""

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any, Protocol

from django.utils.translation import gettext_noop

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


# --- Prices per unit ----------------------------------------------------------------------

UNIT_IMAGE = "image"
UNIT_CHARACTER = "character"
UNIT_SECOND = "second"
# How many counted units a unit price is quoted for: per image, per 1M characters, per
# minute (60 seconds).
UNIT_BASIS = {UNIT_IMAGE: 1, UNIT_CHARACTER: 1_000_000, UNIT_SECOND: 60}
# The entry of an image price table that prices any image no other entry matches.
ANY_IMAGE = "*"
# A key of an image price table: "*", a size ("1024x1792"), a quality ("hd"), or both
# ("hd 1024x1792"). Sizes and qualities are what OpenAI's `size` and `quality` take.
_SIZE = r"(?:\d{1,5}x\d{1,5}|auto)"
_QUALITY = r"[a-z]{1,16}"
_IMAGE_KEY = re.compile(rf"\*|{_SIZE}|{_QUALITY}|{_QUALITY} {_SIZE}")
MAX_IMAGE_PRICE_ENTRIES = 32
# The most a unit may cost (micro-USD): $1,000,000, far above any real price.
MAX_UNIT_PRICE = 10**12


def image_price_table_problem(table: Any) -> tuple[str, dict[str, Any]] | None:
    """Return what is wrong with an image price table, as an English msgid and its
    parameters (None if nothing): it maps "*" and optionally sizes, qualities or
    "quality size" to whole micro-USD above 0."""
    if not isinstance(table, dict) or not table:
        return gettext_noop("must map sizes and qualities to micro-USD per image"), {}
    if ANY_IMAGE not in table:
        return gettext_noop('must price "*", any image no other entry matches'), {}
    if len(table) > MAX_IMAGE_PRICE_ENTRIES:
        return gettext_noop("may have at most %(count)s entries"), {
            "count": MAX_IMAGE_PRICE_ENTRIES
        }
    for key, value in table.items():
        if not isinstance(key, str) or not _IMAGE_KEY.fullmatch(key):
            return gettext_noop(
                'has an entry that is not "*", a size, a quality or "quality size": %(key)s'
            ), {"key": repr(key)}
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_UNIT_PRICE:
            return gettext_noop(
                "prices %(key)s at %(value)s: a price is a whole number of micro-USD above 0"
            ), {"key": repr(key), "value": repr(value)}
    return None


def image_price(table: dict[str, int], *, size: str | None, quality: str | None) -> int:
    """Return the micro-USD of one image of `size` and `quality` in a (valid) price table:
    its "quality size" entry, else its size's, else its quality's, else "*"."""
    keys = []
    if quality and size:
        keys.append(f"{quality} {size}")
    if size:
        keys.append(size)
    if quality:
        keys.append(quality)
    for key in keys:
        if key in table:
            return table[key]
    return table[ANY_IMAGE]


@dataclass(frozen=True)
class UnitCostParts:
    """A unit-priced request's cost: the exact amount and the amount charged."""

    unit: str
    count: int
    unit_price: int  # micro-USD per UNIT_BASIS[unit] units
    exact: Decimal  # unit_price * count / basis * group_ratio
    cost: int  # `exact` rounded up to a whole micro-USD, at least 1


def unit_cost_parts(
    *, unit: str, unit_price: int, count: int, group_ratio: Decimal
) -> UnitCostParts:
    """Return what `count` units cost at `unit_price` (per `UNIT_BASIS[unit]` of them)."""
    if unit not in UNIT_BASIS:
        raise ValueError(f"Unknown unit {unit!r}.")
    if count < 0:
        raise ValueError("A count of units cannot be negative.")
    if unit_price <= 0:
        raise ValueError("A unit price must be greater than 0.")
    _require_positive(group_ratio=group_ratio)
    with localcontext(prec=_EXACT_PRECISION):
        exact = Decimal(unit_price) * count * group_ratio / UNIT_BASIS[unit]
        return UnitCostParts(unit, count, unit_price, exact, _round_up_to_micro(exact))


def unit_cost(*, unit: str, unit_price: int, count: int, group_ratio: Decimal) -> int:
    """Return what `count` units cost: micro-USD, rounded up, at least 1."""
    return unit_cost_parts(
        unit=unit, unit_price=unit_price, count=count, group_ratio=group_ratio
    ).cost
