"""How prices read to people: USD per 1M tokens, USD per call, old → new."""

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from django.utils.translation import gettext_noop

from core.money import MICRO_PER_USD, format_usd_exact

from .models import CatalogModel, PriceChange
from .pricing import (
    MICRO_USD_PER_TOKEN_AT_RATIO_ONE,
    input_usd_per_million,
    output_usd_per_million,
)

MICRO_USD_PER_USD = MICRO_PER_USD
# Prices read to the micro-dollar: a price with more decimals is rounded half to even.
USD_PLACES = 6


def _micro(usd: Decimal) -> int:
    with localcontext(prec=80):
        return int((usd * MICRO_USD_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def price_text(micro: int | None) -> str:
    """Return a price as people read it, exact: `$1.25`, `$0.075`, `$1,200.00`, `—` for none.

    A price (per 1M tokens, per call) is not a balance: it keeps every decimal it has to
    the micro-dollar (`core.money.format_usd_exact`, the `usd_exact` filter), where a
    balance is floored to the cent (`format_usd`, the `usd` filter).
    """
    return "—" if micro is None else format_usd_exact(micro)


@dataclass(frozen=True)
class Prices:
    """A model's prices in micro-USD (to the micro-dollar), for the default group unless
    scaled by a group ratio. None: the model has no such price."""

    input_per_1m: int | None
    output_per_1m: int | None
    cached_input_per_1m: int | None
    per_call: int | None


def prices_of(
    *,
    model_ratio: Decimal | None,
    completion_ratio: Decimal | None,
    cached_ratio: Decimal | None,
    price_per_call: int | None,
    group_ratio: Decimal = Decimal(1),
) -> Prices:
    """Return the prices that a set of multipliers means."""
    with localcontext(prec=80):
        if model_ratio is None:
            call = (
                None
                if price_per_call is None
                else _micro(price_per_call * group_ratio / MICRO_USD_PER_USD)
            )
            return Prices(None, None, None, call)
        completion_ratio = completion_ratio or Decimal(1)
        input_price = input_usd_per_million(model_ratio=model_ratio, group_ratio=group_ratio)
        return Prices(
            input_per_1m=_micro(input_price),
            output_per_1m=_micro(
                output_usd_per_million(
                    model_ratio=model_ratio,
                    completion_ratio=completion_ratio,
                    group_ratio=group_ratio,
                )
            ),
            cached_input_per_1m=None
            if cached_ratio is None
            else _micro(input_price * cached_ratio),
            per_call=None,
        )


def model_prices(catalog_model: CatalogModel, group_ratio: Decimal = Decimal(1)) -> Prices:
    return prices_of(
        model_ratio=catalog_model.model_ratio,
        completion_ratio=catalog_model.completion_ratio,
        cached_ratio=catalog_model.cached_ratio,
        price_per_call=catalog_model.price_per_call,
        group_ratio=group_ratio,
    )


@dataclass(frozen=True)
class PriceLine:
    # An English msgid: a template translates it with {% translate line.label %}.
    label: str
    old: str
    new: str


def change_lines(change: PriceChange) -> list[PriceLine]:
    """Return what a change does, line by line, in USD (default group) or as a ratio."""
    if change.pricing_group_id:
        return [
            PriceLine(
                gettext_noop("Group multiplier"),
                f"x{change.old_group_ratio.normalize():f}" if change.old_group_ratio else "—",
                f"x{change.new_group_ratio.normalize():f}" if change.new_group_ratio else "—",
            )
        ]
    old = prices_of(
        model_ratio=change.old_model_ratio,
        completion_ratio=change.old_completion_ratio,
        cached_ratio=change.old_cached_ratio,
        price_per_call=change.old_price_per_call,
    )
    new = prices_of(
        model_ratio=change.new_model_ratio,
        completion_ratio=change.new_completion_ratio,
        cached_ratio=change.new_cached_ratio,
        price_per_call=change.new_price_per_call,
    )
    lines = []
    for label, before, after in [
        (gettext_noop("Input / 1M tokens"), old.input_per_1m, new.input_per_1m),
        (gettext_noop("Output / 1M tokens"), old.output_per_1m, new.output_per_1m),
        (
            gettext_noop("Cached input / 1M tokens"),
            old.cached_input_per_1m,
            new.cached_input_per_1m,
        ),
        (gettext_noop("Per call"), old.per_call, new.per_call),
    ]:
        if before != after:
            lines.append(PriceLine(label, price_text(before), price_text(after)))
    return lines


def price_preview_constants() -> dict[str, int]:
    """The numbers the admin's live price preview (static/js/admin-prices.js) computes with.

    Rendered into data attributes, so the script repeats `pricing`'s formula and
    `price_text`'s rounding without writing down a number of its own.
    """
    return {
        "micro_usd_per_token_at_ratio_one": MICRO_USD_PER_TOKEN_AT_RATIO_ONE,
        "micro_usd_per_usd": MICRO_USD_PER_USD,
        "usd_places": USD_PLACES,
    }
