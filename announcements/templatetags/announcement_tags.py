from typing import Any

from django import template

from announcements import selectors

register = template.Library()


@register.inclusion_tag("announcements/_home_card.html", takes_context=True)
def announcements_card(context: dict[str, Any]) -> dict[str, Any]:
    """Render the console home's card: pinned and latest announcements, unread badge."""
    user = context["request"].user
    return {
        "announcements": selectors.console_announcements(user=user),
        "unread": selectors.unread_count(user=user),
        "request": context["request"],
        "csrf_token": context.get("csrf_token"),
    }
