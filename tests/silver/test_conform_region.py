"""Conform a generated region with every defect switched on: reconciliation, privacy, truth, re-runs."""

from __future__ import annotations

import json
from functools import reduce

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from healthlake import io
from healthlake.empi import IDENTITY_COLUMNS, patient_identities
from healthlake.pipelines import conform
from tests.conftest import Conformed

SILVER_TABLES = (*conform.conformed_tables(), "silver.quarantine", "silver.dq_metrics", "silver.conform_log")


@pytest.fixture(scope="module")
def region(conformed_region: Conformed) -> Conformed:
    return conformed_region


def test_every_bronze_row_is_conformed_quarantined_or_a_counted_duplicate(
    spark: SparkSession, region: Conformed
) -> None:
    assert {r.bronze_table for r in region.results} == set(conform.BRONZE_INPUTS)
    for r in region.results:
        assert r.bronze_rows == io.read_table(spark, region.cfg.lake_root, r.bronze_table).count()
        assert r.bronze_rows == r.conformed + r.superseded + r.quarantined + r.duplicates + r.not_modelled
        assert r.conformed > 0
    # Exact re-sends of CSV rows are counted, not stored twice.
    assert sum(r.duplicates for r in region.results) > 0


# The generator's truth names each record by the silver entity it belongs to (deliveries.parquet).
ENTITY_TABLES = {
    entity: f"silver.{entity}"
    for entity in (
        "patient_record",
        "encounter",
        "diagnosis",
        "observation",
        "medication",
        "nat_test",
        "nat_pool",
        "isolation_order",
        "immunization",
        "chronic_followup",
        "procedure",
        "allergy",
    )
}


def test_every_true_record_that_reached_bronze_is_in_silver_or_quarantined(
    spark: SparkSession, region: Conformed
) -> None:
    """Presence by key against the truth, not counts (a dropped record hides behind one counted twice)."""
    lake = region.cfg.lake_root
    keys = ["entity", "institution_id", "source_record_id"]
    deliveries = spark.read.parquet(str(region.truth / "deliveries.parquet"))
    prefix = str(region.landing.resolve()) + "/"
    bronze = reduce(
        DataFrame.unionByName,
        [
            io.read_table(spark, lake, name).select(
                # Provenance holds the file's URI: the truth has the path under the landing root.
                F.substring_index("_source_file", prefix, -1).alias("source_file"),
                F.col("_record_offset").alias("record_offset"),
            )
            for name in conform.BRONZE_INPUTS
        ],
    )
    reached = deliveries.join(bronze, ["source_file", "record_offset"], "left_semi").select(*keys).distinct()
    stored = reduce(
        DataFrame.unionByName,
        [
            io.read_table(spark, lake, table).select(F.lit(entity).alias("entity"), *keys[1:])
            for entity, table in ENTITY_TABLES.items()
            if io.is_table(spark, lake, table)
        ],
    )
    quarantined = (
        io.read_table(spark, lake, "silver.quarantine")
        .where(F.size("failed_rules") > 0)
        .select(F.substring_index("silver_table", ".", -1).alias("entity"), *keys[1:])
    )
    missing = reached.join(stored.unionByName(quarantined), keys, "left_anti")
    per_entity = {r.entity: r["count"] for r in reached.groupBy("entity").count().collect()}
    assert missing.isEmpty(), (
        f"{missing.count()} true records reached bronze but are in no silver table and no quarantine, "
        f"e.g. {missing.limit(5).collect()}"
    )
    assert set(per_entity) >= set(ENTITY_TABLES) - {"immunization"}, per_entity
    # Nothing invented: every silver key is a true record's.
    invented = stored.join(deliveries.select(*keys), keys, "left_anti")
    assert invented.isEmpty(), invented.limit(5).collect()
    # The region re-sends records in the same file, in later files and in later days: all reached bronze.
    resent = deliveries.where(F.col("copy") > 0).join(bronze, ["source_file", "record_offset"], "left_semi")
    assert resent.where(F.col("source_file").contains("_resent")).count() > 0
    assert resent.where(~F.col("source_file").contains("_resent")).count() > 0


def test_no_direct_identifier_of_the_truth_reaches_silver(spark: SparkSession, region: Conformed) -> None:
    persons = pd.read_parquet(region.truth / "persons.parquet")
    clear = {
        str(v)
        for column in ("national_id", "name", "phone", "address")
        for v in persons[column].dropna()
        if str(v)
    } | set(pd.read_parquet(region.truth / "phones.parquet")["phone"])  # second phones too
    truth = spark.createDataFrame([(v,) for v in sorted(clear)], "value string")
    for name in SILVER_TABLES:
        if not io.is_table(spark, region.cfg.lake_root, name):
            continue
        df = io.read_table(spark, region.cfg.lake_root, name)
        strings = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]
        # Every string value, plus every ID-number-shaped run inside longer text (a JSON record, a detail).
        values = df.select(
            F.explode(
                F.concat(
                    F.array(*[F.col(c) for c in strings]),
                    *[F.regexp_extract_all(F.col(c), F.lit(r"(\d{17}[\dXx])"), 1) for c in strings],
                )
            ).alias("value")
        )
        leaks = values.join(truth, "value", "left_semi")
        assert leaks.isEmpty(), f"{name}: {leaks.limit(3).collect()}"


def test_epidemic_defects_are_quarantined_with_their_reason(spark: SparkSession, region: Conformed) -> None:
    """A ping without a phone, a test without a person, a pool of no swabs: quarantined, each for its rule."""
    manifest = json.loads((region.truth / "manifest.json").read_text(encoding="utf-8"))
    failed = (
        io.read_table(spark, region.cfg.lake_root, "silver.quarantine")
        .select("silver_table", F.explode("failed_rules").alias("rule"))
        .groupBy("silver_table", "rule")
        .count()
        .collect()
    )
    counts = {(r.silver_table, r.rule): r["count"] for r in failed}
    for table, rule, defect in (
        ("silver.location_event", "location_event_has_phone", "ping_no_phone"),
        ("silver.nat_test", "nat_test_has_person", "test_no_person"),
        ("silver.nat_pool", "pool_has_members", "pool_size_zero"),
    ):
        # Every such row that reached bronze intact (a re-send is one more bronze row of the same record).
        sent = manifest["defects"][defect]["count"]
        assert 0 < counts.get((table, rule), 0) <= 2 * sent, (table, rule, counts.get((table, rule)), sent)
    # The tests and the isolation orders name their persons in silver.patient_record (for the EMPI).
    sources = {
        r.record_source
        for r in io.read_table(spark, region.cfg.lake_root, "silver.patient_record")
        .select("record_source")
        .distinct()
        .collect()
    }
    assert {"csv_nat_test", "csv_isolation_order"} <= sources


def test_encounters_match_the_truth(spark: SparkSession, region: Conformed) -> None:
    truth = pd.read_parquet(region.truth / "encounters.parquet")
    expected = set(zip(truth.institution_id, truth.source_encounter_id, strict=True))
    rows = io.read_table(spark, region.cfg.lake_root, "silver.encounter").collect()
    found = {(r.institution_id, r.source_record_id) for r in rows}
    assert found <= expected  # nothing invented
    # The only losses: encounters whose every message was malformed (bronze quarantine) or failed a rule.
    lake = region.cfg.lake_root
    bronze_bad = io.read_table(spark, lake, "bronze.quarantine").where(F.col("_source_feed") != "location")
    silver_bad = io.read_table(spark, lake, "silver.quarantine").where(
        F.col("silver_table") == "silver.encounter"
    )
    assert len(expected - found) <= bronze_bad.count() + silver_bad.count()
    assert len(expected) >= 10 and len(found) >= 0.8 * len(expected)
    cancelled = {
        (i, e)
        for i, e, c in zip(truth.institution_id, truth.source_encounter_id, truth.cancelled, strict=True)
        if c
    }
    flagged = {(r.institution_id, r.source_record_id) for r in rows if r.is_cancelled}
    assert flagged <= cancelled
    assert len(flagged & found) >= 0.9 * len(cancelled & found)


def test_a_second_conform_changes_nothing(spark: SparkSession, region: Conformed) -> None:
    lake = region.cfg.lake_root
    tables = [t for t in SILVER_TABLES if io.is_table(spark, lake, t)]
    versions = {t: io.latest_version(spark, lake, t) for t in tables}
    assert conform.run(spark, region.cfg) == []
    assert {t: io.latest_version(spark, lake, t) for t in tables} == versions


def test_the_empi_view_gives_each_source_patient_its_keyed_identity(
    spark: SparkSession, region: Conformed
) -> None:
    lake = region.cfg.lake_root
    identities = patient_identities(
        io.read_table(spark, lake, "silver.patient_record"), io.read_table(spark, lake, "vault.identity")
    )
    truth = spark.createDataFrame(
        pd.read_parquet(region.truth / "patient_records.parquet")[
            ["institution_id", "source_patient_id", "keyed_name", "keyed_national_id"]
        ]
    )
    # One row per source patient, every one of them known to the truth, with the identity as keyed.
    assert identities.count() == identities.select("institution_id", "source_patient_id").distinct().count()
    joined = identities.join(truth, ["institution_id", "source_patient_id"], "left")
    assert joined.where(F.col("keyed_name").isNull()).isEmpty()
    assert joined.where(F.col("full_name") != F.col("keyed_name")).isEmpty()
    assert joined.where(~F.col("id_number").eqNullSafe(F.col("keyed_national_id"))).isEmpty()
    assert set(IDENTITY_COLUMNS.values()) <= set(identities.columns)


def test_master_data_is_conformed_not_quarantined(spark: SparkSession, region: Conformed) -> None:
    lake = region.cfg.lake_root
    manifest = json.loads((region.truth / "manifest.json").read_text(encoding="utf-8"))
    areas = io.read_table(spark, lake, "silver.area")
    institutions = io.read_table(spark, lake, "silver.institution")
    assert areas.count() == sum(manifest["areas"].values())
    assert {r.level: r["count"] for r in areas.groupBy("level").count().collect()} == manifest["areas"]
    assert (
        institutions.count()
        == manifest["institutions"]
        == institutions.select("institution_id").distinct().count()
    )
    assert (
        io.read_table(spark, lake, "silver.quarantine").where(F.col("_source_feed") == "reference").isEmpty()
    )
    # Every township's parent is a county, every county's a city: the hierarchy gold rolls up through.
    parents = areas.alias("a").join(areas.alias("p"), F.col("a.parent_code") == F.col("p.area_code"))
    levels = {(r[0], r[1]) for r in parents.select("a.level", "p.level").distinct().collect()}
    assert levels == {("township", "county"), ("county", "city"), ("city", "province")}
