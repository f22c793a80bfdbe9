"""The daily run: the whole graph once a day, at a time and in a timezone the brand chooses.

ONEID_SCHEDULE_TIME (`HH:MM`, default 03:00) and ONEID_SCHEDULE_TIMEZONE (an IANA name, default Asia/Shanghai):
exports usually land overnight, and the marts should be fresh before the operators' morning. Schedules and the
landing sensor start stopped unless ONEID_AUTOMATION=on, so `dagster dev` on a laptop runs nothing by itself;
in production turn them on once in the UI (Automation) or set the variable for the daemon.
"""

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dagster import DefaultScheduleStatus, ScheduleDefinition

from pipelines.settings import SCHEDULE_TIME_ENV, SCHEDULE_TIMEZONE_ENV, Settings

DAILY_SCHEDULE_NAME = "oneid_daily"
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def daily_cron(at: str) -> str:
    """The cron string of a run every day at `at` (`HH:MM`, 24-hour clock)."""
    match = _TIME.match(at or "")
    if not match:
        raise ValueError(f"{SCHEDULE_TIME_ENV} must be HH:MM on a 24-hour clock, got {at!r}")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        raise ValueError(f"{SCHEDULE_TIME_ENV} must be HH:MM on a 24-hour clock, got {at!r}")
    return f"{minute} {hour} * * *"


def checked_timezone(name: str) -> str:
    """`name` if it is an IANA timezone this machine knows, else a ValueError naming the setting."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"{SCHEDULE_TIMEZONE_ENV} must be an IANA timezone like Asia/Shanghai, got {name!r}") from error
    return name


def build_daily_schedule(job, settings: Settings) -> ScheduleDefinition:
    return ScheduleDefinition(
        name=DAILY_SCHEDULE_NAME,
        job=job,
        cron_schedule=daily_cron(settings.schedule_time),
        execution_timezone=checked_timezone(settings.schedule_timezone),
        default_status=DefaultScheduleStatus.RUNNING if settings.automation_running else DefaultScheduleStatus.STOPPED,
        description=(
            f"The whole graph every day at {settings.schedule_time} {settings.schedule_timezone}: load new exports, "
            "resolve identities, rebuild the marts, publish the analyst database."
        ),
    )
