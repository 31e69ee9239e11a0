"""Silver's times and days in the region's zone: a FHIR date alone, an HL7 date and a CSV date mean the
same local day; the birth-date rule and the resident-ID check take the record's and today's local date.
Expected instants and dates come from ``zoneinfo``, not from the library."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from healthlake.silver.common import fhir_time, hl7_time, local_time
from healthlake.silver.identifiers import resident_id_problem
from healthlake.silver.quality import with_failed_rules
from healthlake.silver.rules import patient_record_rules

SHANGHAI = "Asia/Shanghai"


def _micros(t: dt.datetime | None) -> int | None:
    return None if t is None else round(t.timestamp() * 1_000_000)


def _at(zone: str, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=zoneinfo.ZoneInfo(zone))


def test_fhir_time_reads_a_date_alone_as_the_local_day(spark: SparkSession) -> None:
    values = [
        "2026-01-05",  # a date: its local midnight, not UTC's
        "2026-02",  # a month
        "2026",  # a year
        "2026-01-05T00:30:00+08:00",  # an offset: the instant named
        "2026-01-04T16:30:00Z",
        "2026-01-31T23:30:00.250+08:00",
        "2026-01-05T07:59:00",  # no offset (FHIR forbids it): the local wall clock
        "not a date",
        None,
    ]
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i int, v string")
    for zone in (SHANGHAI, "America/New_York"):
        got = [
            r.t
            for r in df.select("i", F.unix_micros(fhir_time(F.col("v"), zone)).alias("t"))
            .orderBy("i")
            .collect()
        ]
        utc = dt.UTC
        want = [
            _at(zone, 2026, 1, 5),
            _at(zone, 2026, 2, 1),
            _at(zone, 2026, 1, 1),
            dt.datetime(2026, 1, 4, 16, 30, tzinfo=utc),
            dt.datetime(2026, 1, 4, 16, 30, tzinfo=utc),
            dt.datetime(2026, 1, 31, 15, 30, 0, 250_000, tzinfo=utc),
            _at(zone, 2026, 1, 5, 7, 59),
            None,
            None,
        ]
        assert got == [_micros(t) for t in want], zone
    # The default zone is the region's default, Asia/Shanghai.
    default = df.select(F.unix_micros(fhir_time(F.col("v"))).alias("t")).where("i = 0").first().t
    assert default == _micros(_at(SHANGHAI, 2026, 1, 5))


def test_a_date_means_the_same_local_day_in_every_feed(spark: SparkSession) -> None:
    """FHIR ``2026-01-05``, HL7 ``20260105`` and CSV ``2026-01-05`` are one instant, Beijing's midnight;
    and an HL7 or CSV time without offset is the Beijing wall clock."""
    df = spark.createDataFrame(
        [("2026-01-05", "20260105", "2026-01-05", "202601050030", "2026-01-31 23:30")],
        "fhir string, hl7 string, csv string, hl7_time string, csv_time string",
    )
    row = df.select(
        F.unix_micros(fhir_time(F.col("fhir"))).alias("fhir"),
        F.unix_micros(hl7_time(F.col("hl7"))).alias("hl7"),
        F.unix_micros(local_time(F.col("csv"))).alias("csv"),
        F.unix_micros(hl7_time(F.col("hl7_time"))).alias("hl7_time"),
        F.unix_micros(local_time(F.col("csv_time"))).alias("csv_time"),
        F.unix_micros(hl7_time(F.col("hl7_time"), "UTC")).alias("hl7_utc"),
    ).first()
    midnight = _micros(_at(SHANGHAI, 2026, 1, 5))
    assert row.fhir == row.hl7 == row.csv == midnight
    assert row.hl7_time == _micros(_at(SHANGHAI, 2026, 1, 5, 0, 30))
    assert row.csv_time == _micros(_at(SHANGHAI, 2026, 1, 31, 23, 30))
    assert row.hl7_utc == _micros(_at("UTC", 2026, 1, 5, 0, 30))  # the zone passed is the one read


def test_birth_date_rule_compares_with_the_record_s_local_date(spark: SparkSession) -> None:
    """A record made at 00:30 Beijing time on a baby's birthday (still the day before in UTC) is no
    negative age; a birth date after the record's local date is."""
    rows = [
        ("r1", dt.date(2026, 1, 5), _at(SHANGHAI, 2026, 1, 5, 0, 30)),
        ("r2", dt.date(2026, 1, 6), _at(SHANGHAI, 2026, 1, 5, 23, 30)),
        ("r3", dt.date(2026, 2, 1), _at(SHANGHAI, 2026, 2, 1, 7, 59)),
    ]
    df = spark.createDataFrame(
        [(r, "H1", b, t, t + dt.timedelta(hours=1), "F") for r, b, t in rows],
        "source_record_id string, institution_id string, birth_date date, _event_time timestamp, "
        "_ingested_at timestamp, sex string",
    )
    checked = with_failed_rules(df, patient_record_rules())
    failed = {r.source_record_id: "birth_date_plausible" in r._failed_rules for r in checked.collect()}
    want = {r: b > t.astimezone(zoneinfo.ZoneInfo(SHANGHAI)).date() for r, b, t in rows}
    assert failed == want == {"r1": False, "r2": True, "r3": False}


def _resident_id(birth: dt.date) -> str:
    """A GB 11643 resident ID born on ``birth``, its check digit computed here."""
    first17 = f"110101{birth:%Y%m%d}123"
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


def test_a_birth_date_of_today_is_valid_in_the_zone_where_it_is_today(spark: SparkSession) -> None:
    # UTC+14 and UTC-11 are 25 hours apart: Kiritimati's today is always a future day in Pago Pago.
    ahead, behind = "Pacific/Kiritimati", "Pacific/Pago_Pago"
    for _ in range(3):  # a retry in case the date turns over while the query runs
        today = dt.datetime.now(zoneinfo.ZoneInfo(ahead)).date()
        df = spark.createDataFrame([(_resident_id(today),)], "rid string")
        got = df.select(
            resident_id_problem(F.col("rid"), ahead), resident_id_problem(F.col("rid"), behind)
        ).first()
        if dt.datetime.now(zoneinfo.ZoneInfo(ahead)).date() == today:
            break
    assert tuple(got) == (None, "birth_date")


def test_parsers_read_source_times_in_the_zone_conform_names(spark: SparkSession) -> None:
    """Inside ``reading_sources_in`` (conform sets it from ``region.timezone``) the parsers' default zone
    is that one; outside it, Asia/Shanghai again; an unknown zone is refused before any parsing."""
    import pytest

    from healthlake.localtime import reading_sources_in, source_zone

    df = spark.createDataFrame(
        [("2026-07-05", "20260705090000", "2026-07-05 09:00")], "f string, h string, c string"
    )

    def instants() -> tuple[int, int, int]:
        row = df.select(
            F.unix_micros(fhir_time(F.col("f"))),
            F.unix_micros(hl7_time(F.col("h"))),
            F.unix_micros(local_time(F.col("c"))),
        ).first()
        return tuple(row)

    london = "Europe/London"  # summer time in July: 09:00 local is 08:00 UTC
    with reading_sources_in(london):
        assert source_zone() == london
        midnight, nine = _at(london, 2026, 7, 5), _at(london, 2026, 7, 5, 9)
        assert instants() == (_micros(midnight), _micros(nine), _micros(nine))
    assert source_zone() == SHANGHAI
    assert instants()[1] == _micros(_at(SHANGHAI, 2026, 7, 5, 9))
    with pytest.raises(ValueError, match="Europe/London"), reading_sources_in("Europe/Londn"):
        pass
