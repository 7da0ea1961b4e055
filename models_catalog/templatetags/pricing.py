from decimal import Decimal

from django import template

from models_catalog.display import usd as format_usd

register = template.Library()


@register.filter
def usd(amount: Decimal | None) -> str:
    """Render USD with 2 to 6 decimals: `$2.50`, `$0.075`, `—` for none."""
    return format_usd(amount)


@register.filter
def ratio(value: Decimal | None) -> str:
    """Render a multiplier without trailing zeros: `1.25`, `4`, `—` for none."""
    return "—" if value is None else f"{value.normalize():f}"
