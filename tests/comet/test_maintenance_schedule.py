"""The heavy beat jobs run in the 1-5 AM window of the platform's time zone, wherever the
platform is (README, "Time zones"); the sweeps that run every few seconds do not care."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.schedules import crontab
from django.conf import settings

from tests.settings_module import ROOT

# The beat jobs that do maintenance: each is a daily crontab. A new heavy job belongs here.
HEAVY_JOBS = {"clear-expired-sessions", "logs-retention"}
# The longest interval of a light job (a sweep): price-change emails are resumed every 5 min.
LIGHT_JOB_LONGEST_SECONDS = 300
WINDOW = (1, 5)  # from 01:00 to 05:00, local to PLATFORM_TIME_ZONE


def _next_runs(beat_schedule: dict, zone_name: str, *, after: datetime) -> dict[str, datetime]:
    """Return when beat, its clock in `zone_name`, next runs each crontab job after `after`.

    Walks a day and a bit minute by minute asking each job's schedule, as beat does,
    whether it is due given that it last ran at `after`.
    """
    app = Celery(set_as_current=False)
    app.conf.timezone = zone_name
    runs = {}
    for name, entry in beat_schedule.items():
        schedule = entry["schedule"]
        if not isinstance(schedule, crontab):
            continue
        for minute in range(1, 26 * 60):
            now = after + timedelta(minutes=minute)
            probe = crontab(
                minute=schedule._orig_minute,
                hour=schedule._orig_hour,
                day_of_week=schedule._orig_day_of_week,
                day_of_month=schedule._orig_day_of_month,
                month_of_year=schedule._orig_month_of_year,
                app=app,
                nowfun=lambda now=now: now,
            )
            if probe.is_due(after)[0]:
                runs[name] = now
                break
    return runs


def _in_window(moment: datetime, zone: ZoneInfo) -> bool:
    local = moment.astimezone(zone)
    return WINDOW[0] <= local.hour < WINDOW[1]


def test_every_beat_job_is_a_daily_maintenance_job_or_a_short_sweep():
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        schedule = entry["schedule"]
        if isinstance(schedule, crontab):
            assert name in HEAVY_JOBS, f"{name} runs on a clock: is it maintenance?"
        else:
            assert float(schedule) <= LIGHT_JOB_LONGEST_SECONDS, name
    assert set(settings.CELERY_BEAT_SCHEDULE) >= HEAVY_JOBS


def test_beat_reads_its_crontabs_in_the_platforms_zone():
    from comet.celery import app

    assert settings.CELERY_TIMEZONE == settings.PLATFORM_TIME_ZONE
    assert str(app.timezone) == settings.PLATFORM_TIME_ZONE
    # Messages between processes stay in UTC.
    assert app.conf.enable_utc is True


@pytest.mark.parametrize("day", ["2026-01-15", "2026-07-15", "2026-03-29", "2026-11-01"])
def test_each_heavy_job_runs_between_1_and_5_am_in_the_platforms_zone(day):
    zone = ZoneInfo(settings.PLATFORM_TIME_ZONE)
    after = datetime.fromisoformat(day).replace(tzinfo=UTC)

    runs = _next_runs(settings.CELERY_BEAT_SCHEDULE, settings.PLATFORM_TIME_ZONE, after=after)

    assert set(runs) == HEAVY_JOBS
    for name, moment in runs.items():
        assert _in_window(moment, zone), (name, moment.astimezone(zone))
    assert f"{runs['logs-retention'].astimezone(zone):%H:%M}" == "03:30"
    assert f"{runs['clear-expired-sessions'].astimezone(zone):%H:%M}" == "03:10"


def _settings_in_a_process(platform_time_zone: str) -> subprocess.CompletedProcess:
    """Load comet.settings.test with PLATFORM_TIME_ZONE set, as a deployment would."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "comet.settings.test",
        "PLATFORM_TIME_ZONE": platform_time_zone,
    }
    code = (
        "import json, django; django.setup()\n"
        "from django.conf import settings\n"
        "from comet.celery import app\n"
        "print(json.dumps([settings.PLATFORM_TIME_ZONE, settings.CELERY_TIMEZONE,"
        " str(app.timezone)]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("zone_name", ["America/Los_Angeles", "Europe/Berlin", "Asia/Kolkata"])
def test_the_window_moves_with_the_setting(zone_name):
    process = _settings_in_a_process(zone_name)
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout) == [zone_name, zone_name, zone_name]

    zone = ZoneInfo(zone_name)
    after = datetime(2026, 12, 6, tzinfo=UTC)
    runs = _next_runs(settings.CELERY_BEAT_SCHEDULE, zone_name, after=after)
    shanghai = _next_runs(settings.CELERY_BEAT_SCHEDULE, "Asia/Shanghai", after=after)

    for name, moment in runs.items():
        assert _in_window(moment, zone), (name, moment.astimezone(zone))
        # The same local time, another moment: the window follows the platform.
        assert (
            moment.astimezone(zone).time()
            == shanghai[name].astimezone(ZoneInfo("Asia/Shanghai")).time()
        )
        assert moment != shanghai[name]


@pytest.mark.parametrize("bad", ["Mars/Olympus", "", "../etc/passwd", "PRC", "localtime"])
def test_a_platform_zone_that_is_no_zone_refuses_to_start(bad):
    process = _settings_in_a_process(bad)
    assert process.returncode != 0
    assert "PLATFORM_TIME_ZONE must be an IANA time zone name" in process.stderr
