"""``gold.encounter_facts``: length of stay and 30-day readmission across institutions, against values
worked out by hand for each stay below."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from healthlake.gold.encounters import encounter_facts

ENCOUNTERS = (
    "institution_id string, source_record_id string, source_patient_id string, encounter_class string, "
    "is_cancelled boolean, admit_time timestamp, discharge_time timestamp"
)


def _t(day: str, hour: int = 9) -> dt.datetime:
    return dt.datetime.fromisoformat(f"2026-{day}T{hour:02d}:00:00")


def test_readmission_counts_across_hospitals_and_not_for_transfers(spark: SparkSession) -> None:
    encounters = spark.createDataFrame(
        [
            # Person A: discharged from H1 on 03-05, admitted to H2 (another patient number) on 03-20.
            ("H1", "a1", "H1-A", "inpatient", False, _t("03-01"), _t("03-05", 11)),
            ("H2", "a2", "H2-77", "inpatient", False, _t("03-20"), _t("03-22")),
            ("C9", "a3", "C9-A", "outpatient", False, _t("03-10"), None),
            # Person B: moved H1 → H2 on the discharge day (a transfer), a clinic visit, back 36 days later.
            ("H1", "b1", "H1-B", "inpatient", False, _t("03-01"), _t("03-03", 10)),
            ("H2", "b2", "H2-B", "inpatient", False, _t("03-03", 15), _t("03-10")),
            ("C9", "b3", "C9-B", "outpatient", False, _t("03-12"), _t("03-12", 10)),
            ("H1", "b4", "H1-B", "inpatient", False, _t("04-15"), _t("04-15", 18)),
            # Person C: a cancelled stay (dropped), then a stay still in progress (no discharge).
            ("H1", "c1", "H1-C", "inpatient", True, _t("03-02"), _t("03-04")),
            ("H1", "c2", "H1-C", "inpatient", False, _t("03-25"), None),
            # A record the EMPI has not linked: its readmission is unknown.
            ("H3", "x1", "H3-X", "inpatient", False, _t("03-01"), _t("03-02")),
        ],
        ENCOUNTERS,
    )
    xref = spark.createDataFrame(
        [
            ("H1", "H1-A", "PA"),
            ("H2", "H2-77", "PA"),
            ("C9", "C9-A", "PA"),
            ("H1", "H1-B", "PB"),
            ("H2", "H2-B", "PB"),
            ("C9", "C9-B", "PB"),
            ("H1", "H1-C", "PC"),
        ],
        "institution_id string, source_patient_id string, person_id string",
    )
    got = encounter_facts(encounters, xref).select(
        "source_record_id",
        "person_id",
        "length_of_stay_days",
        "is_index_stay",
        "readmitted_30d",
        "is_readmission_30d",
        "days_to_next_admission",
    )
    expected = spark.createDataFrame(
        [
            ("a1", "PA", 4, True, True, False, 15),
            ("a2", "PA", 2, True, False, True, None),
            ("a3", "PA", None, False, None, None, None),
            ("b1", "PB", 2, True, False, False, 0),
            ("b2", "PB", 7, True, False, False, 36),
            ("b3", "PB", None, False, None, None, None),
            ("b4", "PB", 0, True, False, False, None),
            ("c2", "PC", None, False, None, False, None),
            ("x1", None, 1, False, None, None, None),
        ],
        got.schema,
    )
    assertDataFrameEqual(got, expected)
