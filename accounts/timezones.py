"""The time zone a person reads times in (README, "Time zones").

Their saved zone (`User.time_zone`), else the platform's (`PLATFORM_TIME_ZONE`). Times are
stored in UTC; the zone is applied where they are shown: pages
(`accounts.middleware.UserTimeZoneMiddleware`), emails (`accounts.locale.recipient_locale`),
the CSV export, the Logs page's filters and the usage charts' days.
"""

import functools
import zoneinfo
from datetime import tzinfo

from django.conf import settings

from accounts.models import User
from core.times import is_area_location_name


@functools.cache
def time_zone_names() -> tuple[str, ...]:
    """Return the IANA zone names a user may choose, sorted: "Area/Location" names and UTC.

    The tz database's old aliases (PRC, Japan, US/Eastern, Brazil/Acre...), `localtime`
    and `Factory` are left out; browsers report the same zones by their Area/Location
    names.
    """
    names = {name for name in zoneinfo.available_timezones() if is_area_location_name(name)}
    return tuple(sorted(names | {"UTC"}))


@functools.cache
def _known() -> frozenset[str]:
    return frozenset(time_zone_names())


def is_time_zone(name: object) -> bool:
    """Return whether `name` is a zone a user may choose; any other value is False, never
    an error."""
    return isinstance(name, str) and name in _known()


def platform_time_zone() -> tzinfo:
    """Return the platform's zone (PLATFORM_TIME_ZONE)."""
    return zoneinfo.ZoneInfo(settings.PLATFORM_TIME_ZONE)


def user_time_zone(user: object) -> tzinfo:
    """Return the zone `user` reads times in: their saved one, else the platform's.

    `user` may be anonymous or None (signed-out pages, emails to no account).
    """
    name = getattr(user, "time_zone", "") if isinstance(user, User) else ""
    if name and is_time_zone(name):
        return zoneinfo.ZoneInfo(name)
    return platform_time_zone()
