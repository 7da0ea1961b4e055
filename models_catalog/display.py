"""How prices read to people: USD per 1M tokens, USD per call, old → new."""

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from django.utils.translation import gettext, gettext_noop

from core.money import MICRO_PER_USD, format_usd_exact

from .models import CatalogModel, PriceChange
from .pricing import (
    ANY_IMAGE,
    MICRO_USD_PER_TOKEN_AT_RATIO_ONE,
    UNIT_CHARACTER,
    UNIT_IMAGE,
    UNIT_SECOND,
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
class UnitPrice:
    """One price per unit, in micro-USD for the group: per image (of the sizes and
    qualities `key` names, "*" for any other), per 1M characters or per minute."""

    unit: str  # models_catalog.pricing.UNIT_IMAGE, UNIT_CHARACTER or UNIT_SECOND
    micro: int
    key: str = ""

    @property
    def named_key(self) -> str:
        """The sizes and qualities an image price is for ("" for any image)."""
        return "" if self.key == ANY_IMAGE else self.key


@dataclass(frozen=True)
class Prices:
    """A model's prices in micro-USD (to the micro-dollar), for the default group unless
    scaled by a group ratio. None: the model has no such price."""

    input_per_1m: int | None
    output_per_1m: int | None
    cached_input_per_1m: int | None
    per_call: int | None
    # Prices per image (each size and quality of its table), per 1M characters, per minute.
    per_unit: tuple[UnitPrice, ...] = ()


def _scaled(micro: int, group_ratio: Decimal) -> int:
    """Return a price in micro-USD times a group ratio, read to the micro-dollar."""
    with localcontext(prec=80):
        return _micro(micro * group_ratio / MICRO_USD_PER_USD)


def _unit_prices(
    *,
    price_per_image: dict[str, int] | None,
    price_per_million_characters: int | None,
    price_per_minute: int | None,
    group_ratio: Decimal,
) -> tuple[UnitPrice, ...]:
    prices = []
    if isinstance(price_per_image, dict):
        # "*" first, then the named sizes and qualities in order.
        for key in sorted(price_per_image, key=lambda key: (key != ANY_IMAGE, key)):
            value = price_per_image[key]
            if isinstance(value, int):
                prices.append(UnitPrice(UNIT_IMAGE, _scaled(value, group_ratio), key))
    if price_per_million_characters is not None:
        prices.append(UnitPrice(UNIT_CHARACTER, _scaled(price_per_million_characters, group_ratio)))
    if price_per_minute is not None:
        prices.append(UnitPrice(UNIT_SECOND, _scaled(price_per_minute, group_ratio)))
    return tuple(prices)


def unit_price_text(price: UnitPrice, *, with_key: bool = True) -> str:
    """Return one price per unit as people read it: `$0.04 / image`, `hd 1024x1792: $0.08 /
    image` (without the sizes and qualities unless `with_key`), `$15.00 / 1M characters`,
    `$0.006 / minute`."""
    amount = price_text(price.micro)
    if price.unit == UNIT_CHARACTER:
        return gettext("%(price)s / 1M characters") % {"price": amount}
    if price.unit == UNIT_SECOND:
        return gettext("%(price)s / minute") % {"price": amount}
    if with_key and price.named_key:
        return gettext("%(size)s: %(price)s / image") % {"size": price.key, "price": amount}
    return gettext("%(price)s / image") % {"price": amount}


def prices_of(
    *,
    model_ratio: Decimal | None,
    completion_ratio: Decimal | None,
    cached_ratio: Decimal | None,
    price_per_call: int | None,
    group_ratio: Decimal = Decimal(1),
    price_per_image: dict[str, int] | None = None,
    price_per_million_characters: int | None = None,
    price_per_minute: int | None = None,
) -> Prices:
    """Return the prices that a set of multipliers and unit prices means."""
    with localcontext(prec=80):
        if model_ratio is None:
            call = None if price_per_call is None else _scaled(price_per_call, group_ratio)
            per_unit = _unit_prices(
                price_per_image=price_per_image,
                price_per_million_characters=price_per_million_characters,
                price_per_minute=price_per_minute,
                group_ratio=group_ratio,
            )
            return Prices(None, None, None, call, per_unit)
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
        price_per_image=catalog_model.price_per_image,
        price_per_million_characters=catalog_model.price_per_million_characters,
        price_per_minute=catalog_model.price_per_minute,
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
        price_per_image=change.old_price_per_image,
        price_per_million_characters=change.old_price_per_million_characters,
        price_per_minute=change.old_price_per_minute,
    )
    new = prices_of(
        model_ratio=change.new_model_ratio,
        completion_ratio=change.new_completion_ratio,
        cached_ratio=change.new_cached_ratio,
        price_per_call=change.new_price_per_call,
        price_per_image=change.new_price_per_image,
        price_per_million_characters=change.new_price_per_million_characters,
        price_per_minute=change.new_price_per_minute,
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
    for label, unit in [
        (gettext_noop("Per image"), UNIT_IMAGE),
        (gettext_noop("Per 1M characters"), UNIT_CHARACTER),
        (gettext_noop("Per minute"), UNIT_SECOND),
    ]:
        before_text = _unit_line(old.per_unit, unit)
        after_text = _unit_line(new.per_unit, unit)
        if before_text != after_text:
            lines.append(PriceLine(label, before_text, after_text))
    return lines


def _unit_line(prices: tuple[UnitPrice, ...], unit: str) -> str:
    """Return a model's prices of one unit on one line: `$0.04`, `*: $0.04, hd: $0.08`."""
    of_unit = [price for price in prices if price.unit == unit]
    if not of_unit:
        return "—"
    if len(of_unit) == 1:
        return price_text(of_unit[0].micro)
    return ", ".join(f"{price.key}: {price_text(price.micro)}" for price in of_unit)


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
