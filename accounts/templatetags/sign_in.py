"""Filters of the sign-in pages (templates/account/_field.html)."""

from django import template
from django.forms import BoundField
from django.utils.safestring import SafeString

register = template.Library()


@register.filter
def without_placeholder(field: BoundField) -> SafeString:
    """Render `field`'s input without allauth's placeholder: the label above says it."""
    return field.as_widget(attrs={"placeholder": False})
