"""``healthlake publish``: gold rebuilt from silver in one commit, the same table on a re-run, one-line
errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from healthlake import cli, io
from healthlake.config import load_config
from healthlake.pipelines import publish


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_publish_builds_encounter_facts_and_a_rerun_gives_the_same_table(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = str(tmp_path / "lake")
    stay = dt.datetime(2026, 3, 1, 9)
    encounters = spark.createDataFrame(
        [
            ("H1", "e1", "H1-7", "inpatient", False, stay, stay + dt.timedelta(days=3)),
            ("H2", "e2", "H2-9", "inpatient", False, stay + dt.timedelta(days=10), None),
            ("H2", "e3", "H2-9", "emergency", True, stay, None),
        ],
        "institution_id string, source_record_id string, source_patient_id string, encounter_class string, "
        "is_cancelled boolean, admit_time timestamp, discharge_time timestamp",
    )
    xref = spark.createDataFrame(
        [("H1", "H1-7", "P1"), ("H2", "H2-9", "P1")],
        "institution_id string, source_patient_id string, person_id string",
    )
    io.append(encounters, lake, publish.ENCOUNTER)
    io.append(xref, lake, publish.XREF)

    code, out, _ = _run(capsys, "publish", "--lake", lake)
    assert code == 0 and "gold.encounter_facts" in out and " 2" in out
    first = io.read_table(spark, lake, publish.ENCOUNTER_FACTS)
    # The stay at H1 was followed by an admission at H2 seven days after its discharge date.
    flags = {r["source_record_id"]: r["readmitted_30d"] for r in first.collect()}
    assert flags == {"e1": True, "e2": None}
    assert first.where(F.col("person_id") != "P1").isEmpty()

    assert publish.run(spark, load_config(overrides={"lake_root": lake})).tables == {
        publish.ENCOUNTER_FACTS: 2
    }
    assert io.latest_version(spark, lake, publish.ENCOUNTER_FACTS) == 1
    assertDataFrameEqual(
        io.read_table(spark, lake, publish.ENCOUNTER_FACTS, version=1),
        io.read_table(spark, lake, publish.ENCOUNTER_FACTS, version=0),
    )


def test_publish_errors_are_one_line(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "publish", "--lake", str(tmp_path / "nowhere"))
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    (tmp_path / "lake").mkdir()
    code, _, err = _run(capsys, "publish", "--lake", str(tmp_path / "lake"))
    assert code == 2 and err.count("\n") == 1
    assert "silver.encounter is not in the lake" in err and "healthlake conform" in err
