"""The epidemic registry on the derived-table contract: after a day of changes, an incremental run equals
a full build (``tests/derived_check.py``), and the stage says what it lacks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from healthlake import catalog, io
from healthlake.derived import dependency_order
from healthlake.epidemic.registry import EPIDEMIC
from healthlake.pipelines import epidemic
from tests.derived_check import assert_update_equals_build, lake_versions
from tests.epidemic.test_health_code import ORDERS
from tests.epidemic.test_screening import POOLS, TESTS
from tests.epidemic.test_tables import DIAGNOSES, PLACES, XREF, bj

CDF = io.CHANGE_DATA_FEED
IMMUNIZATIONS = (
    "institution_id string, source_patient_id string, vaccine_code string, vaccinated_at timestamp, "
    "is_cancelled boolean"
)
RECORDS = "institution_id string, source_patient_id string, record_source string, phone_token string"
PINGS = (
    "institution_id string, source_record_id string, phone_token string, event_time timestamp, lat double, "
    "lon double, accuracy_m double"
)
AREAS = "area_code string, name string, level string, parent_code string, lat double, lon double"


def _append(spark: SparkSession, lake: str, name: str, rows: list[tuple], schema: str) -> None:
    df = spark.createDataFrame(rows, schema)
    if not io.is_table(spark, lake, name):
        io.create_table(spark, lake, name, df.schema, properties=CDF)
    io.append(df, lake, name)


def _day1(spark: SparkSession, lake: str) -> None:
    _append(
        spark,
        lake,
        catalog.SILVER_NAT_TEST,
        [
            ("L1", "t1", "a", bj(2026, 3, 1, 23, 30), bj(2026, 3, 2, 0, 30), "positive", "single", None),
            ("L1", "t3", "b", bj(2026, 3, 1, 8), bj(2026, 3, 1, 20), "negative", "single", None),
            ("L1", "t6", "c", bj(2026, 3, 2, 16), bj(2026, 3, 2, 22), "negative", "single", None),
            ("L1", "t8", "e", bj(2026, 2, 20, 9), bj(2026, 2, 20, 19), "negative", "single", None),
            # A screening round on 1-2 March: pool PL1 (P2, P3) positive, PL2 (P1) negative.
            ("L1", "m1", "b", bj(2026, 3, 1, 10), None, None, "pooled", "PL1"),
            ("L1", "m2", "c", bj(2026, 3, 1, 10), None, None, "pooled", "PL1"),
            ("L1", "m3", "a", bj(2026, 3, 2, 10), None, None, "pooled", "PL2"),
        ],
        TESTS,
    )
    _append(
        spark,
        lake,
        catalog.SILVER_NAT_POOL,
        [
            ("C1", "PL1", "PL1", bj(2026, 3, 1, 10), bj(2026, 3, 1, 20), 2, "positive"),
            ("C1", "PL2", "PL2", bj(2026, 3, 2, 10), bj(2026, 3, 2, 20), 1, "negative"),
        ],
        POOLS,
    )
    _append(
        spark,
        lake,
        catalog.SILVER_PERSON_XREF,
        [
            ("L1", "a", "P1"),
            ("L1", "b", "P2"),
            ("L1", "c", "P3"),
            ("L1", "e", "P5"),
            ("R", "r1", "P1"),
            ("R", "r2", "P2"),
            ("R", "r3", "P3"),
        ],
        XREF,
    )
    _append(
        spark, lake, catalog.SILVER_DIAGNOSIS, [("L1", "a", "U07.100", bj(2026, 3, 1, 20), False)], DIAGNOSES
    )
    _append(
        spark,
        lake,
        catalog.SILVER_IMMUNIZATION,
        [("L1", "a", "COVID19", bj(2026, 2, 1, 9), False), ("L1", "b", "COVID19", bj(2026, 2, 2, 9), False)],
        IMMUNIZATIONS,
    )
    _append(
        spark,
        lake,
        catalog.SILVER_PATIENT_RECORD,
        [
            ("R", "r1", "csv_registry", "ph1"),
            ("R", "r2", "csv_registry", "ph2"),
            ("R", "r3", "csv_registry", "ph3"),
        ],
        RECORDS,
    )
    # P1 (the case) and P3 at lunch together on 1 March, their phones pinging 3 minutes apart; P2 far away.
    pings = []
    for minute in range(0, 45, 6):
        pings.append(("T1", f"p1-{minute}", "ph1", bj(2026, 3, 1, 12, minute), 27.38, 114.61, 10.0))
        pings.append(("T1", f"p3-{minute}", "ph3", bj(2026, 3, 1, 12, minute + 3), 27.38005, 114.61, 10.0))
        pings.append(("T1", f"p2-{minute}", "ph2", bj(2026, 3, 1, 12, minute + 1), 27.48, 114.71, 10.0))
    _append(spark, lake, catalog.SILVER_LOCATION_EVENT, pings, PINGS)
    _append(
        spark,
        lake,
        catalog.SILVER_AREA,
        [
            ("360102001", "甲街道", "township", "360102", 27.38, 114.61),
            ("360102002", "乙镇", "township", "360102", 27.48, 114.71),
            ("360102", "长寿区", "county", "360100", None, None),
            ("360100", "南市", "city", "360000", None, None),
            ("360000", "江南省", "province", None, None, None),
        ],
        AREAS,
    )
    places = [
        ("P1", "360102001", "360102001", "360102", "360100", "360000", "30-34"),
        ("P2", "360102002", "360102002", "360102", "360100", "360000", "60-64"),
        ("P3", "360102002", "360102002", "360102", "360100", "360000", "30-34"),
        ("P5", "360102001", "360102001", "360102", "360100", "360000", "40-44"),
    ]
    io.overwrite(spark.createDataFrame(places, PLACES), lake, catalog.GOLD_PATIENT_360)


def _day2(spark: SparkSession, lake: str) -> None:
    # New tests of the day: P2 positive, P1's repeat positive, and a late-arriving test of 25 February.
    _append(
        spark,
        lake,
        catalog.SILVER_NAT_TEST,
        [
            ("L1", "t2", "a", bj(2026, 3, 3, 9), bj(2026, 3, 3, 15), "positive", "single", None),
            ("L2", "t4", "b2", bj(2026, 3, 3, 7, 59), bj(2026, 3, 3, 18), "positive", "single", None),
            ("L1", "t9", "c", bj(2026, 2, 25, 9), bj(2026, 2, 25, 19), "negative", "single", None),
            # The round's third day (P5's record, relinked below) and a pool not reported yet.
            ("L1", "m4", "e", bj(2026, 3, 3, 10), None, None, "pooled", "PL3"),
        ],
        TESTS,
    )
    _append(
        spark, lake, catalog.SILVER_NAT_POOL, [("C1", "PL3", "PL3", bj(2026, 3, 3, 10), None, 1, None)], POOLS
    )
    # P3 released early; P2 (the new case) ordered into isolation.
    io.upsert(
        spark.createDataFrame(
            [
                (
                    "L1",
                    "o2",
                    "c",
                    "close_contact",
                    "home",
                    bj(2026, 3, 2, 14),
                    bj(2026, 3, 16, 14),
                    bj(2026, 3, 3, 9),
                ),
                ("L2", "o3", "b2", "case", "centralized", bj(2026, 3, 3, 19), bj(2026, 3, 17, 19), None),
            ],
            ORDERS,
        ),
        lake,
        catalog.SILVER_ISOLATION_ORDER,
        ["institution_id", "source_record_id"],
    )
    # A new source patient linked to P2; P5's record relinked to P3 (its test of 20 February moves).
    io.upsert(
        spark.createDataFrame([("L2", "b2", "P2"), ("L1", "e", "P3")], XREF),
        lake,
        catalog.SILVER_PERSON_XREF,
        ["institution_id", "source_patient_id"],
    )
    _append(
        spark,
        lake,
        catalog.SILVER_IMMUNIZATION,
        [("L1", "a", "COVID19", bj(2026, 3, 3, 9), False)],
        IMMUNIZATIONS,
    )
    # P2 passes through 甲街道, a risk area since P1's report on 2 March.
    _append(
        spark,
        lake,
        catalog.SILVER_LOCATION_EVENT,
        [("T1", "p2-d2", "ph2", bj(2026, 3, 3, 12), 27.381, 114.611, 10.0)],
        PINGS,
    )
    # P3 moved to the other township (publish's new patient_360), P5 is gone (merged into P3).
    places = [
        ("P1", "360102001", "360102001", "360102", "360100", "360000", "30-34"),
        ("P2", "360102002", "360102002", "360102", "360100", "360000", "60-64"),
        ("P3", "360102001", "360102001", "360102", "360100", "360000", "30-34"),
    ]
    io.overwrite(spark.createDataFrame(places, PLACES), lake, catalog.GOLD_PATIENT_360)


def test_the_epidemic_registry_is_in_the_order_it_runs() -> None:
    assert dependency_order(EPIDEMIC) == list(EPIDEMIC)


def test_every_epidemic_table_updated_after_a_day_equals_a_full_build(
    spark: SparkSession, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    _day1(spark, str(lake))
    day1 = lake_versions(spark, str(lake))
    _day2(spark, str(lake))
    day2 = lake_versions(spark, str(lake))
    done = assert_update_equals_build(
        spark,
        lake,
        EPIDEMIC,
        day1=day1,
        day2=day2,
        as_of=(dt.date(2026, 3, 2), dt.date(2026, 3, 3)),
        work=tmp_path / "full",
        settings={"epidemic.case_active_days": 3, "epidemic.moving_days": 3},
        empty=epidemic.EMPTY,
    )
    # Every table with an incremental rule ran it; gold.health_code has none and is built in full.
    rules = {t.name: "incremental" if t.update is not None else "full" for t in EPIDEMIC}
    assert done == rules and rules[catalog.GOLD_HEALTH_CODE] == "full"
    contacts = io.read_table(spark, str(lake), catalog.GOLD_CLOSE_CONTACTS).collect()
    assert [(r.case_person_id, r.contact_person_id, r.exposure_minutes) for r in contacts] == [
        ("P1", "P3", 40)
    ]
    risk = io.read_table(spark, str(lake), catalog.GOLD_RISK_PERSONS).collect()
    assert {(r.person_id, r.category) for r in risk} >= {
        ("P1", "case"),
        ("P3", "close_contact"),
        ("P2", "risk_area"),
    }


def test_the_stage_says_what_is_missing(spark: SparkSession, tmp_path: Path) -> None:
    """A run before the EMPI is a one-line error; the full run, its re-run (``unchanged``) and its log
    are checked on the generated region (``tests/epidemic/test_epidemic_region.py``)."""
    from healthlake.config import load_config

    lake = tmp_path / "lake"
    cfg = load_config(overrides={"lake_root": str(lake)})
    _append(spark, str(lake), catalog.SILVER_PATIENT_RECORD, [("R", "r1", "csv_registry", None)], RECORDS)
    with pytest.raises(
        epidemic.EpidemicError,
        match=r"^silver.person_xref is not in the lake .*: run `healthlake link` first$",
    ):
        epidemic.run(spark, cfg)
