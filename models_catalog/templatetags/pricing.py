from decimal import Decimal

from django import template

from models_catalog.display import UnitPrice, unit_price_text

register = template.Library()


@register.filter
def ratio(value: Decimal | None) -> str:
    """Render a multiplier without trailing zeros: `1.25`, `4`, `—` for none.

    Prices and amounts are micro-USD, shown by `billing`'s `money` filters.
    """
    return "—" if value is None else f"{value.normalize():f}"


@register.filter
def unit_price(price: UnitPrice) -> str:
    """Render a price per unit: `$0.04 / image`, `$0.006 / minute` (an image price's sizes and
    qualities, API values, are the template's to show as code)."""
    return unit_price_text(price, with_key=False)
