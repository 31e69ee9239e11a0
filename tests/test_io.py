"""Delta reads and writes: table paths, append, MERGE upsert, time travel, listing, status, catalog."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from healthlake import io
from healthlake.errors import LakeError

SCHEMA = "institution_id STRING, source_record_id STRING, event_time TIMESTAMP, status STRING"


def _visits(spark: SparkSession, rows: list[tuple[str, str, str, str]]) -> DataFrame:
    data = [(i, r, dt.datetime.fromisoformat(t), s) for i, r, t, s in rows]
    return spark.createDataFrame(data, SCHEMA)


def test_table_path() -> None:
    assert io.table_path("./lake", "bronze.fhir_resources") == "./lake/bronze/fhir_resources"
    assert io.table_path("s3a://b/lake/", "gold.patient_360") == "s3a://b/lake/gold/patient_360"


@pytest.mark.parametrize(
    "name", ["fhir_resources", "bronze.", "a.b.c", "Bronze.x", "bronze.x-y", "../x.y", ""]
)
def test_bad_table_name_is_one_line(name: str) -> None:
    with pytest.raises(LakeError, match="bad table name") as info:
        io.table_path("./lake", name)
    assert "\n" not in str(info.value)


def test_append_creates_then_appends(spark: SparkSession, lake: str) -> None:
    first = _visits(spark, [("H1", "v1", "2026-01-05 08:00:00", "arrived")])
    second = _visits(spark, [("H1", "v2", "2026-01-05 09:00:00", "arrived")])
    io.append(first, lake, "bronze.visits")
    io.append(second, lake, "bronze.visits")

    assert (Path(lake) / "bronze" / "visits" / "_delta_log").is_dir()
    assertDataFrameEqual(io.read_table(spark, lake, "bronze.visits"), first.unionByName(second))
    assertDataFrameEqual(io.read_table(spark, lake, "bronze.visits", version=0), first)
    assert [r["operation"] for r in io.history(spark, lake, "bronze.visits").collect()] == ["WRITE", "WRITE"]


def test_read_by_timestamp(spark: SparkSession, lake: str) -> None:
    first = _visits(spark, [("H1", "v1", "2026-01-05 08:00:00", "arrived")])
    io.append(first, lake, "bronze.visits")
    created = io.history(spark, lake, "bronze.visits").first()
    assert created is not None
    # No wait needed: the next commit is stamped later than this one (Delta keeps commit times monotonic).
    io.append(_visits(spark, [("H1", "v2", "2026-01-05 09:00:00", "arrived")]), lake, "bronze.visits")
    assertDataFrameEqual(io.read_table(spark, lake, "bronze.visits", timestamp=created["timestamp"]), first)


def test_read_missing_table_is_a_lake_error(spark: SparkSession, lake: str) -> None:
    with pytest.raises(LakeError, match="table silver.nothing not found"):
        io.read_table(spark, lake, "silver.nothing")
    with pytest.raises(LakeError, match="not both"):
        io.read_table(spark, lake, "silver.nothing", version=0, timestamp="2026-01-01")


def test_upsert_merges_by_keys_and_event_time(spark: SparkSession, lake: str) -> None:
    initial = _visits(
        spark,
        [
            ("H1", "v1", "2026-01-05 08:00:00", "arrived"),
            ("H1", "v2", "2026-01-05 09:00:00", "arrived"),
            ("H2", "v1", "2026-01-05 10:00:00", "arrived"),
        ],
    )
    io.upsert(initial, lake, "silver.encounter", ["institution_id", "source_record_id"])
    changes = _visits(
        spark,
        [
            ("H1", "v1", "2026-01-05 12:00:00", "finished"),  # newer event: applied
            ("H2", "v1", "2026-01-05 07:00:00", "cancelled"),  # older event arriving late: ignored
            ("H3", "v1", "2026-01-05 11:00:00", "arrived"),  # new key: inserted
        ],
    )
    io.upsert(
        changes,
        lake,
        "silver.encounter",
        ["institution_id", "source_record_id"],
        update_condition="s.event_time >= t.event_time",
    )

    expected = _visits(
        spark,
        [
            ("H1", "v1", "2026-01-05 12:00:00", "finished"),
            ("H1", "v2", "2026-01-05 09:00:00", "arrived"),
            ("H2", "v1", "2026-01-05 10:00:00", "arrived"),
            ("H3", "v1", "2026-01-05 11:00:00", "arrived"),
        ],
    )
    assertDataFrameEqual(io.read_table(spark, lake, "silver.encounter"), expected)
    last = io.history(spark, lake, "silver.encounter", limit=1).first()
    assert last is not None
    assert last["operation"] == "MERGE"
    assert last["operationMetrics"]["numTargetRowsUpdated"] == "1"
    assert last["operationMetrics"]["numTargetRowsInserted"] == "1"


def test_upsert_rejects_missing_keys(spark: SparkSession, lake: str) -> None:
    rows = _visits(spark, [("H1", "v1", "2026-01-05 08:00:00", "arrived")])
    with pytest.raises(LakeError, match="no key columns"):
        io.upsert(rows, lake, "silver.encounter", [])
    with pytest.raises(LakeError, match=r"\['visit_id'\] are not in the incoming rows"):
        io.upsert(rows, lake, "silver.encounter", ["visit_id"])


def test_list_tables_finds_delta_folders_two_levels_down(spark: SparkSession, lake: str) -> None:
    io.append(spark.range(3), lake, "bronze.fhir_resources")
    io.append(spark.range(2), lake, "silver.person")
    (Path(lake) / "bronze" / "not_a_table").mkdir()
    (Path(lake) / "_warehouse" / "bronze.db").mkdir(parents=True)
    (Path(lake) / "notes.txt").write_text("x", encoding="utf-8")

    expected = [
        io.TableRef("bronze", "fhir_resources", f"{lake}/bronze/fhir_resources"),
        io.TableRef("silver", "person", f"{lake}/silver/person"),
    ]
    assert io.list_tables(lake) == expected
    through_hadoop = io.list_tables(f"file://{lake}", spark)
    assert [(t.layer, t.name) for t in through_hadoop] == [("bronze", "fhir_resources"), ("silver", "person")]


def test_list_tables_of_missing_or_empty_lake(tmp_path: Path, lake: str) -> None:
    assert io.list_tables(lake) == []
    with pytest.raises(LakeError, match="does not exist"):
        io.list_tables(str(tmp_path / "nowhere"))


def test_table_status(spark: SparkSession, lake: str) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    io.append(spark.range(3), lake, "bronze.fhir_resources")
    io.append(spark.range(4), lake, "bronze.fhir_resources")
    io.upsert(spark.range(5).withColumnRenamed("id", "k"), lake, "silver.person", ["k"])
    io.upsert(spark.range(3, 7).withColumnRenamed("id", "k"), lake, "silver.person", ["k"])

    status = io.table_status(spark, lake)
    assert [s[:5] for s in status] == [
        ("bronze", "fhir_resources", 1, 7, "WRITE"),
        ("silver", "person", 1, 7, "MERGE"),
    ]
    assert all(before <= s.last_time <= dt.datetime.now(dt.UTC) for s in status)


def test_register_tables_in_catalog(spark: SparkSession, lake: str, tmp_path: Path) -> None:
    io.append(spark.range(3), lake, "bronze.events")
    assert io.register_tables(spark, lake) == ["bronze.events"]
    assert spark.sql("SELECT count(*) AS n FROM bronze.events").first()["n"] == 3  # type: ignore[index]
    assert io.register_tables(spark, lake) == ["bronze.events"]

    other = str(tmp_path / "other_lake")
    io.append(spark.range(5), other, "bronze.events")
    io.register_tables(spark, other)
    assert spark.sql("SELECT count(*) AS n FROM bronze.events").first()["n"] == 5  # type: ignore[index]


def test_create_table_under_a_relative_lake_root(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's quickstart passes --lake ./lake.
    from pyspark.sql.types import StructType

    monkeypatch.chdir(tmp_path)
    assert io.create_table(spark, "./lake", "bronze.visits", StructType.fromDDL(SCHEMA))
    # Created where Python's working directory says (the JVM's may differ; it reads absolute paths).
    assert (tmp_path / "lake" / "bronze" / "visits" / "_delta_log").is_dir()
