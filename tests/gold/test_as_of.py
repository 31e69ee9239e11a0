"""``as_of``, the day gold is published as of: from silver's accepted rows, never from the wall clock.

A mistyped year that does not move it: ``tests/silver/test_conform.py`` (it conforms those records).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from healthlake.pipelines import conform, ingest, publish
from tests.silver.test_conform import PATIENT, RESIDENT_ID, _adt, _config, _land

FOLLOWUPS = (
    "followup_id,institution_id,patient_no,name,id_number,followup_date,disease,sbp,dbp,fasting_glucose,"
    "glucose_unit,next_followup_date\n"
)


def _followup(day: str) -> str:
    return FOLLOWUPS + f"F1,HC,{PATIENT},张伟,{RESIDENT_ID},{day} 09:00:00,高血压,150,95,,,\n"


def test_a_silver_without_any_record_is_a_one_line_error_not_today(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = _config(tmp_path)
    # Only records conform quarantines: silver's tables exist, with no accepted row.
    _land(tmp_path, "csv", "HC", "2026-01-06", "followups_20260106.csv", _followup("2204-01-05"))
    _land(
        tmp_path,
        "hl7v2",
        "HH",
        "2026-01-06",
        "a.hl7",
        _adt("A03", "c1", "22040106100000", "22040106100000+0800"),
    )
    ingest.run(spark, cfg)
    conform.run(spark, cfg)
    with pytest.raises(publish.PublishError, match="no patient record or clinical event"):
        publish._as_of(publish.inputs_of(spark, cfg.lake_root, {}))
