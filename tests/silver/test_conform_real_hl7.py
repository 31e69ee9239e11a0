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
from tests.silver.test_hl7_encoding import _instant, _patient_number, _python_hl7_messages, _segments, _value

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
    # Procedures (PR1) and allergies (AL1) of ADT messages: each key python-hl7 reads is in silver once, with
    # the code and text of its latest message (MSH-7).
    for table, segment in (("silver.procedure", "PR1"), ("silver.allergy", "AL1")):
        rows = io.read_table(spark, lake, table).collect()
        assert {r.source_record_id: (r.code, r.display) for r in rows} == _latest_by_key(segment), table
        assert len(rows) > 0


def _latest_by_key(segment: str) -> dict[str, tuple[str | None, str | None]]:
    """Code and text of each PR1 (keyed by visit) or AL1 (keyed by patient) of the real ADT messages, as
    python-hl7 reads the message with the latest MSH-7 that carries the key."""
    versions: dict[str, dict[str, set]] = {}
    for path in sorted(HL7.iterdir()):
        for _, msg in _python_hl7_messages(path):
            if _value(msg, "MSH.F9.R1.C1") != "ADT":
                continue
            parent = _value(msg, "PV1.F19.R1.C1") if segment == "PR1" else _patient_number(msg)
            when = _instant(_value(msg, "MSH.F7"))
            for k, seg in enumerate(_segments(msg, segment), start=1):
                key = f"{parent}-{segment}-{_value(msg, f'{seg}.F1') or k}"
                content = (_value(msg, f"{seg}.F3.R1.C1"), _value(msg, f"{seg}.F3.R1.C2"))
                versions.setdefault(key, {}).setdefault(when, set()).add(content)
    latest = {}
    for key, by_time in versions.items():
        (latest[key],) = by_time[max(by_time)]  # the samples' latest versions of a key agree
    return latest
