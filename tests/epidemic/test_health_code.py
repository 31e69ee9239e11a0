"""Isolation orders and health codes on a hand-worked outbreak (Beijing wall clock, local days)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession

from healthlake.epidemic.health_code import health_code, rule_days
from healthlake.epidemic.isolation import isolation
from healthlake.epidemic.screening import nat_pool_followup
from healthlake.spark import UNION_WITHOUT_PARTITIONING, sql_conf
from tests.epidemic.test_screening import POOLS, TESTS
from tests.epidemic.test_tables import ZONE, _places, _xref, bj

ORDERS = (
    "institution_id string, source_record_id string, source_patient_id string, category string, "
    "place_type string, start_time timestamp, planned_end_time timestamp, released_at timestamp"
)
CASES = "person_id string, report_date date"


def test_isolation_orders_with_status_and_tests_during(spark: SparkSession) -> None:
    orders = spark.createDataFrame(
        [
            (
                "L1",
                "o1",
                "a",
                "case",
                "centralized",
                bj(2026, 3, 2, 12),
                bj(2026, 3, 16, 12),
                bj(2026, 3, 5, 10),
            ),
            ("L1", "o2", "c", "close_contact", "home", bj(2026, 3, 3, 0, 30), bj(2026, 3, 4, 0, 30), None),
            ("L1", "o3", "b", "close_contact", "centralized", bj(2026, 3, 6, 9), bj(2026, 3, 20, 9), None),
        ],
        ORDERS,
    )
    tests = spark.createDataFrame(
        [
            ("L1", "t1", "a", bj(2026, 3, 1, 9), bj(2026, 3, 1, 19), "positive", "single", None),  # before o1
            ("L1", "t2", "a", bj(2026, 3, 3, 9), bj(2026, 3, 3, 19), "positive", "single", None),
            ("L1", "t3", "a", bj(2026, 3, 4, 9), bj(2026, 3, 4, 19), "negative", "single", None),
            ("L1", "t4", "c", bj(2026, 3, 6, 23, 59), None, None, "single", None),  # on the as_of evening
            ("L1", "t5", "c", bj(2026, 3, 7, 0, 1), None, None, "single", None),  # after as_of
        ],
        TESTS,
    )
    rows = {
        r["source_record_id"]: r.asDict()
        for r in isolation(
            orders, tests, _xref(spark), _places(spark), zone=ZONE, as_of=dt.date(2026, 3, 6)
        ).collect()
    }
    o1, o2, o3 = rows["o1"], rows["o2"], rows["o3"]
    assert (o1["status"], o1["days_isolated"], o1["tests_during"], o1["positive_during"]) == (
        "released",
        3,
        2,
        True,
    )
    assert o1["last_test_result"] == "negative" and o1["released_date"] == dt.date(2026, 3, 5)
    assert (o2["status"], o2["start_date"], o2["days_isolated"], o2["tests_during"]) == (
        "overdue",  # its planned end (4 March) passed without a release
        dt.date(2026, 3, 3),
        3,
        1,
    )
    assert (o3["status"], o3["days_isolated"], o3["tests_during"], o3["person_id"]) == (
        "in_isolation",
        0,
        0,
        "P2",
    )


def test_health_codes_are_intervals_with_the_rule_that_set_them(spark: SparkSession) -> None:
    cases = spark.createDataFrame([("P1", dt.date(2026, 3, 2))], CASES)
    orders = spark.createDataFrame(
        [
            (
                "L1",
                "o1",
                "a",
                "case",
                "centralized",
                bj(2026, 3, 2, 12),
                bj(2026, 3, 16, 12),
                bj(2026, 3, 5, 10),
            ),
            ("L1", "o2", "c", "close_contact", "home", bj(2026, 3, 3, 0, 30), bj(2026, 3, 17, 0, 30), None),
        ],
        ORDERS,
    )
    tests = spark.createDataFrame(
        [
            ("L1", "m1", "b", bj(2026, 3, 1, 10), None, None, "pooled", "PL1"),
            ("L1", "t1", "b", bj(2026, 3, 3, 9), None, None, "single", None),
        ],
        TESTS,
    )
    pools = spark.createDataFrame(
        [("C1", "PL1", "PL1", bj(2026, 3, 1, 10), bj(2026, 3, 1, 20), 1, "positive")], POOLS
    )
    as_of = dt.date(2026, 3, 6)
    xref, places = _xref(spark), _places(spark)
    hits = rule_days(
        cases,
        isolation(orders, tests, xref, places, zone=ZONE, as_of=as_of),
        nat_pool_followup(tests, pools, xref, places),
        zone=ZONE,
        as_of=as_of,
        case_active_days=14,
        contacts=spark.createDataFrame(
            [("P1", "P4", bj(2026, 3, 1, 18)), ("P1", None, bj(2026, 3, 1, 18))],
            "case_person_id string, contact_person_id string, last_contact_at timestamp",
        ),
        quarantine_days=14,
    )
    # As the stage runs it (healthlake.spark.UNION_WITHOUT_PARTITIONING: a Spark 4.1 bug otherwise).
    with sql_conf(spark, UNION_WITHOUT_PARTITIONING):
        codes = health_code(places.select("person_id"), hits, as_of=as_of).collect()
    got = {
        (
            r["person_id"],
            r["valid_from"].day,
            r["valid_to"].day if r["valid_to"] else None,
            r["code"],
            r["rule"],
        )
        for r in codes
    }
    # The series starts on 1 March, the first day a rule applied (P2's pool was reported that evening).
    assert got == {
        ("P1", 1, 1, "green", "no_rule"),
        ("P1", 2, 4, "red", "active_case"),  # reported 2 March, released on 5 March
        ("P1", 5, None, "green", "no_rule"),
        ("P2", 1, 2, "yellow", "retest_due"),  # re-tested on 3 March
        ("P2", 3, None, "green", "no_rule"),
        ("P3", 1, 2, "green", "no_rule"),
        ("P3", 3, None, "yellow", "in_isolation"),  # from 00:30 on 3 March, still isolated
        ("P4", 1, 1, "green", "no_rule"),
        ("P4", 2, None, "yellow", "close_contact"),  # from P1's report, 14 days past the contact on 1 March
    }
    reasons = {r["rule"]: r["reason"] for r in codes}
    assert reasons["in_isolation"] == "isolation order o2 (close_contact, home) since 2026-03-03"
    assert reasons["close_contact"] == "close contact of a case, last contact on 2026-03-01"
    assert reasons["retest_due"] == "pooled sample PL1 positive: individual re-test due since 2026-03-01"
