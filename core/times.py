"""Times as a person reads them: in a zone, and naming it (README, "Time zones")."""

from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

# The areas of the tz database's zone names; Etc holds the fixed offsets (Etc/GMT+5).
TIME_ZONE_AREAS = (
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
    "Etc",
)


def is_area_location_name(name: str) -> bool:
    """Return whether `name` reads like a current tz database zone: "Area/Location" or UTC.

    Not whether the zone exists (zoneinfo says that); the old aliases (PRC, US/Eastern,
    Brazil/Acre), `localtime` and `Factory` are not such names.
    """
    area, slash, location = name.partition("/")
    return name == "UTC" or (area in TIME_ZONE_AREAS and bool(slash) and bool(location))


def zone_name(zone: tzinfo) -> str:
    """Return the IANA name of `zone` ("Asia/Shanghai"), else its abbreviation ("UTC")."""
    return getattr(zone, "key", None) or zone.tzname(None) or "UTC"


def format_in_zone(moment: datetime, zone: tzinfo | None = None, *, seconds: bool = False) -> str:
    """Return `moment` as "2026-12-06 09:30 (Asia/Shanghai)": in `zone` (default: the
    active one) and naming it, for text read outside a page (emails, announcements)."""
    zone = zone or timezone.get_current_timezone()
    local = moment.astimezone(zone)
    shown = f"{local:%Y-%m-%d %H:%M:%S}" if seconds else f"{local:%Y-%m-%d %H:%M}"
    return f"{shown} ({zone_name(zone)})"


def next_daily_run(schedule_name: str, *, now: datetime | None = None) -> datetime | None:
    """Return the next run (aware, UTC) of the daily beat job `schedule_name`, or None when
    it has no daily crontab.

    Beat reads crontabs in PLATFORM_TIME_ZONE (CELERY_TIMEZONE): the job's hour and minute
    are local to the platform, and a page converts the moment to its reader's zone.
    """
    schedule = settings.CELERY_BEAT_SCHEDULE.get(schedule_name, {}).get("schedule")
    hours, minutes = getattr(schedule, "hour", None), getattr(schedule, "minute", None)
    if not hours or not minutes:
        return None
    platform = ZoneInfo(settings.CELERY_TIMEZONE)
    now = (now or timezone.now()).astimezone(platform)
    runs = [
        datetime.combine(now.date() + timedelta(days=offset), time(hour, minute), tzinfo=platform)
        for offset in (0, 1)
        for hour in sorted(hours)
        for minute in sorted(minutes)
    ]
    return next(run for run in runs if run > now).astimezone(UTC)
