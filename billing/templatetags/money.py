from django import template

from billing.money import format_usd

register = template.Library()


@register.filter
def usd(micro: int | None) -> str:
    """Render integer micro-USD as dollars (`$12.50`); empty for None."""
    return "" if micro is None else format_usd(micro)
