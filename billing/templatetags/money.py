from django import template

from billing.money import format_minor, format_usd

register = template.Library()


@register.filter
def usd(micro: int | None) -> str:
    """Render integer micro-USD as dollars (`$12.50`); empty for None."""
    return "" if micro is None else format_usd(micro)


@register.filter
def charge(order: object) -> str:
    """An order's charge in its payment currency: `{{ order|charge }}`."""
    return format_minor(order.amount_minor, order.currency)  # type: ignore[attr-defined]
