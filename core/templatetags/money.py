from django import template
from django.utils.html import format_html

from core.money import format_minor, format_owed, format_usd, format_usd_exact

register = template.Library()


def _amount(shown: str, exact: str, *, negative: bool) -> str:
    css = "money owed" if negative else "money"
    if shown.replace("\u2212", "-") == exact:
        return format_html('<span class="{}">{}</span>', css, shown)
    return format_html('<span class="{}" title="{}">{}</span>', css, exact, shown)


@register.filter
def usd(micro: int | None) -> str:
    """Render integer micro-USD by the display rule (`$7.99`, `$0.0058`, a minus sign).

    The exact amount is the title when the shown one is rounded; a negative amount
    carries the warning style. Empty for None.
    """
    if micro is None:
        return ""
    return _amount(format_usd(micro), format_usd_exact(micro), negative=micro < 0)


@register.filter
def owed(micro: int | None) -> str:
    """Render what an account owes (positive micro-USD), never shown less than it is."""
    if micro is None:
        return ""
    return _amount(format_owed(micro), format_usd_exact(micro), negative=True)


@register.filter
def usd_exact(micro: int | None) -> str:
    """Render integer micro-USD to the micro-dollar (`$0.001237`): breakdowns, titles."""
    return "" if micro is None else format_usd_exact(micro)


@register.filter
def charge(order: object) -> str:
    """An order's charge in its payment currency: `{{ order|charge }}`."""
    return format_minor(order.amount_minor, order.currency)  # type: ignore[attr-defined]
