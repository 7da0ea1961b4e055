from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def ratio(value: Decimal | None) -> str:
    """Render a multiplier without trailing zeros: `1.25`, `4`, `—` for none.

    Prices and amounts are micro-USD, shown by `billing`'s `money` filters.
    """
    return "—" if value is None else f"{value.normalize():f}"
