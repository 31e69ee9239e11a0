"""Risk areas, risk persons and the health code's risk-area rule on a hand-worked outbreak.

Times are Beijing wall clock (``Asia/Shanghai``); every expected value is worked out from the rows here.
Township 甲 (360102001) has cases reported on 2 and 3 March; with a 3-day window and 2 cases for
"high" it is medium on 2 March, high on 3-4 March, medium on 5 March and low on 6 March (``as_of``).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession

from healthlake.epidemic.health_code import rule_days
from healthlake.epidemic.risk import nearest_township, risk_area_daily, risk_persons
from healthlake.epidemic.tracing import contact_tracing_daily
from tests.epidemic.test_tables import PLACES, XREF, bj

ZONE = "Asia/Shanghai"
D = dt.date
AS_OF = D(2026, 3, 6)
T1, T2 = "360102001", "360102002"
AREAS = "area_code string, name string, level string, parent_code string, lat double, lon double"
AREA_ROWS = [
    (T1, "甲街道", "township", "360102", 27.38, 114.61),
    (T2, "乙镇", "township", "360102", 27.48, 114.71),
    ("360102", "长寿区", "county", "360100", None, None),
    ("360100", "南市", "city", "360000", None, None),
    ("360000", "江南省", "province", None, None, None),
]
CASES = "person_id string, report_date date, first_known_at timestamp, township_code string"
CONTACTS = (
    "case_person_id string, contact_person_id string, contact_phone_token string, "
    "first_contact_at timestamp, last_contact_at timestamp, exposure_minutes long, place_area_code string, "
    "degree int"
)
PINGS = "phone_token string, event_time timestamp, lat double, lon double"
OWNERS = "phone_token string, person_id string"
ORDERS = "person_id string, start_date date, status string"
TESTS = (
    "institution_id string, source_patient_id string, sample_time timestamp, result string, "
    "sample_mode string"
)


def _frames(spark: SparkSession) -> dict:
    cases = spark.createDataFrame(
        [
            ("P1", D(2026, 3, 2), bj(2026, 3, 1, 23, 30), T1),
            ("P9", D(2026, 3, 3), bj(2026, 3, 3, 8), T1),
            ("P7", D(2026, 3, 4), bj(2026, 3, 4, 8), None),  # home unknown: no township's case
        ],
        CASES,
    )
    contacts = spark.createDataFrame(
        [
            ("P1", "P3", None, bj(2026, 3, 1, 12), bj(2026, 3, 1, 12, 40), 40, T1, 1),
            ("P9", "P3", None, bj(2026, 3, 2, 18), bj(2026, 3, 2, 18, 30), 30, T1, 1),
            ("P1", "P4", None, bj(2026, 3, 1, 13), bj(2026, 3, 1, 13, 20), 20, T2, 2),
            ("P1", None, "phX", bj(2026, 3, 1, 12), bj(2026, 3, 1, 12, 30), 30, T1, 1),  # no one's phone
        ],
        CONTACTS,
    )
    pings = spark.createDataFrame(
        [
            ("ph5", bj(2026, 3, 1, 10), 27.381, 114.611),  # before any risk day
            ("ph5", bj(2026, 3, 3, 10), 27.381, 114.611),  # 甲, high
            ("ph5", bj(2026, 3, 3, 11), 27.382, 114.612),
            ("ph5", bj(2026, 3, 4, 9), 27.479, 114.709),  # 乙, low
            ("ph5", bj(2026, 3, 5, 9), 27.40, 114.62),  # nearer 甲 (medium)
            ("ph5", bj(2026, 3, 7, 9), 27.48, 114.71),  # after as_of
            ("ph6", bj(2026, 3, 3, 23, 50), 27.38, 114.61),  # 甲, high (15:50 UTC: still 3 March locally)
            ("ph6", bj(2026, 3, 6, 9), 27.38, 114.61),  # 甲, low by then
            ("ph8", bj(2026, 3, 3, 9), 40.0, 120.0),  # far from every township: in none
        ],
        PINGS,
    )
    owners = spark.createDataFrame([("ph5", "P5"), ("ph6", "P6"), ("ph8", "P8")], OWNERS)
    orders = spark.createDataFrame(
        [
            ("P3", D(2026, 3, 2), "in_isolation"),
            ("P1", D(2026, 3, 2), "released"),
            ("P4", D(2026, 2, 20), "released"),  # an older order, about something else
        ],
        ORDERS,
    )
    tests = spark.createDataFrame(
        [
            ("L1", "d", bj(2026, 3, 4, 10), "negative", "single"),  # P4
            ("L1", "e", bj(2026, 3, 2, 10), "negative", "single"),  # P5, before its visit
            ("L1", "e", bj(2026, 3, 4, 10), None, "pooled"),  # P5, pooled: no result of its own
            ("L1", "f", bj(2026, 3, 5, 10), "negative", "single"),  # P6
        ],
        TESTS,
    )
    xref = spark.createDataFrame([("L1", "d", "P4"), ("L1", "e", "P5"), ("L1", "f", "P6")], XREF)
    places = spark.createDataFrame(
        [(p, T1, T1, "360102", "360100", "360000", "30-34") for p in ("P1", "P3", "P5", "P6", "P9")], PLACES
    )
    areas = spark.createDataFrame(AREA_ROWS, AREAS)
    return {
        "cases": cases,
        "contacts": contacts,
        "pings": pings,
        "owners": owners,
        "orders": orders,
        "tests": tests,
        "xref": xref,
        "places": places,
        "areas": areas,
    }


def test_risk_areas_day_by_day_with_level_and_since(spark: SparkSession) -> None:
    f = _frames(spark)
    days = risk_area_daily(f["cases"], f["areas"], as_of=AS_OF, window_days=3, high_cases=2)
    got = {
        (r.area_code, r.date): (r.risk_level, r.level_since, r.cases_in_window, r.new_cases, r.last_case_date)
        for r in days.collect()
    }
    c2, c3 = D(2026, 3, 2), D(2026, 3, 3)
    assert got == {
        (T1, c2): ("medium", c2, 1, 1, c2),
        (T1, c3): ("high", c3, 2, 1, c3),
        (T1, D(2026, 3, 4)): ("high", c3, 2, 0, c3),
        (T1, D(2026, 3, 5)): ("medium", D(2026, 3, 5), 1, 0, c3),
        (T1, D(2026, 3, 6)): ("low", D(2026, 3, 6), 0, 0, c3),
        **{(T2, D(2026, 3, d)): ("low", c2, 0, 0, None) for d in range(2, 7)},
    }
    assert {r.county_code for r in days.collect()} == {"360102"}


def test_nearest_township_looks_only_nearby(spark: SparkSession) -> None:
    points = spark.createDataFrame(
        [(1, 27.40, 114.62), (2, 27.47, 114.70), (3, 40.0, 120.0)], "id int, lat double, lon double"
    )
    areas = spark.createDataFrame(AREA_ROWS, AREAS)
    got = {r.id: r.area_code for r in nearest_township(points, areas).collect()}
    assert got == {1: T1, 2: T2, 3: None}


def test_risk_persons_with_category_why_state_and_where_now(spark: SparkSession) -> None:
    f = _frames(spark)
    days = risk_area_daily(f["cases"], f["areas"], as_of=AS_OF, window_days=3, high_cases=2)
    listed = risk_persons(
        f["cases"],
        f["contacts"],
        days,
        f["pings"],
        f["owners"],
        f["areas"],
        f["orders"],
        f["tests"],
        f["xref"],
        f["places"],
        zone=ZONE,
        as_of=AS_OF,
    ).collect()
    got = {
        (r.person_id, r.category): (
            r.identified_date,
            r.source_case_person_id,
            r.exposure_area_code,
            r.sources,
            r.state,
            r.last_seen_area_code,
        )
        for r in listed
    }
    c2, c3 = D(2026, 3, 2), D(2026, 3, 3)
    assert got == {
        ("P1", "case"): (c2, None, T1, 1, "released", None),
        ("P9", "case"): (c3, None, T1, 1, "to_test", None),
        ("P7", "case"): (D(2026, 3, 4), None, None, 1, "to_test", None),  # a case, though of no township
        # A contact of two cases: the first identification (P1's report) gives the row.
        ("P3", "close_contact"): (c2, "P1", T1, 2, "in_isolation", None),
        ("P4", "secondary_contact"): (c2, "P1", T2, 1, "tested", None),
        # Two risk-area days (3 and 5 March, not 乙 on 4 March); its test of 2 March came before; last seen
        # on 5 March (its ping of 7 March is after as_of).
        ("P5", "risk_area"): (c3, None, T1, 2, "to_test", T1),
        ("P6", "risk_area"): (c3, None, T1, 1, "tested", T1),
    }
    rows = {(r.person_id, r.category): r for r in listed}
    p5 = rows["P5", "risk_area"]
    # The session's time zone is UTC: instants come back as naive UTC datetimes.
    assert p5.exposure_at == bj(2026, 3, 3, 11).astimezone(dt.UTC).replace(tzinfo=None)
    assert p5.reason == "in high-risk area 360102001 on 2026-03-03"
    assert p5.last_seen_at is not None and p5.first_negative_at is None
    reason = "contact of a case for 40 minutes, last on 2026-03-01 in area 360102001"
    assert rows["P3", "close_contact"].reason == reason
    assert rows["P6", "risk_area"].first_negative_at is not None
    assert rows["P1", "case"].township_code == T1

    # The health code's risk-area rule: yellow from the visit until the day before the first negative test.
    hits = rule_days(
        f["cases"].where("false").select("person_id", "report_date"),
        spark.createDataFrame(
            [],
            "person_id string, category string, released_date date, start_date date, planned_end_date date, "
            "source_record_id string, place_type string",
        ),
        spark.createDataFrame(
            [], "person_id string, pool_report_time timestamp, retest_sample_time timestamp, pool_id string"
        ),
        zone=ZONE,
        as_of=AS_OF,
        case_active_days=14,
        risk_persons=spark.createDataFrame(listed),
        risk_area_days=14,
    )
    yellow = sorted((r.person_id, r.date) for r in hits.where("rule = 'risk_area'").collect())
    assert yellow == [("P5", D(2026, 3, d)) for d in range(3, 7)] + [("P6", c3), ("P6", D(2026, 3, 4))]


def test_contact_tracing_indicators_per_report_day_and_area(spark: SparkSession) -> None:
    path = ("360102", "360100", "360000")
    cases = spark.createDataFrame(
        [
            (
                "P1",
                D(2026, 3, 2),
                bj(2026, 3, 1, 23, 30),
                bj(2026, 3, 2, 0, 30),
                bj(2026, 3, 1, 23, 30),
                T1,
                *path,
            ),
            # P3, quarantined as P1's contact since 2 March, tests positive there on 4 March.
            ("P3", D(2026, 3, 4), bj(2026, 3, 4, 9), bj(2026, 3, 4, 15), bj(2026, 3, 4, 9), T2, *path),
        ],
        "person_id string, report_date date, first_positive_sample_time timestamp, "
        "first_positive_report_time timestamp, first_known_at timestamp, township_code string, "
        "county_code string, city_code string, province_code string",
    )
    contacts = spark.createDataFrame(
        [
            ("P1", "P3", None, bj(2026, 3, 1, 12), bj(2026, 3, 1, 12, 40), 40, T1, 1),
            ("P1", "P4", None, bj(2026, 3, 1, 13), bj(2026, 3, 1, 13, 30), 30, T1, 1),
            ("P1", None, "phX", bj(2026, 3, 1, 12), bj(2026, 3, 1, 12, 30), 30, T1, 1),
            (
                "P1",
                "P6",
                None,
                bj(2026, 3, 1, 18),
                bj(2026, 3, 1, 18, 30),
                30,
                T1,
                2,
            ),  # degree 2: not counted
            ("P3", "P5", None, bj(2026, 3, 3, 12), bj(2026, 3, 3, 12, 30), 30, T2, 1),
        ],
        CONTACTS,
    )
    isolation = spark.createDataFrame(
        [
            (
                "P3",
                "close_contact",
                bj(2026, 3, 2, 14),
                bj(2026, 3, 16, 14),
                None,
            ),  # 13.5 h after P1's report
            ("P4", "close_contact", bj(2026, 3, 3, 9), bj(2026, 3, 17, 9), None),  # 32.5 h after: too late
            ("P3", "case", bj(2026, 3, 4, 18), bj(2026, 3, 18, 18), None),
        ],
        "person_id string, category string, start_time timestamp, planned_end_time timestamp, "
        "released_at timestamp",
    )
    areas = spark.createDataFrame(AREA_ROWS, AREAS)
    rows = contact_tracing_daily(cases, contacts, isolation, areas, as_of=AS_OF).collect()
    got = {
        (r.date, r.level, r.unit_code): (
            r.new_cases,
            r.cases_in_quarantine,
            r.contacts,
            r.unresolved_contacts,
            r.contacts_quarantined_24h,
            r.contacts_later_positive,
            r.share_cases_in_quarantine,
            r.share_contacts_quarantined_24h,
            r.share_contacts_later_positive,
        )
        for r in rows
    }
    day2 = (1, 0, 2, 1, 1, 1, 0.0, 0.5, 0.5)
    day4 = (1, 1, 1, 0, 0, 0, 1.0, 0.0, 0.0)
    assert got[D(2026, 3, 2), "township", T1] == day2
    assert got[D(2026, 3, 4), "township", T2] == day4
    assert got[D(2026, 3, 2), "province", "360000"] == day2
    assert len(got) == 2 * 4
