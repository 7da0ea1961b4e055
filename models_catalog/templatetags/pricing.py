from decimal import Decimal

from django import template

from models_catalog.display import price as format_price

register = template.Library()


@register.filter
def price(amount: Decimal | None) -> str:
    """Render a price exactly, 2 to 6 decimals: `$2.50`, `$0.075`, `—` for none.

    Balances and charges use `usd` from `billing`'s `money` tags instead.
    """
    return format_price(amount)


@register.filter
def ratio(value: Decimal | None) -> str:
    """Render a multiplier without trailing zeros: `1.25`, `4`, `—` for none."""
    return "—" if value is None else f"{value.normalize():f}"
