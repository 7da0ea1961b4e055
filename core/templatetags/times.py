"""`{% load times %}`: `{{ moment|in_zone }}` → "2026-12-06 09:30 (Asia/Shanghai)", in the
active zone (the reader's on a page, the recipient's in an email); `|in_zone:"seconds"`
adds the seconds. `{% current_zone %}` is the active zone's name."""

from datetime import datetime

from django import template
from django.utils import timezone

from core.times import format_in_zone, zone_name

register = template.Library()


@register.filter
def in_zone(moment: datetime | None, precision: str = "") -> str:
    if moment is None:
        return ""
    return format_in_zone(moment, seconds=precision == "seconds")


@register.simple_tag
def current_zone() -> str:
    return zone_name(timezone.get_current_timezone())
