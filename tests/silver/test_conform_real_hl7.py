"""Real HL7 v2.3–2.8 messages (../shared/testdata/hl7v2, 60 message types) conform without loss."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from healthlake import io
from healthlake.config import load_config
from healthlake.pipelines import conform, ingest

HL7 = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "hl7v2"


def test_real_messages_are_each_accounted_for_and_adt_oru_are_conformed(
    spark: SparkSession, tmp_path: Path
) -> None:
    if not HL7.is_dir():
        pytest.skip("../shared/testdata is not beside the project")
    shutil.copytree(HL7, tmp_path / "landing" / "hl7v2" / "REAL" / "2026-01-01")
    cfg = load_config(
        overrides={"landing_root": str(tmp_path / "landing"), "lake_root": str(tmp_path / "lake")}
    )
    ingest.run(spark, cfg)
    (result,) = conform.run(spark, cfg)
    messages = io.read_table(spark, cfg.lake_root, "bronze.hl7v2_messages")
    assert (
        result.bronze_rows
        == messages.count()
        == result.conformed + result.superseded + result.quarantined + result.duplicates + result.not_modelled
    )
    lake = cfg.lake_root
    # Patients come from ADT messages, results from ORU messages (v2.3 to v2.8 alike).
    patients = io.read_table(spark, lake, "silver.patient_record")
    assert patients.where(F.col("_source_file").contains("ADT")).count() > 0
    observations = io.read_table(spark, lake, "silver.observation")
    assert observations.where(F.col("_source_file").contains("ORU")).count() > 0
    encounters = io.read_table(spark, lake, "silver.encounter")
    assert encounters.where(F.col("encounter_class").isNotNull()).count() > 0
