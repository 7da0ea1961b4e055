from typing import Any

from django import template

from models_catalog.views import subscription_context

register = template.Library()


@register.inclusion_tag("models_catalog/_subscription_card.html", takes_context=True)
def price_change_emails_card(context: dict[str, Any]) -> dict[str, Any]:
    """Render the profile's "Price change emails" card for the signed-in user."""
    request = context["request"]
    return {
        **subscription_context(request),
        "request": request,
        "csrf_token": context.get("csrf_token"),
    }
