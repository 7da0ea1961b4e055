"""`{% support_contact as support %}`: the platform's support contact, in any template.

A tag rather than a context processor: error pages and emails render without a request.
"""

from django import template

from core.links import SupportContact
from core.links import support_contact as configured_support_contact

register = template.Library()


@register.simple_tag
def support_contact() -> SupportContact | None:
    return configured_support_contact()
