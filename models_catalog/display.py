"""How prices read to people: USD per 1M tokens, USD per call, old → new."""

from dataclasses import dataclass
from decimal import Decimal

from .models import CatalogModel, PriceChange
from .pricing import (
    MICRO_USD_PER_TOKEN_AT_RATIO_ONE,
    input_usd_per_million,
    output_usd_per_million,
)

MICRO_USD_PER_USD = 1_000_000
# Prices read to the micro-dollar: `usd` rounds to this many decimals (half to even).
USD_PLACES = 6


def price(amount: Decimal | None) -> str:
    """Return a price as people read it, exact: `$1.25`, `$0.075`, `$1,200.00`, `—` for none.

    A price (per 1M tokens, per call) is not a balance: it keeps every decimal it has,
    at least 2 and at most 6, so the display rule of balances (`core.money.format_usd`,
    floored to the cent) does not apply to it.
    """
    if amount is None:
        return "—"
    text = f"{amount.quantize(Decimal(1).scaleb(-USD_PLACES)):f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${int(whole):,}.{fraction.ljust(2, '0')}"


def per_call_usd(price_per_call: int | None) -> Decimal | None:
    return None if price_per_call is None else Decimal(price_per_call) / MICRO_USD_PER_USD


@dataclass(frozen=True)
class Prices:
    """A model's prices in USD, for the default group unless scaled by a group ratio."""

    input_per_1m: Decimal | None
    output_per_1m: Decimal | None
    cached_input_per_1m: Decimal | None
    per_call: Decimal | None


def prices_of(
    *,
    model_ratio: Decimal | None,
    completion_ratio: Decimal | None,
    cached_ratio: Decimal | None,
    price_per_call: int | None,
    group_ratio: Decimal = Decimal(1),
) -> Prices:
    """Return the USD prices that a set of multipliers means."""
    if model_ratio is None:
        call = per_call_usd(price_per_call)
        return Prices(None, None, None, None if call is None else call * group_ratio)
    completion_ratio = completion_ratio or Decimal(1)
    input_price = input_usd_per_million(model_ratio=model_ratio, group_ratio=group_ratio)
    return Prices(
        input_per_1m=input_price,
        output_per_1m=output_usd_per_million(
            model_ratio=model_ratio, completion_ratio=completion_ratio, group_ratio=group_ratio
        ),
        cached_input_per_1m=None if cached_ratio is None else input_price * cached_ratio,
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
    label: str
    old: str
    new: str


def change_lines(change: PriceChange) -> list[PriceLine]:
    """Return what a change does, line by line, in USD (default group) or as a ratio."""
    if change.pricing_group_id:
        return [
            PriceLine(
                "Group multiplier",
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
        ("Input / 1M tokens", old.input_per_1m, new.input_per_1m),
        ("Output / 1M tokens", old.output_per_1m, new.output_per_1m),
        ("Cached input / 1M tokens", old.cached_input_per_1m, new.cached_input_per_1m),
        ("Per call", old.per_call, new.per_call),
    ]:
        if before != after:
            lines.append(PriceLine(label, price(before), price(after)))
    return lines


def price_preview_constants() -> dict[str, int]:
    """The numbers the admin's live price preview (static/js/admin-prices.js) computes with.

    Rendered into data attributes, so the script repeats `pricing`'s formula and `usd`'s
    rounding without writing down a number of its own.
    """
    return {
        "micro_usd_per_token_at_ratio_one": MICRO_USD_PER_TOKEN_AT_RATIO_ONE,
        "micro_usd_per_usd": MICRO_USD_PER_USD,
        "usd_places": USD_PLACES,
    }
