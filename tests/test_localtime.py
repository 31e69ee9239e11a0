"""``healthlake.localtime``: local days, months, years, clocks and midnights of instants, against pandas and
``zoneinfo`` (never the helper itself), near local midnight and a month's end, in several zones and
whatever the session's time zone."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from healthlake.localtime import (
    DEFAULT_ZONE,
    age_at,
    check_zone,
    local_date,
    local_days_between,
    local_instant,
    local_midnight,
    local_month,
    local_time_of_day,
    local_year,
    today,
)

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def _local(*args: int) -> dt.datetime:
    """A wall-clock time in Shanghai, as an aware datetime (Spark stores its instant)."""
    return dt.datetime(*args, tzinfo=SHANGHAI)


INSTANTS = [
    _local(2026, 1, 5, 0, 30),  # 2026-01-04 16:30 UTC
    _local(2026, 1, 5, 7, 59, 59),  # 2026-01-04 23:59:59 UTC
    _local(2026, 1, 5, 8, 0),  # 2026-01-05 00:00 UTC
    _local(2026, 1, 31, 23, 30),  # the month's last evening: 15:30 UTC
    _local(2026, 2, 1, 0, 30),  # the next month's first half hour: 2026-01-31 16:30 UTC
    _local(2026, 1, 1, 0, 0),  # a new year's first second: 2025-12-31 16:00 UTC
    dt.datetime(2026, 3, 8, 6, 59, tzinfo=dt.UTC),  # 01:59 in New York, one minute before DST starts
    dt.datetime(2026, 3, 8, 7, 1, tzinfo=dt.UTC),  # 03:01 in New York, just after
    dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC),  # 01:30 in London, BST (the first of the two 01:30s)
    None,
]
ZONES = ["Asia/Shanghai", "America/New_York", "Asia/Kolkata", "Europe/London", "UTC"]


def _expected(zone: str) -> pd.DataFrame:
    """Each instant's local date, month, year and clock in ``zone``, by ``zoneinfo``."""
    rows = []
    for t in INSTANTS:
        wall = None if t is None else t.astimezone(zoneinfo.ZoneInfo(zone))
        rows.append(
            {
                "date": wall and wall.date(),
                "month": wall and wall.date().replace(day=1),
                "year": wall and wall.year,
                "clock": wall and wall.strftime("%H:%M:%S"),
            }
        )
    return pd.DataFrame(rows)


def _got(spark: SparkSession, zone: str) -> pd.DataFrame:
    df = spark.createDataFrame([(i, t) for i, t in enumerate(INSTANTS)], "i int, t timestamp")
    t = F.col("t")
    rows = (
        df.select(
            "i",
            local_date(t, zone).alias("date"),
            local_month(t, zone).alias("month"),
            local_year(t, zone).alias("year"),
            local_time_of_day(t, zone).alias("clock"),
        )
        .orderBy("i")
        .collect()
    )
    return pd.DataFrame([r.asDict() for r in rows]).drop(columns="i")


@pytest.mark.parametrize("zone", ZONES)
def test_local_date_month_year_and_clock_match_pandas(spark: SparkSession, zone: str) -> None:
    got, want = _got(spark, zone), _expected(zone)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    if zone == "Asia/Shanghai":  # what a UTC date would get wrong, spelled out
        assert list(got.date[:6]) == [
            dt.date(2026, 1, 5),
            dt.date(2026, 1, 5),
            dt.date(2026, 1, 5),
            dt.date(2026, 1, 31),
            dt.date(2026, 2, 1),
            dt.date(2026, 1, 1),
        ]
        assert got.month[4] == dt.date(2026, 2, 1) and got.year[5] == 2026


def test_results_do_not_depend_on_the_session_time_zone(spark: SparkSession) -> None:
    before = {zone: _got(spark, zone) for zone in ("Asia/Shanghai", "America/New_York")}
    spark.conf.set("spark.sql.session.timeZone", "America/Los_Angeles")
    try:
        for zone, frame in before.items():
            pd.testing.assert_frame_equal(_got(spark, zone), frame)
            pd.testing.assert_frame_equal(_got(spark, zone), _expected(zone), check_dtype=False)
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")


def test_local_days_between_counts_local_dates(spark: SparkSession) -> None:
    pairs = [
        # discharged 09:00, readmitted 07:00 the next local day: one UTC date, two local ones
        (_local(2026, 1, 5, 9, 0), _local(2026, 1, 6, 7, 0)),
        (_local(2026, 1, 5, 0, 30), _local(2026, 1, 5, 7, 59)),  # one local day, two UTC dates
        (_local(2026, 1, 31, 23, 30), _local(2026, 2, 1, 0, 30)),
        (_local(2026, 2, 1, 0, 30), _local(2026, 1, 31, 23, 30)),  # end before start: negative
        (_local(2026, 1, 5, 9, 0), None),
    ]
    df = spark.createDataFrame(pairs, "a timestamp, b timestamp")
    got = [r[0] for r in df.select(local_days_between(F.col("a"), F.col("b"), DEFAULT_ZONE)).collect()]
    want = [None if b is None else (b.date() - a.date()).days for a, b in pairs]  # aware: their own dates
    assert got == want == [1, 0, 1, -1, None]


def test_local_midnight_and_local_instant_are_the_instants_of_local_wall_clocks(spark: SparkSession) -> None:
    days = [dt.date(2026, 1, 5), dt.date(2026, 2, 1), dt.date(2026, 3, 8), None]
    wall = [dt.datetime(2026, 1, 5, 7, 59), dt.datetime(2026, 1, 31, 23, 30), None, None]
    df = spark.createDataFrame(
        list(zip(days, [w and w.replace(tzinfo=dt.UTC) for w in wall], strict=True)), "d date, w timestamp"
    )
    for zone in ("Asia/Shanghai", "America/New_York"):
        tz = zoneinfo.ZoneInfo(zone)
        rows = df.select(
            F.unix_micros(local_midnight(F.col("d"), zone)).alias("m"),
            F.unix_micros(local_instant(F.col("w"), zone)).alias("w"),
        ).collect()

        def micros(t: dt.datetime | None) -> int | None:
            return None if t is None else int(t.timestamp()) * 1_000_000

        assert [r.m for r in rows] == [micros(d and dt.datetime.combine(d, dt.time(), tz)) for d in days]
        assert [r.w for r in rows] == [micros(w and w.replace(tzinfo=tz)) for w in wall]
    # Shanghai's midnight of 5 January is 16:00 UTC the day before.
    first = df.select(local_midnight(F.col("d"), DEFAULT_ZONE).alias("m")).first().m
    assert first == dt.datetime(2026, 1, 4, 16, 0)  # collected in the session's UTC, naive


def test_age_at_counts_completed_years(spark: SparkSession) -> None:
    cases = [
        (dt.date(1960, 6, 15), dt.date(2026, 6, 14)),
        (dt.date(1960, 6, 15), dt.date(2026, 6, 15)),
        (dt.date(2008, 1, 31), dt.date(2026, 1, 30)),
        (dt.date(2008, 1, 31), dt.date(2026, 1, 31)),
        (dt.date(2026, 1, 5), dt.date(2026, 1, 5)),
        (None, dt.date(2026, 1, 5)),
    ]
    df = spark.createDataFrame(cases, "b date, d date")
    got = [r[0] for r in df.select(age_at("b", F.col("d"))).collect()]
    want = [None if b is None else d.year - b.year - ((d.month, d.day) < (b.month, b.day)) for b, d in cases]
    assert got == want == [65, 66, 17, 18, 0, None]


def test_today_is_the_zone_s_date(spark: SparkSession) -> None:
    # UTC+14 and UTC-11 are 25 hours apart: their dates always differ, the session's is one of neither.
    zones = ("Pacific/Kiritimati", "Pacific/Pago_Pago")
    for _ in range(3):  # a retry in case a date turns over between the two clocks read
        before = [dt.datetime.now(zoneinfo.ZoneInfo(z)).date() for z in zones]
        got = list(spark.range(1).select(*[today(z) for z in zones]).first())
        after = [dt.datetime.now(zoneinfo.ZoneInfo(z)).date() for z in zones]
        if before == after:
            break
    assert got == after
    assert got[0] > got[1]


def test_check_zone_accepts_iana_names_only() -> None:
    assert check_zone("Asia/Shanghai") == "Asia/Shanghai"
    assert check_zone("UTC") == "UTC"
    with pytest.raises(ValueError, match="unknown time zone 'Asia/Shangai', did you mean 'Asia/Shanghai'"):
        check_zone("Asia/Shangai")
    for bad in ("Mars/Olympus", "+08:00", "", "asia/shanghai"):
        with pytest.raises(ValueError, match="unknown time zone"):
            check_zone(bad)
