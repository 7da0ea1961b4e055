from typing import Any

from django import template

from billing.views import low_balance_context

register = template.Library()


@register.inclusion_tag("billing/_low_balance_card.html", takes_context=True)
def low_balance_alert_card(context: dict[str, Any]) -> dict[str, Any]:
    """Render the profile's "Low-balance email" card for the signed-in user."""
    request = context["request"]
    return {
        **low_balance_context(user_id=request.user.pk),
        "request": request,
        "csrf_token": context.get("csrf_token"),
    }
