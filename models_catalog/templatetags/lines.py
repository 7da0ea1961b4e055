from typing import Any

from django import template

from models_catalog import selectors

register = template.Library()

# The models named on the card; the pricing page lists them all.
CARD_MODELS = 12


@register.inclusion_tag("models_catalog/_your_line_card.html", takes_context=True)
def your_line_card(context: dict[str, Any]) -> dict[str, Any]:
    """Render the profile's "Your line" card: the signed-in user's line, what it may call
    and the account's limits."""
    user = context["request"].user
    group = selectors.pricing_group_of(user)
    line = selectors.line_of(pricing_group_id=group.pk)
    names = selectors.line_model_names(line)
    return {
        "group": group,
        "line": line,
        "limits": selectors.user_account_limits(user),
        "model_count": len(names),
        "models_shown": names[:CARD_MODELS],
    }
