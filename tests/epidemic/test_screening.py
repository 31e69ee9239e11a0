"""Pooled mass screening on a hand-worked example: the re-test list of a positive pool and round coverage."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from healthlake.epidemic.people import residents
from healthlake.epidemic.screening import nat_pool_followup, nat_screening_daily
from tests.epidemic.test_tables import XREF, ZONE, _areas, _places, _xref, bj

TESTS = (
    "institution_id string, source_record_id string, source_patient_id string, sample_time timestamp, "
    "report_time timestamp, result string, sample_mode string, pool_id string"
)
POOLS = (
    "institution_id string, source_record_id string, pool_id string, sample_time timestamp, "
    "report_time timestamp, pool_size int, result string"
)


def _tests(spark: SparkSession) -> DataFrame:
    ten = bj(2026, 3, 1, 10)
    return spark.createDataFrame(
        [
            # Pool PL1 (positive): P1, P3 and a patient not linked yet. Pool PL2 (negative): P2.
            ("L1", "m1", "a", ten, None, None, "pooled", "PL1"),
            ("L1", "m2", "c", ten, None, None, "pooled", "PL1"),
            ("L1", "m3", "zz", ten, None, None, "pooled", "PL1"),
            ("L1", "m4", "b", ten, None, None, "pooled", "PL2"),
            # P1 alone before the pool (not a re-test), then the re-test: positive.
            ("L1", "t11", "a", bj(2026, 2, 28, 9), bj(2026, 2, 28, 19), "negative", "single", None),
            ("L1", "t10", "a", bj(2026, 3, 2, 9), bj(2026, 3, 2, 15), "positive", "single", None),
            # P3's re-test sampled at 08:00 on 2 March, no result yet.
            ("L1", "t12", "c", bj(2026, 3, 2, 8), None, None, "single", None),
            # Day two of the round: P2 in pool PL3; a second round on 5 March: P1 in pool PL4.
            ("L1", "m5", "b", bj(2026, 3, 2, 7), None, None, "pooled", "PL3"),
            ("L1", "m6", "a", bj(2026, 3, 5, 7), None, None, "pooled", "PL4"),
        ],
        TESTS,
    )


def _pools(spark: SparkSession) -> DataFrame:
    ten = bj(2026, 3, 1, 10)
    return spark.createDataFrame(
        [
            ("C1", "PL1", "PL1", ten, bj(2026, 3, 1, 20), 3, "positive"),
            ("C1", "PL2", "PL2", ten, bj(2026, 3, 1, 18), 1, "negative"),
            ("C1", "PL3", "PL3", bj(2026, 3, 2, 7), bj(2026, 3, 2, 12), 1, "negative"),
            ("C1", "PL4", "PL4", bj(2026, 3, 5, 7), bj(2026, 3, 5, 12), 1, "negative"),
        ],
        POOLS,
    )


def test_every_member_of_a_positive_pool_is_followed_to_their_own_result(spark: SparkSession) -> None:
    followup = nat_pool_followup(_tests(spark), _pools(spark), _xref(spark), _places(spark))
    got = {
        r["member_test_id"]: (r["person_id"], r["retest_test_id"], r["status"], r["hours_to_retest"])
        for r in followup.collect()
    }
    assert got == {
        "m1": ("P1", "t10", "positive", 13.0),  # pool reported 20:00, re-sampled 09:00 the next day
        "m2": ("P3", "t12", "awaiting_result", 12.0),
        "m3": (None, None, "awaiting_retest", None),  # no single test of that patient since
    }


def test_screening_rounds_report_coverage_of_residents_and_time_to_report(spark: SparkSession) -> None:
    records = spark.createDataFrame(
        [("R", "r1", "csv_registry"), ("R", "r2", "csv_registry"), ("R", "r3", "csv_registry")],
        "institution_id string, source_patient_id string, record_source string",
    )
    xref = _xref(spark).unionByName(
        spark.createDataFrame([("R", "r1", "P1"), ("R", "r2", "P2"), ("R", "r3", "P3")], XREF)
    )
    daily = nat_screening_daily(
        _tests(spark), _pools(spark), xref, _places(spark), residents(records, xref), _areas(spark), zone=ZONE
    )
    cols = [
        "samples",
        "people_sampled",
        "people_covered",
        "residents",
        "positive_pools",
        "median_hours_to_report",
    ]
    county = {
        (r["round_start"].day, r["date"].day): tuple(r[c] for c in cols)
        for r in daily.where("level = 'county' AND unit_code = '360102'").collect()
    }
    # Round one: 1-2 March (pooled sampling on both days); round two: 5 March. On 1 March four pooled
    # samples of P1, P3, P2 and the unlinked patient (not a resident): three of three residents covered;
    # PL1's members waited 10 h for its report, PL2's member 8 h.
    assert county == {
        (1, 1): (3, 3, 3, 3, 1, 10.0),
        (1, 2): (3, 3, 3, 3, 0, 5.0),  # t10 6 h, t12 no report yet, m5 5 h
        (5, 5): (1, 1, 1, 3, 0, 5.0),
    }
    coverage = {
        r["round_start"].day: r["coverage"]
        for r in daily.where("unit_code = '360102' AND date = '2026-03-05'").collect()
    }
    assert coverage == {5: 1 / 3}
    township = {
        r["unit_code"]: r["positive_pools"]
        for r in daily.where("level = 'township' AND date = '2026-03-01'").collect()
    }
    assert township == {"360102001": 1, "360102002": 0, "unknown": 0}  # PL1 is placed by its first member
