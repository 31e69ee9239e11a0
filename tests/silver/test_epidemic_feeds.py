"""The epidemic feeds on hand-made CSV rows: pooled tests (混管) and their pools, isolation orders, pings.

Expected instants: the CSV's Beijing wall clock minus eight hours (docs/silver.md, Times and days).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from healthlake import io
from healthlake.config import Config, load_config
from healthlake.pipelines import conform, ingest

NAT_TESTS = (
    (
        "test_id,lab_id,person_no,name,id_number,phone,sample_type,sample_time,report_time,result,ct_value,"
        "sample_mode,pool_id\n"
    )
    + """T-single,L1,P1,张三,,13800000001,咽拭子,2026-01-05 08:00:00,2026-01-05 14:00:00,阴性,,单管,
T-legacy,L1,P2,李四,,13800000002,咽拭子,2026-01-05 08:10:00,2026-01-05 14:10:00,阳性,25.1,,
T-pooled,L1,P3,王五,,13800000003,咽拭子,2026-01-05 09:00:00,,,,混管,HG1
T-pooled-no-tube,L1,P4,赵六,,13800000004,咽拭子,2026-01-05 09:01:00,,,,混管,
T-single-no-result,L1,P5,钱七,,13800000005,咽拭子,2026-01-05 09:02:00,2026-01-05 15:00:00,,,单管,
T-nobody,L1,,孙八,,13800000006,咽拭子,2026-01-05 09:03:00,2026-01-05 15:00:00,阴性,,单管,
T-odd-mode,L1,P7,周九,,13800000007,咽拭子,2026-01-05 09:04:00,2026-01-05 15:00:00,阴性,,混合,
"""
)
NAT_POOLS = """pool_id,sample_time,report_time,pool_size,result,ct_value
HG1,2026-01-05 09:30:00,2026-01-05 15:00:00,10,阴性,
HG2,2026-01-05 09:40:00,2026-01-05 16:00:00,0,阳性,30.5
HG3,2026-01-05 09:50:00,2026-01-05 16:00:00,8,?,
"""
ORDERS_HEADER = (
    "order_id,person_no,name,id_number,phone,category,place_type,start_time,planned_end_time,released_at\n"
)
ORDERS_DAY1 = ORDERS_HEADER + (
    "O1,P1,张三,,13800000001,密接,集中隔离,2026-01-05 10:00:00,2026-01-19 10:00:00,\n"
    "O2,P2,李四,,13800000002,case,centralized,2026-01-05 18:00:00,2026-01-19 18:00:00,\n"
    "O3,,孙八,,13800000006,次密接,居家隔离,2026-01-05 11:00:00,2026-01-12 11:00:00,\n"
    "O4,P9,吴十,,13800000009,风险区域,居家隔离,,2026-01-12 11:00:00,\n"
    "O5,P9,吴十,,13800000009,观察,居家隔离,2026-01-05 12:00:00,2026-01-12 12:00:00,\n"
    "O6,P9,吴十,,13800000009,风险区域,居家,2026-01-05 12:00:00,2026-01-12 12:00:00,\n"
)
ORDERS_DAY2 = (
    ORDERS_HEADER
    + "O1,P1,张三,,13800000001,密接,集中隔离,2026-01-05 10:00:00,2026-01-19 10:00:00,2026-01-06 09:00:00\n"
)
PINGS = """phone,ts,lat,lon,accuracy_m
13800000001,2026-01-05 08:00:00,28.100000,116.100000,12
,2026-01-05 08:01:00,28.100100,116.100100,350
"""


def _utc(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A Beijing wall-clock time of January 2026 as the naive UTC datetime Spark returns (UTC session)."""
    return dt.datetime(2026, 1, day, hour, minute) - dt.timedelta(hours=8)


def _land(root: Path, relative: str, text: str) -> None:
    path = root / "landing" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("epidemic_feeds")
    _land(root, "public_health/L1/2026-01-05/nat_tests_20260105_s0000.csv", NAT_TESTS)
    _land(root, "public_health/L1/2026-01-05/nat_pools_20260105_s0000.csv", NAT_POOLS)
    _land(root, "public_health/L1/2026-01-05/isolation_orders_20260105_s0000.csv", ORDERS_DAY1)
    _land(root, "public_health/L1/2026-01-06/isolation_orders_20260106_s0000.csv", ORDERS_DAY2)
    _land(root, "location/T1/2026-01-05/pings_20260105_s0000.csv", PINGS)
    cfg = load_config(overrides={"landing_root": str(root / "landing"), "lake_root": str(root / "lake")})
    ingest.run(spark, cfg)
    conform.run(spark, cfg)
    return cfg


def _rows(spark: SparkSession, cfg: Config, table: str) -> dict[str, object]:
    return {r.source_record_id: r for r in io.read_table(spark, cfg.lake_root, table).collect()}


def _quarantined(spark: SparkSession, cfg: Config, table: str) -> dict[str | None, set[str]]:
    rows = (
        io.read_table(spark, cfg.lake_root, "silver.quarantine").where(f"silver_table = '{table}'").collect()
    )
    return {r.source_record_id: set(r.failed_rules) for r in rows}


def test_nat_tests_single_and_pooled(spark: SparkSession, lake: Config) -> None:
    got = _rows(spark, lake, "silver.nat_test")
    assert set(got) == {"T-single", "T-legacy", "T-pooled"}
    single, legacy, pooled = got["T-single"], got["T-legacy"], got["T-pooled"]
    assert (single.sample_mode, single.pool_id, single.result) == ("single", None, "negative")
    assert (single.sample_time, single.report_time) == (_utc(5, 8), _utc(5, 14))
    assert (legacy.sample_mode, legacy.result, legacy.ct_value) == (
        "single",
        "positive",
        25.1,
    )  # no mode: 单管
    assert (pooled.sample_mode, pooled.pool_id, pooled.result, pooled.report_time) == (
        "pooled",
        "HG1",
        None,
        None,
    )
    assert pooled._event_time == _utc(5, 9)  # no report of its own: its sampling time
    assert _quarantined(spark, lake, "silver.nat_test") == {
        "T-pooled-no-tube": {"pooled_test_has_pool"},
        "T-single-no-result": {"single_test_has_result"},
        "T-nobody": {"nat_test_has_person"},
        "T-odd-mode": {"sample_mode_known"},
    }


def test_nat_pools(spark: SparkSession, lake: Config) -> None:
    got = _rows(spark, lake, "silver.nat_pool")
    assert set(got) == {"HG1"}
    hg1 = got["HG1"]
    assert (hg1.institution_id, hg1.pool_id, hg1.pool_size, hg1.result, hg1.ct_value) == (
        "L1",
        "HG1",
        10,
        "negative",
        None,
    )
    assert (hg1.sample_time, hg1.report_time) == (_utc(5, 9, 30), _utc(5, 15))
    assert _quarantined(spark, lake, "silver.nat_pool") == {
        "HG2": {"pool_has_members"},
        "HG3": {"pool_result_known"},
    }


def test_isolation_orders_and_their_release(spark: SparkSession, lake: Config) -> None:
    got = _rows(spark, lake, "silver.isolation_order")
    assert set(got) == {"O1", "O2", "O6"}
    o1, o2, o6 = got["O1"], got["O2"], got["O6"]
    assert (o1.source_patient_id, o1.category, o1.place_type) == ("P1", "close_contact", "centralized")
    assert (o1.start_time, o1.planned_end_time) == (_utc(5, 10), _utc(19, 10))
    assert o1.released_at == _utc(6, 9)  # the release, sent the next day, is the later version
    assert (o2.category, o2.place_type, o2.released_at) == ("case", "centralized", None)
    assert (o6.category, o6.place_type) == ("risk_area", "home")
    assert _quarantined(spark, lake, "silver.isolation_order") == {
        "O3": {"isolation_order_has_person"},
        "O4": {"isolation_order_has_start"},
        "O5": {"isolation_category_known"},
    }


def test_orders_and_tests_name_their_persons_for_the_empi(spark: SparkSession, lake: Config) -> None:
    records = _rows(spark, lake, "silver.patient_record")
    assert records["P9"].record_source == "csv_isolation_order"  # known only from an order
    assert records["P3"].record_source == "csv_nat_test"
    assert (
        records["P9"].phone_token
        and "phone" not in io.read_table(spark, lake.lake_root, "silver.patient_record").columns
    )


def test_a_ping_without_a_phone_is_quarantined(spark: SparkSession, lake: Config) -> None:
    events = io.read_table(spark, lake.lake_root, "silver.location_event").collect()
    assert len(events) == 1 and events[0].accuracy_m == 12
    quarantined = io.read_table(spark, lake.lake_root, "silver.quarantine").where(
        "silver_table = 'silver.location_event'"
    )
    assert [set(r.failed_rules) for r in quarantined.collect()] == [{"location_event_has_phone"}]


def test_a_ping_sent_again_a_day_later_is_a_duplicate(spark: SparkSession, tmp_path: Path) -> None:
    # The second run looks for stored pings only in its own span of times (``Entity.key_time``): the
    # re-sent 08:00 ping is found there (a duplicate, not a second row), the new ping is inserted.
    _land(tmp_path, "location/T1/2026-01-05/pings_20260105_s0000.csv", PINGS)
    cfg = load_config(
        overrides={"landing_root": str(tmp_path / "landing"), "lake_root": str(tmp_path / "lake")}
    )
    ingest.run(spark, cfg)
    conform.run(spark, cfg)
    again = (
        "phone,ts,lat,lon,accuracy_m\n"
        + PINGS.splitlines()[1]
        + "\n13800000001,2026-01-06 09:00:00,28.2,116.2,10\n"
    )
    _land(tmp_path, "location/T1/2026-01-06/pings_20260106_s0000.csv", again)
    ingest.run(spark, cfg)
    (result,) = conform.run(spark, cfg)
    assert (result.bronze_rows, result.conformed, result.duplicates) == (2, 1, 1)
    events = io.read_table(spark, cfg.lake_root, "silver.location_event")
    assert sorted(r.event_time for r in events.collect()) == [_utc(5, 8), _utc(6, 9)]
