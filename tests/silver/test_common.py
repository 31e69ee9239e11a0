"""Shared silver helpers: ``case_of``, and the CSV parsers built on it being one projection."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from healthlake.silver import observation, patient_record
from healthlake.silver.common import case_of


def test_case_of_picks_the_value_of_each_row_and_null_for_others(spark: SparkSession) -> None:
    rows = spark.createDataFrame([("a", 1), ("b", 2), ("c", 3)], "kind string, n int")
    picked = rows.select(
        "kind", case_of(F.col("kind"), {"a": F.col("n") * 10, "b": F.lit(-1)}).alias("picked")
    )
    assert {r["kind"]: r["picked"] for r in picked.collect()} == {"a": 10, "b": -1, "c": None}
    with pytest.raises(ValueError, match="at least one"):
        case_of(F.col("kind"), {})


def test_csv_patient_records_and_observations_are_one_projection_not_a_union(spark: SparkSession) -> None:
    # A union per extract had Spark plan and compile the standardisation above it once per branch.
    record = "map<string,string>"
    bronze = spark.createDataFrame(
        [("visits", {"patient_no": "p1", "visit_id": "v1", "sbp": "120"}, "h1", "csv", 1, "f.csv", 0, None)],
        f"extract string, record {record}, _institution_id string, _source_feed string, "
        "_commit_version long, _source_file string, _record_offset long, _ingested_at timestamp",
    )
    for parse in (patient_record.from_csv, observation.from_csv):
        plan = bronze.transform(parse)._jdf.queryExecution().analyzed().toString()
        assert "Union" not in plan, parse.__qualname__
