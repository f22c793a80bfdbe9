"""The daily schedule's cron/timezone from settings, the landing sensor's cursor logic, and how both are wired."""

from __future__ import annotations

import pytest
from dagster import DefaultScheduleStatus, DefaultSensorStatus

from pipelines.definitions import FULL_RUN_JOB_NAME, build_defs, full_run_job
from pipelines.defs.schedules import DAILY_SCHEDULE_NAME, build_daily_schedule, checked_timezone, daily_cron
from pipelines.defs.sensors import (
    LANDING_SENSOR_NAME, decode_cursor, encode_cursor, fingerprint, new_files,
)
from pipelines.settings import Settings

SECOND = 1_000_000_000


@pytest.mark.parametrize(
    "at, cron",
    [("03:00", "0 3 * * *"), ("3:05", "5 3 * * *"), ("23:59", "59 23 * * *"), ("00:00", "0 0 * * *"),
     (" 07:30 ", "30 7 * * *")],
)
def test_daily_cron(at, cron):
    assert daily_cron(at) == cron


@pytest.mark.parametrize("at", ["24:00", "12:60", "3am", "", "03:00:00", "-1:00"])
def test_daily_cron_rejects_bad_times(at):
    with pytest.raises(ValueError, match="ONEID_SCHEDULE_TIME"):
        daily_cron(at)


def test_timezone_must_be_known():
    assert checked_timezone("Europe/Berlin") == "Europe/Berlin"
    with pytest.raises(ValueError, match="ONEID_SCHEDULE_TIMEZONE"):
        checked_timezone("Mars/Olympus_Mons")


def test_schedule_follows_the_environment(monkeypatch):
    monkeypatch.setenv("ONEID_SCHEDULE_TIME", "05:45")
    monkeypatch.setenv("ONEID_SCHEDULE_TIMEZONE", "Asia/Hong_Kong")
    monkeypatch.setenv("ONEID_AUTOMATION", "on")
    settings = Settings.from_env()
    schedule = build_daily_schedule(full_run_job, settings)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("45 5 * * *", "Asia/Hong_Kong")
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    monkeypatch.delenv("ONEID_SCHEDULE_TIME")
    monkeypatch.delenv("ONEID_SCHEDULE_TIMEZONE")
    monkeypatch.delenv("ONEID_AUTOMATION")
    default = build_daily_schedule(full_run_job, Settings.from_env())
    assert (default.cron_schedule, default.execution_timezone) == ("0 3 * * *", "Asia/Shanghai")
    assert default.default_status == DefaultScheduleStatus.STOPPED


def test_analyst_database_defaults_beside_the_warehouse(monkeypatch, tmp_path):
    monkeypatch.setenv("ONEID_DATABASE", str(tmp_path / "wh" / "oneid.duckdb"))
    monkeypatch.delenv("ONEID_ANALYST_DATABASE", raising=False)
    assert Settings.from_env().analyst_path == tmp_path / "wh" / "analyst.duckdb"
    monkeypatch.setenv("ONEID_ANALYST_DATABASE", str(tmp_path / "share" / "a.duckdb"))
    assert Settings.from_env().analyst_path == tmp_path / "share" / "a.duckdb"


def test_schedule_and_sensor_run_the_full_job(tmp_path):
    defs = build_defs(Settings(database=tmp_path / "oneid.duckdb", landing_dir=tmp_path, config_dir=tmp_path,
                               truth_file=tmp_path / "none"))
    schedule = defs.resolve_schedule_def(DAILY_SCHEDULE_NAME)
    sensor = defs.resolve_sensor_def(LANDING_SENSOR_NAME)
    assert schedule.job_name == FULL_RUN_JOB_NAME
    assert sensor.job_name == FULL_RUN_JOB_NAME
    assert sensor.default_status == DefaultSensorStatus.STOPPED


def test_new_files_are_new_once_and_unsettled_files_wait():
    now = 10_000 * SECOND
    files = {"orders_taobao/a.csv": (100, now - 600 * SECOND), "crm_members/b.csv": (50, now - 5 * SECOND)}
    new, unsettled, keep = new_files(files, set(), now, settle_seconds=60)
    assert (new, unsettled) == (["orders_taobao/a.csv"], ["crm_members/b.csv"])
    assert keep == {fingerprint("orders_taobao/a.csv", 100, now - 600 * SECOND)}
    # a minute later the CRM file has settled; the order file is not new any more
    later = now + 60 * SECOND
    new, unsettled, keep = new_files(files, decode_cursor(encode_cursor(keep)), later, settle_seconds=60)
    assert (new, unsettled) == (["crm_members/b.csv"], [])
    assert len(keep) == 2
    # the same name with other content (size or mtime) is a new export
    files["orders_taobao/a.csv"] = (120, later)
    new, _, keep = new_files(files, keep, later + 120 * SECOND, settle_seconds=60)
    assert new == ["orders_taobao/a.csv"]


def test_cursor_is_bounded_by_the_files_present():
    now = 10_000 * SECOND
    many = {f"orders_taobao/{i}.csv": (i, 0) for i in range(500)}
    _, _, keep = new_files(many, set(), now, settle_seconds=0)
    cursor = encode_cursor(keep)
    assert len(cursor) < 15 * 500
    # files gone from the landing folder leave the cursor
    _, _, keep = new_files({"orders_taobao/1.csv": (1, 0)}, decode_cursor(cursor), now, settle_seconds=0)
    assert keep == {fingerprint("orders_taobao/1.csv", 1, 0)}
    assert decode_cursor("v0:whatever") == set()
    assert decode_cursor(None) == set()
